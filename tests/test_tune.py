"""``rewardlab tune`` on a tiny model: trials train what ``rewardlab train`` trains, and the best config is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rewardlab.cli import main
from rewardlab.config import TrainConfig, load_config
from tests.tiny import make_workspace

pytest.importorskip("optuna", reason="rewardlab tune needs the [tune] extra (optuna)")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("tune"), n_train=80, n_eval=24)


def tune_config(root: Path, out: str, **tune) -> Path:
    cfg = {
        "output_dir": str(root / out),
        "seed": 5,
        "data": {"train": str(root / "train.jsonl"), "eval": str(root / "eval.jsonl"), "max_length": 96},
        "model": {"name_or_path": str(root / "base")},
        "training": {"per_device_train_batch_size": 8, "max_steps": 8, "logging_steps": 4},
        "tune": {
            "trials": 2,
            "space": {"learning_rate": {"low": 1e-4, "high": 3e-3, "log": True}, "warmup_steps": {"choices": [0, 2]}},
            **tune,
        },
    }
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.slow
def test_two_trials_write_the_best_config_and_it_trains_to_the_same_model(workspace, capsys):
    cfg_path = tune_config(workspace, "tune")
    assert main(["tune", "--config", str(cfg_path)]) == 0
    run = workspace / "tune"
    trials = [json.loads(line) for line in (run / "trials.jsonl").read_text().splitlines()]
    assert [t["trial"] for t in trials] == [0, 1]
    for t in trials:
        assert 1e-4 <= t["params"]["learning_rate"] <= 3e-3 and t["params"]["warmup_steps"] in (0, 2)
        assert t["objective"] == t["metrics"]["eval_accuracy"] and t["metrics"]["eval_n"] == 24
    assert trials[0]["params"] != trials[1]["params"], "the sampler draws different values"
    summary = json.loads((run / "tune.json").read_text())
    best = max(trials, key=lambda t: t["objective"])
    assert summary["best"]["objective"] == best["objective"] and summary["metric"] == "eval_accuracy"
    assert summary["best"]["params"] == best["params"] and summary["eval_pairs"] == 24
    # No checkpoints and no model per trial: the search scores, `train` keeps.
    assert not list(run.rglob("checkpoint-*")) and not (run / "model").exists()
    out = capsys.readouterr().out
    assert f"best config: {run / 'best_config.yaml'}" in out

    best_cfg = load_config(TrainConfig, str(run / "best_config.yaml"), [])
    assert best_cfg.training["learning_rate"] == summary["best"]["params"]["learning_rate"]
    assert best_cfg.training["warmup_steps"] == summary["best"]["params"]["warmup_steps"]
    assert best_cfg.output_dir == str(run / "best") and best_cfg.training["max_steps"] == 8
    # Trained by `rewardlab train`, the best config gives the best trial's model: same held-out scores.
    assert main(["train", "--config", str(run / "best_config.yaml")]) == 0
    results = json.loads((run / "best" / "results.json").read_text())["metrics"]
    assert results["eval_accuracy"] == best["metrics"]["eval_accuracy"]
    assert results["eval_margin_mean"] == pytest.approx(best["metrics"]["eval_margin_mean"], abs=1e-6)
    assert results["eval_margin_std"] == pytest.approx(best["metrics"]["eval_margin_std"], abs=1e-6)


def test_without_held_out_data_tune_holds_out_a_share_of_train(workspace):
    from rewardlab.recipes.tune import tune_config as trial_config

    cfg = load_config(TrainConfig, str(tune_config(workspace, "holdout")), ["data.eval=null"])
    trial = trial_config(cfg)
    assert trial.data.eval_fraction == 0.1 and trial.training["save_strategy"] == "no"
    kept = load_config(TrainConfig, str(tune_config(workspace, "kept")), ["data.eval=null", "data.eval_fraction=0.25"])
    assert trial_config(kept).data.eval_fraction == 0.25


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("tune.space={learning_rat: {low: 1.0e-5, high: 1.0e-3}}", "did you mean 'learning_rate'"),
        ("tune.space={learning_rate: {low: 0, high: 1.0e-3, log: true}}", "log-scale range needs low > 0"),
        ("tune.space={learning_rate: {low: 1.0e-3, high: 1.0e-5}}", "give `low` < `high`"),
        ("tune.space={num_train_epochs: {choices: [1, 2], low: 1}}", "not both"),
        ("tune.space={seed: {choices: [1, 2]}}", "seed cannot be searched"),
        (
            "tune.space={weight_decay: {choices: [0.0, heavy]}}",
            "tune.space.weight_decay: training.weight_decay: expected a number, got 'heavy'",
        ),
        ("tune.space={num_train_epochs: {choices: [1, 0]}}", "tune.space.num_train_epochs: training.num_train_epochs"),
        ("tune.metric=f1", "tune.metric"),
        ("tune.trials=0", "tune.trials"),
        ("tune.random_trials=0", "tune.random_trials"),
    ],
)
def test_bad_search_settings_exit_2_before_training(workspace, capsys, override, message):
    cfg_path = tune_config(workspace, "bad")
    assert main(["tune", "--config", str(cfg_path), override]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (workspace / "bad" / "trials.jsonl").exists()


def test_a_third_of_the_trials_are_random_before_tpe_takes_over():
    """optuna's TPE default of 10 random start-up trials would make a 10-trial search purely random."""
    from rewardlab.config.schema import TuneSettings

    assert [TuneSettings(trials=n).startup_trials() for n in (1, 2, 8, 10, 30, 100)] == [1, 1, 2, 3, 10, 10]
    assert TuneSettings(trials=10, random_trials=5).startup_trials() == 5
