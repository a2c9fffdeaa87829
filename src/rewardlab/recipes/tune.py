"""``rewardlab tune``: hyperparameter search for a training config, scored on held-out pairs.

The search is ``transformers.Trainer.hyperparameter_search`` with the optuna backend (its TPE sampler, seeded by
the config's ``seed``, after ``tune.random_trials`` random draws): the data are encoded once, and every trial trains
a fresh copy of the backbone with the trial's ``training:`` values, then is scored on the held-out pairs. The run
directory gets::

    trials.jsonl       one line per trial: number, params, objective, seconds (rewritten as each one is scored)
    tune.json          the best trial, every trial, the metric and the held-out size
    best_config.yaml   the config with the best trial's values under `training:`; `rewardlab train` it
    config.yaml, env.json, training_args.json   as for a training run
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.config import dump_config
from rewardlab.config.schema import SearchRange, TrainConfig
from rewardlab.data.files import atomic_write_text
from rewardlab.data.prepare import prepare_data
from rewardlab.errors import ConfigError, DataError
from rewardlab.recipes.run_dir import check_output_dir, run_lock, tidy_run_dir

logger = logging.getLogger(__name__)


@dataclass
class TuneResult:
    run_dir: Path
    best_params: dict[str, Any]
    best_objective: float
    trials: list[dict[str, Any]]
    best_config: Path


def suggest(trial: Any, name: str, spec: SearchRange) -> Any:
    """The trial's value for one field: categorical over ``choices``, an int range when both bounds are ints (and
    not log-scaled), else a float range."""
    if spec.choices is not None:
        return trial.suggest_categorical(name, spec.choices)
    if isinstance(spec.low, int) and isinstance(spec.high, int) and not spec.log:
        return trial.suggest_int(name, spec.low, spec.high)
    return trial.suggest_float(name, float(spec.low), float(spec.high), log=spec.log)


def tune_config(cfg: TrainConfig) -> TrainConfig:
    """The config the trials train with: checkpoints off (a trial is scored, not kept), and a held-out split of
    ``data.train`` when the config names none."""
    from rewardlab.training.arguments import check_training_keys, check_training_values

    check_training_keys({k: None for k in cfg.tune.space})
    fixed = [k for k in cfg.tune.space if k in ("seed", "output_dir")]
    if fixed:
        raise ConfigError(f"tune.space: {fixed[0]} cannot be searched (set it at the top level)")
    for name, spec in cfg.tune.space.items():  # every value a trial may draw, checked before anything is written
        for value in spec.choices if spec.choices is not None else (spec.low, spec.high):
            try:
                check_training_values({name: value})
            except ConfigError as exc:
                problem = str(exc).split("\n  - ", 1)[-1]
                raise ConfigError(f"tune.space.{name}: {problem}") from None
    data = cfg.data
    if data.eval is None and not data.eval_fraction:
        share = 100 * cfg.tune.eval_fraction
        logger.info("no held-out data in the config: tune holds out %.0f%% of data.train", share)
        data = data.model_copy(update={"eval_fraction": cfg.tune.eval_fraction})
    training = {**cfg.training, "save_strategy": "no", "load_best_model_at_end": False}
    return cfg.model_copy(update={"data": data, "training": training})


def run_tune(cfg: TrainConfig) -> TuneResult:
    """Run ``cfg.tune.trials`` trainings with values drawn from ``cfg.tune.space``; write the best config."""
    try:
        import optuna
    except ImportError as exc:
        missing = f"tune needs the [tune] extra ({exc.name} is missing)"
        raise ConfigError(f"{missing}: pip install 'rewardlab[tune]'") from None

    from rewardlab.recipes.train import build_trainer

    run_dir = Path(cfg.output_dir)
    check_output_dir(run_dir)
    trial_cfg = tune_config(cfg)
    data = prepare_data(trial_cfg.data, trial_cfg.seed, trial_cfg.model.attributes)
    key = f"eval_{cfg.tune.metric}"
    direction = "maximize" if cfg.tune.metric == "accuracy" else "minimize"
    with run_lock(run_dir):
        tidy_run_dir(run_dir)
        built = build_trainer(trial_cfg, run_dir, data, callbacks=[], fresh_model_per_run=True)
        if built.eval_set is None:
            raise DataError(
                "tune needs held-out pairs to score the trials: every held-out record was dropped "
                "(see data.overlong) or the held-out share is empty; raise tune.eval_fraction"
            )
        trials_path = run_dir / "trials.jsonl"
        atomic_write_text(trials_path, "")
        rows: dict[int, dict[str, Any]] = {}
        current: dict[str, Any] = {}

        def space(trial: Any) -> dict[str, Any]:  # called as each trial starts training
            current.update(trial=trial, started=time.perf_counter())
            return {name: suggest(trial, name, spec) for name, spec in cfg.tune.space.items()}

        def objective(metrics: dict[str, float]) -> float:  # called after each evaluation; the last one counts
            value, trial = float(metrics[key]), current["trial"]
            rows[trial.number] = {
                "trial": trial.number,
                "params": dict(trial.params),
                "objective": value,
                "seconds": round(time.perf_counter() - current["started"], 1),
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
            }
            atomic_write_text(trials_path, "".join(json.dumps(r) + "\n" for r in rows.values()))
            logger.info("trial %d: %s = %.4f with %s", trial.number, key, value, trial.params)
            return value

        timeout = cfg.tune.timeout_minutes * 60 if cfg.tune.timeout_minutes else None
        best = built.trainer.hyperparameter_search(
            hp_space=space,
            compute_objective=objective,
            n_trials=cfg.tune.trials,
            direction=direction,
            backend="optuna",
            sampler=optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.tune.startup_trials()),
            timeout=timeout,
        )
        trials = list(rows.values())
        # The best config trains with the user's own settings (checkpoints, eval) and the found values.
        best_cfg = cfg.model_copy(
            update={
                "training": {**cfg.training, **best.hyperparameters},
                "output_dir": str(run_dir / "best"),
                "data": trial_cfg.data,
            }  # fmt: skip
        )
        best_path = run_dir / "best_config.yaml"
        atomic_write_text(best_path, dump_config(best_cfg))
        summary = {
            "metric": key,
            "direction": direction,
            "best": {"trial": int(best.run_id), "objective": best.objective, "params": best.hyperparameters},
            "eval_pairs": len(built.eval_set),
            "trials": trials,
        }
        atomic_write_text(run_dir / "tune.json", json.dumps(summary, indent=2))
    return TuneResult(run_dir, best.hyperparameters, float(best.objective), trials, best_path)
