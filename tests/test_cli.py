"""The real CLI end to end on a tiny model: train → resume → score/compare, and bad input → exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rewardlab.cli import build_parser, config_from, main
from rewardlab.config.schema import ServeConfig
from rewardlab.data.synthetic import make_pairs
from rewardlab.models.scorer import Scorer
from tests.tiny import make_workspace, write_jsonl


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("cli"))


def write_config(root: Path, out: str, **training) -> Path:
    cfg = {
        "output_dir": str(root / out),
        "data": {"train": str(root / "train.jsonl"), "eval": str(root / "eval.jsonl"), "max_length": 96},
        "model": {"name_or_path": str(root / "base")},
        "training": {
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "logging_steps": 5,
            "save_strategy": "steps",
            "save_steps": 10,
            "eval_strategy": "steps",
            "eval_steps": 10,
            **training,
        },
    }
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def read_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_resume_score_compare(workspace, capsys):
    root = workspace
    cfg = write_config(root, "run", max_steps=20)
    assert main(["train", "--config", str(cfg)]) == 0
    run = root / "run"
    for name in ("config.yaml", "env.json", "metrics.jsonl", "results.json", "report.md", "learning_curve.png"):
        assert (run / name).stat().st_size > 0, name
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]
    assert not list(run.glob(".*")), "no staging directories left behind"
    model_files = {p.name for p in (run / "model").iterdir()}
    assert {"config.json", "model.safetensors", "rewardlab.json", "tokenizer.json"} <= model_files
    meta = json.loads((run / "model" / "rewardlab.json").read_text())
    assert meta["pooling"] == "last" and meta["max_length"] == 96
    assert meta["normalization"]["n"] == 80  # 40 eval pairs → 80 scores
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "eval_accuracy" in r] == [10, 20]
    train_logs = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_logs] == [5, 10, 15, 20] and all(0 <= r["accuracy"] <= 1 for r in train_logs)

    # Resume from checkpoint-20 to step 30: training continues, it does not restart.
    assert main(["train", "--config", str(cfg), "resume=true", "training.max_steps=30"]) == 0
    steps = [r["step"] for r in read_metrics(run) if "loss" in r]
    assert steps == [5, 10, 15, 20, 25, 30]
    state = json.loads((run / "checkpoint-30" / "trainer_state.json").read_text())
    assert state["global_step"] == 30

    # Score: the CLI gives the Scorer's numbers, in input order, written atomically.
    pairs = make_pairs(6, seed=3)
    inp = write_jsonl(
        root / "to_score.jsonl", [{"prompt": p.prompt, "response": p.chosen, "k": i} for i, p in enumerate(pairs)]
    )
    out = root / "scores.jsonl"
    assert main(["score", "--model", str(run / "model"), "--input", str(inp), "--output", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    expected = Scorer.from_pretrained(str(run / "model"), device="cpu").score(
        [p.prompt for p in pairs], [p.chosen for p in pairs]
    )
    assert [r["k"] for r in scored] == list(range(6))
    assert [r["score"] for r in scored] == pytest.approx(expected, abs=1e-5)

    capsys.readouterr()
    p = pairs[0]
    assert (
        main(["compare", "--model", str(run / "model"), "--prompt", p.prompt, "--a", p.chosen, "--b", p.rejected]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["better"] in ("a", "b") and 0 < result["p_a"] < 1
    # One name for each key: the CLI prints what /v1/compare answers.
    from rewardlab.serving.schemas import CompareResponse

    # (an ensemble adds the optional uncertainty fields: tests/test_ensemble.py)
    assert list(result) == [k for k, f in CompareResponse.model_fields.items() if f.is_required()]
    assert (result["better"] == "a") == (result["score_a"] >= result["score_b"])


def test_an_epoch_end_eval_at_the_last_step_is_not_run_again_for_the_export(workspace, monkeypatch):
    from rewardlab.training.trainer import RewardTrainer

    batches = []
    real_step = RewardTrainer.prediction_step

    def counting_step(self, model, inputs, *args, **kwargs):
        batches.append(self.state.global_step)
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(RewardTrainer, "prediction_step", counting_step)
    cfg = write_config(workspace, "epochs", num_train_epochs=2, eval_strategy="epoch", save_strategy="no",
                       per_device_eval_batch_size=8)  # fmt: skip
    assert main(["train", "--config", str(cfg)]) == 0
    # 160 pairs in batches of 8: epochs end at steps 20 and 40; 40 eval pairs are 5 batches, evaluated once each
    # time (the export's statistics and results reuse step 40's predictions).
    assert batches == [20] * 5 + [40] * 5
    run = workspace / "epochs"
    last_eval = [r for r in read_metrics(run) if "eval_accuracy" in r][-1]
    results = json.loads((run / "results.json").read_text())
    assert last_eval["step"] == results["global_step"] == 40
    assert results["metrics"]["eval_accuracy"] == pytest.approx(last_eval["eval_accuracy"], abs=1e-4)


def test_resume_matches_an_uninterrupted_run(workspace):
    """15 steps + resume to 30 gives the same weights as 30 steps straight (same data order, optimizer state)."""
    root = workspace
    # A constant learning rate: a decaying schedule depends on max_steps, which differs between the runs.
    fixed = {"lr_scheduler_type": "constant", "warmup_steps": 0}
    straight = write_config(root, "straight", max_steps=30, **fixed)
    split = write_config(root, "split", max_steps=15, save_steps=5, **fixed)  # stops mid-epoch (20 steps/epoch)
    assert main(["train", "--config", str(straight), "training.eval_strategy=no", "data.eval=null"]) == 0
    assert main(["train", "--config", str(split), "training.eval_strategy=no", "data.eval=null"]) == 0
    assert (
        main(
            [
                "train",
                "--config",
                str(split),
                "training.eval_strategy=no",
                "data.eval=null",
                "resume=true",
                "training.max_steps=30",
            ]
        )
        == 0
    )
    pairs = make_pairs(8, seed=4)
    a = Scorer.from_pretrained(str(root / "straight" / "model"), device="cpu").score_pairs(pairs)
    b = Scorer.from_pretrained(str(root / "split" / "model"), device="cpu").score_pairs(pairs)
    assert a[0] == pytest.approx(b[0], abs=1e-4) and a[1] == pytest.approx(b[1], abs=1e-4)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_bad_config_exits_2_without_traceback_or_output(workspace):
    cfg = write_config(workspace, "bad")
    data = yaml.safe_load(cfg.read_text())
    data["model"]["pooling_mode"] = "last"
    data["training"]["learning_rat"] = 1.0
    cfg.write_text(yaml.safe_dump(data))
    proc = run_cli("train", "--config", str(cfg))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.pooling_mode: unknown key; did you mean 'pooling'?" in proc.stderr
    assert not (workspace / "bad").exists()


def test_training_value_errors_name_the_config_file(workspace, capsys):
    cfg = write_config(workspace, "badvalues", learning_rate=-1, gradient_accumulation_steps=0)
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"error: {cfg}: invalid config:" in err
    assert "training.learning_rate: must be positive, got -1" in err
    assert "training.gradient_accumulation_steps: must be at least 1, got 0" in err
    assert not (workspace / "badvalues").exists()


def test_a_symlink_loop_is_named_as_such(workspace, tmp_path, capsys):
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    broken = tmp_path / "broken.jsonl"
    broken.symlink_to(tmp_path / "gone.jsonl")
    cfg = write_config(workspace, "looped")
    cases = [
        (["train", "--config", str(loop)], f"{loop}: config file is a symlink loop"),
        (["train", "--config", str(cfg), f"data.train={loop}"], f"{loop}: {loop} is a symlink loop"),
        (["train", "--config", str(cfg), f"data.train={broken}"], f"{broken} is a broken symlink (to "),
        (["compare", "--model", str(loop), "--prompt", "p", "--a", "x", "--b", "y"], f"{loop}: model directory is a "),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and "not found" not in err, err
    assert not (workspace / "looped").exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.train=missing.jsonl", "missing.jsonl: file not found"),
        ("model.name_or_path=/nonexistent/model", "/nonexistent/model: cannot load a tokenizer"),
        (
            "training.learning_rat=1e-3",
            "training.learning_rat: unknown TrainingArguments field; did you mean 'learning_rate'?",
        ),
        ("training.lr_scheduler_type=bogus", "invalid training settings"),
        ("loss.name=plackett_luce", "loss.name=plackett_luce needs data.ranked_as=groups"),
        ("data.max_length=abc", "data.max_length"),
        ("resume=/nonexistent/ckpt", "resume: checkpoint directory /nonexistent/ckpt not found"),
    ],
)
def test_bad_input_messages(workspace, capsys, override, message):
    cfg = write_config(workspace, "bad_input")
    assert main(["train", "--config", str(cfg), override]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (workspace / "bad_input").exists()


def test_bad_data_row_names_file_row_and_field(workspace, capsys):
    bad = workspace / "bad_rows.jsonl"
    bad.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "", "rejected": "b"}\n')
    cfg = write_config(workspace, "bad_rows_run")
    assert main(["train", "--config", str(cfg), f"data.train={bad}"]) == 2
    assert f"{bad}:2:chosen:" in capsys.readouterr().err
    assert not (workspace / "bad_rows_run").exists()


def test_all_records_overlong_with_drop_is_an_input_error(workspace, capsys):
    cfg = write_config(workspace, "overlong")
    assert main(["train", "--config", str(cfg), "data.max_length=8", "data.overlong=drop"]) == 2
    assert "longer than max_length=8" in capsys.readouterr().err


def test_score_and_compare_bad_input(workspace, capsys):
    good = write_jsonl(workspace / "good_input.jsonl", [{"prompt": "p", "response": "r"}])
    assert main(["score", "--model", str(workspace / "nope"), "--input", str(good)]) == 2
    assert "model directory not found" in capsys.readouterr().err
    assert main(["score", "--model", str(workspace / "base"), "--input", str(workspace / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err
    # train.jsonl has no `response` column
    assert main(["score", "--model", str(workspace / "base"), "--input", str(workspace / "train.jsonl")]) == 2
    assert f"{workspace / 'train.jsonl'}:1:response: missing column 'response'" in capsys.readouterr().err
    assert (
        main(
            [
                "score",
                "--model",
                str(workspace / "base"),
                "--input",
                str(workspace / "train.jsonl"),
                "--response-column",
                "chosen",
                "--normalize",
            ]
        )
        == 2
    )
    assert "no saved normalization statistics" in capsys.readouterr().err
    assert main(["compare", "--model", str(workspace / "nope"), "--prompt", "p", "--a", "x", "--b", "y"]) == 2


def test_cli_subprocess_usage_errors_exit_2():
    proc = run_cli("train")
    assert proc.returncode == 2 and "--config" in proc.stderr
    proc = run_cli("demo", "n_train=abc")
    assert proc.returncode == 2 and "n_train" in proc.stderr and "Traceback" not in proc.stderr


def test_inspect_command(workspace, tmp_path, capsys):
    out = tmp_path / "inspect.json"
    assert main(["inspect", str(workspace / "train.jsonl"), "--max-length", "20", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["rows"] == 160 and report["records"] == 160 and report["lengths"]["unit"] == "words"
    assert "Lengths (words)" in capsys.readouterr().out
    assert main(["inspect", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: file not found" in capsys.readouterr().err
    assert main(["inspect", str(workspace / "train.jsonl"), "--tokenizer", str(tmp_path / "no_tok")]) == 2


def test_demo_command_writes_its_summary_per_flaw(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--output-dir", str(out), "--n-train", "40", "--n-eval", "20", "--epochs", "1"])
    summary = json.loads((out / "demo_summary.json").read_text())
    assert code == (0 if summary["accuracy"] >= summary["target"] else 1)
    assert set(summary["by_flaw"]) == {"off_topic", "rambling", "refusal", "rude"}
    final = json.loads((out / "results.json").read_text())["metrics"]["eval_accuracy"]
    assert summary["accuracy"] == pytest.approx(final, abs=1 / 20 + 1e-9)  # one near-tie may flip
    assert "by flaw:" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [
        ["--strip-texts", "<|im_end|>", "--strip-texts", "</s>"],
        ["strip_texts=<|im_end|>,</s>"],
        ["strip_texts=[<|im_end|>, </s>]"],
    ],
)
def test_list_settings_work_as_flags_and_overrides(args):
    ns, extra = build_parser().parse_known_args(["serve", "--model", "m", *args])
    ns.overrides = [*ns.overrides, *extra]
    assert config_from(ns, ServeConfig).strip_texts == ["<|im_end|>", "</s>"]


def test_a_plain_cpu_run_logs_no_noise(workspace, tmp_path):
    """Into files (not a terminal): no load report calling the new reward head MISSING, no DeepSpeed or
    bitsandbytes lines, no progress bars, tables not cut at 80 columns."""
    from safetensors.torch import load_file, save_file

    base = tmp_path / "headless"
    shutil.copytree(workspace / "base", base)
    weights = load_file(base / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("score.")}, base / "model.safetensors",
              metadata={"format": "pt"})  # fmt: skip
    cfg = write_config(workspace, "quiet", max_steps=2, eval_steps=2, save_steps=2, logging_steps=1)
    proc = run_cli("train", "--config", str(cfg), f"model.name_or_path={base}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "new reward head (score.weight)" in " ".join(out.split())
    for noise in ("LOAD REPORT", "MISSING", "DeepSpeed", "real_accelerator", "bitsandbytes", "kernels-community",
                  "it/s]", "s/it]", "Loading weights", "Writing model shards"):  # fmt: skip
        assert noise not in out, noise
    # A table into a file keeps its width.
    run = workspace / "quiet"
    wide = tmp_path / ("a-long-eval-set-name-" * 4 + ".jsonl")
    shutil.copy(workspace / "eval.jsonl", wide)
    eval_cfg = tmp_path / "eval.yaml"
    eval_cfg.write_text(yaml.safe_dump({"model_dirs": [str(run)], "eval_sets": [{"path": str(wide)}],
                                        "output_dir": str(tmp_path / "ev"), "plots": False}))  # fmt: skip
    proc = run_cli("eval", "--config", str(eval_cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert wide.stem in proc.stdout and max(map(len, proc.stdout.splitlines())) > 80
