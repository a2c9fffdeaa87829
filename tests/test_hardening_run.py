"""Bad settings, models and paths around the readers: exit 2 with one message naming the key or path, before a run
directory exists — never a traceback, never a run that trains on nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from rewardlab.cli import main
from tests.test_cli import write_config
from tests.tiny import make_workspace, write_jsonl


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("hardening"), n_train=40, n_eval=16)


def run(capsys, *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "messages"),
    [
        (["training.per_device_train_batch_size=0"],
         ["training.per_device_train_batch_size: must be at least 1, got 0"]),
        (["training.per_device_eval_batch_size=0", "training.gradient_accumulation_steps=-1"],
         ["training.per_device_eval_batch_size: must be at least 1, got 0",
          "training.gradient_accumulation_steps: must be at least 1, got -1"]),
        (["training.learning_rate=fast", "training.num_train_epochs=0"],
         ["training.learning_rate: expected a number, got 'fast'",
          "training.num_train_epochs: must be positive, got 0"]),
    ],
)  # fmt: skip
def test_bad_training_values_fail_before_the_run(workspace, capsys, overrides, messages):
    cfg = write_config(workspace, "bad_values", max_steps=2)
    code, err = run(capsys, "train", "--config", str(cfg), *overrides)
    assert code == 2 and "Traceback" not in err
    for message in messages:
        assert message in err
    assert not (workspace / "bad_values").exists()


def test_yaml_1_1_numbers_given_as_strings_train(workspace, capsys):
    """`learning_rate: 1e-4` is a string to YAML 1.1; it means the number, as the same key=value override does."""
    cfg = write_config(workspace, "yaml_numbers", max_steps=2, save_strategy="no", eval_strategy="no")
    text = cfg.read_text().replace("learning_rate: 0.001", "learning_rate: 1e-4")
    assert "learning_rate: 1e-4" in text and yaml.safe_load(text)["training"]["learning_rate"] == "1e-4"
    cfg.write_text(text)
    code, err = run(capsys, "train", "--config", str(cfg))
    assert code == 0, err
    assert yaml.safe_load((workspace / "yaml_numbers" / "config.yaml").read_text())["training"]["learning_rate"]


def test_a_model_directory_without_tokenizer_files(workspace, capsys, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(workspace / "base" / name, bare / name)
    cfg = write_config(workspace, "no_tok", max_steps=2)
    code, err = run(capsys, "train", "--config", str(cfg), f"model.name_or_path={bare}")
    assert code == 2 and f"{bare}: no tokenizer files" in err and not (workspace / "no_tok").exists()
    code, err = run(capsys, "compare", "--model", str(bare), "--prompt", "Hi", "--a", "x", "--b", "y")
    assert code == 2 and f"{bare}: no tokenizer files" in err


def test_a_corrupt_base_model(workspace, capsys, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(workspace / "base", broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    cfg = write_config(workspace, "corrupt", max_steps=2)
    code, err = run(capsys, "train", "--config", str(cfg), f"model.name_or_path={broken}")
    assert code == 2 and "Traceback" not in err and "missing, corrupt or incomplete files" in err
    assert not (workspace / "corrupt").exists()


@pytest.mark.parametrize(
    ("device", "message"),
    [("banana", "device 'banana' is not a device"), ("cuda", "this machine has no CUDA device")],
)
def test_devices_that_do_not_exist(workspace, capsys, device, message):
    import torch

    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = run(capsys, "compare", "--model", str(workspace / "base"), "--prompt", "Hi", "--a", "x", "--b", "y",
                    "--device", device)  # fmt: skip
    assert code == 2 and message in err


def test_files_the_os_refuses(workspace, capsys, tmp_path):
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    code, err = run(capsys, "inspect", str(loop))
    assert code == 2 and "Traceback" not in err and str(loop) in err
    latin = tmp_path / "responses.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    code, err = run(
        capsys, "rank", "--model", str(workspace / "base"), "--prompt", "Hi", "--responses-file", str(latin)
    )
    assert code == 2 and f"{latin}: not UTF-8 text" in err
    out_dir = tmp_path / "a_dir"
    out_dir.mkdir()
    scores = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "x"}])
    code, err = run(
        capsys, "score", "--model", str(workspace / "base"), "--input", str(scores), "--output", str(out_dir)
    )
    assert code == 2 and f"{out_dir} is a directory; give the path of a file to write" in err, err


def unprivileged(args: list[str]) -> list[str]:
    """``args`` run so that file modes apply: as is for a normal user; for root, without the capabilities that let
    root ignore modes (CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH), via util-linux's setpriv."""
    if os.geteuid() != 0:
        return args
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: file modes cannot be made to apply")
    drop = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={drop}", f"--inh-caps={drop}", *args]


def cli_unprivileged(*args: str) -> subprocess.CompletedProcess:
    command = unprivileged([sys.executable, "-m", "rewardlab.cli", *args])
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def test_paths_without_permission(workspace, tmp_path):
    """Permissions are checked with file modes applying (as a normal user, or root without its DAC capabilities)."""
    unreadable = write_jsonl(tmp_path / "secret.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    unreadable.chmod(0)
    result = cli_unprivileged("inspect", str(unreadable))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{unreadable}: Permission denied" in result.stderr

    cfg = write_config(workspace, "perm_cfg", max_steps=2)
    locked_cfg = tmp_path / "locked.yaml"
    locked_cfg.write_text(cfg.read_text())
    locked_cfg.chmod(0)
    result = cli_unprivileged("train", "--config", str(locked_cfg))
    assert result.returncode == 2 and f"{locked_cfg}: Permission denied" in result.stderr, result.stderr[-2000:]

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    result = cli_unprivileged("train", "--config", str(cfg), f"output_dir={read_only / 'run'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"output_dir {read_only / 'run'}: {read_only} is not writable" in result.stderr
    rows = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "Hi", "response": "x"}])
    result = cli_unprivileged("score", "--model", str(workspace / "base"), "--input", str(rows),
                              "--output", str(read_only / "scores.jsonl"))  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"cannot write {read_only / 'scores.jsonl'}: permission denied" in result.stderr
    assert list(read_only.iterdir()) == []
