"""``rewardlab demo``: offline, CPU, minutes. Generated pairs → tiny model → train → held-out eval → plots."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from rewardlab.config.schema import DataConfig, DemoConfig, ModelConfig, TrainConfig
from rewardlab.data.records import PreferencePair

logger = logging.getLogger(__name__)

ACCURACY_TARGET = 0.90


@dataclass
class DemoResult:
    run_dir: Path
    accuracy: float
    by_flaw: dict[str, float]
    seconds: float


def write_pairs(path: Path, pairs: list[PreferencePair]) -> None:
    from rewardlab.data.files import atomic_write_text

    rows = [
        {"id": p.id, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "subset": p.subset} for p in pairs
    ]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def demo_train_config(cfg: DemoConfig, data_dir: Path, model_path: str) -> TrainConfig:
    tiny = cfg.model == "tiny"
    return TrainConfig(
        output_dir=cfg.output_dir,
        seed=cfg.seed,
        data=DataConfig(train=str(data_dir / "train.jsonl"), eval=str(data_dir / "eval.jsonl"), max_length=128),
        model=ModelConfig(name_or_path=model_path),
        training={
            "num_train_epochs": cfg.epochs,
            "learning_rate": cfg.learning_rate if tiny else min(cfg.learning_rate, 5e-5),
            "per_device_train_batch_size": cfg.batch_size,
            "per_device_eval_batch_size": 64,
            "logging_steps": 10,
            "eval_strategy": "epoch",
            "save_strategy": "epoch",
            "save_total_limit": 2,
        },
    )


def accuracy_by_subset(pairs: list[PreferencePair], chosen: list[float], rejected: list[float]) -> dict[str, float]:
    """Preference accuracy per ``subset`` (in the demos: the flaw or the changed attribute), by name."""
    from rewardlab.evaluation.metrics import subset_accuracy

    per = subset_accuracy(chosen, rejected, [p.subset for p in pairs])["subsets"]
    return {name: per[name]["accuracy"] for name in sorted(per)}


def run_demo(cfg: DemoConfig) -> DemoResult:
    from rewardlab.data.files import atomic_write_text
    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.evaluation.metrics import preference_accuracy
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.train import run_train

    start = time.perf_counter()
    run_dir = Path(cfg.output_dir)
    train_pairs, eval_pairs = make_pairs(cfg.n_train, cfg.seed), make_pairs(cfg.n_eval, cfg.seed + 10_000)
    write_pairs(run_dir / "data" / "train.jsonl", train_pairs)
    write_pairs(run_dir / "data" / "eval.jsonl", eval_pairs)
    if cfg.model == "tiny":
        from rewardlab.models.tiny import build_tiny_model

        model_path = build_tiny_model(
            run_dir / "base-model", corpus(train_pairs), vocab_size=800, hidden=96, layers=3, heads=4, seed=cfg.seed
        )
    else:
        from rewardlab.models.packaged import minilm_path

        model_path = minilm_path()
    result = run_train(demo_train_config(cfg, run_dir / "data", str(model_path)))

    # Held-out accuracy through the one scoring path, from the exported directory, per flaw type.
    scorer = Scorer.from_pretrained(str(result.model_dir), batch_size=64, device="cpu")
    chosen, rejected = scorer.score_pairs(eval_pairs)
    accuracy = preference_accuracy(chosen, rejected)["accuracy"]
    by_flaw = accuracy_by_subset(eval_pairs, chosen, rejected)
    seconds = time.perf_counter() - start
    summary = {"accuracy": accuracy, "target": ACCURACY_TARGET, "by_flaw": by_flaw, "seconds": round(seconds, 1)}
    atomic_write_text(run_dir / "demo_summary.json", json.dumps(summary, indent=2))
    return DemoResult(run_dir, accuracy, by_flaw, seconds)
