"""What a first-time user trips over, fixed: reader options of `inspect`, its exit code, run directories
accepted as models, fast failures that import nothing heavy, and no tokenizer length noise."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.evaluation import plots
from tests.test_cli import write_config
from tests.tiny import make_workspace, write_jsonl


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("newcomer"), n_train=40, n_eval=16)


def err_of(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_inspect_honours_reader_options_before_and_after_flags(workspace, capsys, tmp_path):
    data = str(workspace / "train.jsonl")
    out = tmp_path / "r.json"
    assert main(["inspect", data, "max_samples=3", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["records"] == 3
    assert main(["inspect", data, "--examples", "0", "--json", str(out), "max_samples=2", "kind=pairs"]) == 0
    assert json.loads(out.read_text())["records"] == 2
    code, _, err = err_of(capsys, "inspect", data, "columns.typo=x")
    assert code == 2 and "data.columns.typo: unknown key" in err and "reader options (key=value)" in err
    code, _, err = err_of(capsys, "inspect", data, "columns.prompt=question")
    assert code == 2 and "columns.prompt='question': no such column" in err
    with pytest.raises(SystemExit) as exited:  # argparse's own usage error: exit 2
        main(["inspect", data, "--bogus"])
    assert exited.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_inspect_exits_2_when_no_record_is_usable(capsys, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": 1}\n{"x": 2}\n')
    code, _, err = err_of(capsys, "inspect", str(bad))
    assert code == 2 and f"{bad}: no usable record" in err
    ok = write_jsonl(tmp_path / "half.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"x": 1}])
    assert main(["inspect", str(ok)]) == 0  # one usable record: the problems are listed, the data is usable


def test_a_run_directory_is_accepted_as_a_model(workspace, capsys):
    cfg = write_config(workspace, "runA", max_steps=4, save_strategy="no", eval_strategy="no")
    assert main(["train", "--config", str(cfg)]) == 0
    run = workspace / "runA"
    args = ["--prompt", "Tell me about tea.", "--a", "Sure!", "--b", "No."]
    code, from_run, _ = err_of(capsys, "compare", "--model", str(run), *args)
    assert code == 0
    code, from_export, _ = err_of(capsys, "compare", "--model", str(run / "model"), *args)
    assert code == 0 and json.loads(from_run) == json.loads(from_export)


def test_normalize_without_statistics_is_an_error(workspace, capsys):
    cfg = write_config(workspace, "runB", max_steps=2, save_strategy="no", eval_strategy="no")
    assert main(["train", "--config", str(cfg), "data.eval=null"]) == 0
    code, out, err = err_of(capsys, "rank", "--model", str(workspace / "runB"), "--prompt", "Hi", "--response", "a",
                            "--response", "b", "--normalize")  # fmt: skip
    assert code == 2 and "no saved normalization statistics" in err and out == ""


def test_path_and_config_errors_come_before_torch_is_imported(workspace, tmp_path):
    """A wrong path or key fails before the heavy imports (seconds on a loaded machine): torch is not loaded."""
    cfg = write_config(workspace, "fast", max_steps=2)
    probe = (
        "import sys; from rewardlab.cli import main; code = main(sys.argv[1:]); print(code, 'torch' in sys.modules)"
    )
    for extra in (["data.train=/nonexistent/train.jsonl"], ["data.trian=x"]):
        run = subprocess.run([sys.executable, "-c", probe, "train", "--config", str(cfg), *extra],
                             capture_output=True, text=True, timeout=600)  # fmt: skip
        assert run.stdout.split()[-2:] == ["2", "False"], run.stderr[-2000:]
        assert str(cfg) in run.stderr or "/nonexistent/train.jsonl" in run.stderr


def test_no_sequence_length_warning_when_we_truncate(workspace, capsys):
    """transformers warns "Token indices sequence length is longer than ..." for long texts; rewardlab truncates
    by its own policy, so the warning is noise and never printed."""
    from transformers import AutoTokenizer

    from rewardlab.data.transforms import TextTransform

    tok = AutoTokenizer.from_pretrained(workspace / "base")
    tok.model_max_length = 16
    encoded = TextTransform(tok, 32, "last").encode("word " * 200, " answer")
    assert encoded.truncated and len(encoded.input_ids) == 32
    assert "Token indices sequence length" not in capsys.readouterr().err


def test_learning_curve_shows_accuracy_and_margin_panels(tmp_path: Path):
    from PIL import Image

    rows = [{"step": s, "loss": 1 / s, "accuracy": 0.5 + s / 100, "margin": s / 10} for s in range(5, 30, 5)]
    rows.append({"step": 25, "eval_loss": 0.3, "eval_accuracy": 0.8, "eval_margin_mean": 2.0})
    full = write_jsonl(tmp_path / "full.jsonl", rows)
    loss_only = write_jsonl(tmp_path / "loss.jsonl", [{"step": s, "loss": 1 / s} for s in range(5, 30, 5)])
    with (
        Image.open(plots.plot_learning_curve(full, tmp_path / "full.png")) as a,
        Image.open(plots.plot_learning_curve(loss_only, tmp_path / "loss.png")) as b,
    ):
        assert a.height > 2.5 * b.height  # three panels against one
