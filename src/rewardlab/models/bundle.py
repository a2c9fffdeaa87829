"""The reward-model object: one place that assembles, saves and loads a reward model.

A :class:`RewardBundle` is everything that turns records into scores: the :class:`RewardModel` (backbone + head),
the tokenizer (and, for a vision-language model, its image processor and :class:`VisionFamily`), the transform
(record → ids), how rows are padded, whether a prompt may be computed once for several responses, and the typed
self-description its export carries (:class:`ExportMeta`). It is built two ways — :meth:`RewardBundle.for_training`
from a run config, :meth:`RewardBundle.load` from a directory — and both go through :func:`assemble`, which decides
vision, transform, prompt sharing and the mask dtype once. The trainer, the :class:`~rewardlab.models.scorer.Scorer`
(and so evaluation, the server, RL rewards and benchmarks) take a bundle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.config.schema import ModelConfig, TrainConfig
from rewardlab.data.input_format import InputFormat
from rewardlab.errors import ConfigError
from rewardlab.models.export_meta import ExportMeta
from rewardlab.models.reward_model import (
    BLOCK_MASK_ATTENTION,
    RewardModel,
    attention_implementation,
    can_share_prompts,
    head_labels,
    unwrap_peft,
)
from rewardlab.models.vision import ProcessorBundle, VisionFamily, vision_family

DEFAULT_MAX_LENGTH = 1024  # scoring a model whose export names no limit (a foreign RM)


@dataclass
class RewardBundle:
    """A reward model and everything that turns records into its scores (see the module docstring).

    ``mask_dtype``: the dtype shared-prefix masks are added to attention scores in (the compute
    dtype: quantized weights are stored as integers). ``source``: where the weights and processors came from.
    """

    model: RewardModel
    tokenizer: Any
    transform: Any  # TextTransform or VisionTransform
    meta: ExportMeta
    family: VisionFamily | None
    padding_side: str
    mask_dtype: Any
    source: str

    @property
    def vision(self) -> bool:
        return self.family is not None

    @property
    def share_prompts(self) -> bool:
        """Whether shared-prefix rows give this model exactly the scores of one row per response (a causal model
        read at the last token, attention that takes a 4-D mask, no 3-D rotary positions); callers may still turn
        sharing off. Read from the live model: switching its attention implementation changes the answer."""
        return can_share_prompts(self.model, self.family)

    @property
    def block_mask(self) -> bool:
        """Whether shared-prefix rows carry block and segment ids for a FlexAttention block mask (the model runs
        ``flex_attention``) instead of a dense 4-D mask."""
        return attention_implementation(self.model) == BLOCK_MASK_ATTENTION

    @property
    def processing(self) -> Any:
        """What is saved beside the weights: the tokenizer, or tokenizer + image processor."""
        return ProcessorBundle(self.tokenizer, self.transform.image_processor) if self.vision else self.tokenizer

    def sharing(self, requested: bool) -> dict[str, Any]:
        """The collators' prompt-sharing settings: empty (one row per response) unless requested and exact."""
        if not (requested and self.share_prompts):
            return {}
        return {"share_prompts": True, "share_images": self.vision, "mask_dtype": self.mask_dtype,
                "block_mask": self.block_mask}  # fmt: skip

    # -- building ----------------------------------------------------------------------------------------------
    @classmethod
    def for_training(cls, cfg: TrainConfig, *, model_cfg: ModelConfig | None = None) -> RewardBundle:
        """The bundle a run trains: the backbone from ``cfg.model`` (seeded), LoRA / quantization applied, the
        transform with the run's ``data`` settings. Settings the model cannot honour fail before the weights load."""
        from rewardlab.models.backbones import load_tokenizer, read_vision_family

        model_cfg = model_cfg or cfg.model
        tokenizer = load_tokenizer(model_cfg)
        family = read_vision_family(model_cfg.name_or_path, model_cfg.trust_remote_code)
        check_training_settings(cfg, family)
        model = training_model(model_cfg, tokenizer, family, seed=cfg.seed)
        # Encoders read [CLS] at position 0, so they pad on the right; decoders score the same either way.
        side = "right" if model.pooling == "cls" or model_cfg.padding_side == "auto" else model_cfg.padding_side
        meta = ExportMeta(
            pooling=model.pooling, max_length=cfg.data.max_length, overlong=cfg.data.overlong,
            chat_template=cfg.data.chat_template, padding_side=side,
            pad_equals_eos=tokenizer.pad_token_id == tokenizer.eos_token_id, config=cfg.model_dump(mode="json"),
            labels=head_labels(model_cfg),
            ensemble_kind=model_cfg.ensemble.kind if model_cfg.ensemble else None,
            attributes={k: list(v) for k, v in model_cfg.attributes.items()} if model_cfg.attributes else None,
        )  # fmt: skip
        fmt = InputFormat.for_training(model.pooling, cfg.data.append_eos, cfg.data.text_pair)
        return assemble(model, tokenizer, meta, model_cfg.name_or_path, text_format=fmt,
                        pixels=(model_cfg.min_pixels, model_cfg.max_pixels))  # fmt: skip

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str = "cpu", dtype: str | None = None,
        max_length: int | None = None,
    ) -> RewardBundle:  # fmt: skip
        """A reward model directory — a rewardlab export or checkpoint (merged, or a LoRA adapter on its base,
        text or vision), a training run directory (its export), or any HF sequence-classification RM — ready to
        score on ``device``. ``max_length`` overrides the export's own limit."""
        from rewardlab.models.checkpoint import load_model_files

        files = load_model_files(path, dtype=dtype)
        pooling = files.meta.pooling or resolve_pooling(unwrap_peft(files.backbone), "auto")
        model = RewardModel(files.backbone, pooling, members=files.meta.members, kind=files.meta.kind,
                            attributes=len(files.meta.attribute_names))  # fmt: skip
        model = model.to(device).eval()
        meta = files.meta
        if max_length is not None or meta.max_length is None:
            meta = meta.model_copy(update={"max_length": max_length or meta.max_length or DEFAULT_MAX_LENGTH})
        return assemble(model, files.tokenizer, meta, str(files.processor_path), text_format=meta.text_format(
            model.pooling), overlong="truncate")  # fmt: skip

    @classmethod
    def from_model(
        cls, model: RewardModel, tokenizer: Any, *, max_length: int = DEFAULT_MAX_LENGTH, padding_side: str = "right",
        chat_template: str = "auto", text_format: InputFormat | None = None, source: str = "",
    ) -> RewardBundle:  # fmt: skip
        """A bundle around a text model already in memory (tests, notebooks): format 2 rows unless told."""
        meta = ExportMeta(pooling=model.pooling, max_length=max_length, chat_template=chat_template,
                          padding_side=padding_side)  # fmt: skip
        return assemble(model, tokenizer, meta, source, text_format=text_format or InputFormat.for_training(
            model.pooling, append_eos=False), overlong="truncate")  # fmt: skip

    # -- saving ------------------------------------------------------------------------------------------------
    def training_meta(self) -> ExportMeta:
        """The export's self-description after the training rows were encoded: a text model records its input
        format, and whether any row used the chat template (if none did, the export ships the plain-string one)."""
        if self.vision:
            return self.meta
        transform = self.transform
        templated = "trained" if transform.templated_rows else "concat" if self.model.pooling == "last" else "none"
        return self.meta.model_copy(update={"input_format": transform.input_format.as_json(chat_template=templated)})

    def save(self, target: str | os.PathLike[str], meta: ExportMeta | None = None, *, merge_lora: bool = True) -> Path:
        """Export atomically (see :func:`rewardlab.models.checkpoint.save_reward_model`)."""
        from rewardlab.models.checkpoint import save_reward_model

        return save_reward_model(self.model, self.processing, target, meta or self.meta, merge_lora=merge_lora)


def training_model(model_cfg: ModelConfig, tokenizer: Any, family: VisionFamily | None, *, seed: int) -> RewardModel:
    """A freshly initialised (seeded) reward model as ``model_cfg`` says: what :meth:`RewardBundle.for_training`
    trains, and what a hyperparameter search loads anew for each trial beside the bundle's tokenizer."""
    from transformers import set_seed

    from rewardlab.models.backbones import load_backbone

    set_seed(seed)
    backbone = load_backbone(model_cfg, tokenizer, family)
    ensemble = model_cfg.ensemble
    return RewardModel(backbone, resolve_pooling(backbone, model_cfg.pooling), members=ensemble.members if ensemble
                       else 1, kind=ensemble.kind if ensemble else "heads",
                       attributes=len(model_cfg.attributes or {}))  # fmt: skip


def resolve_pooling(model: Any, requested: str) -> str:
    """``auto``: decoders with a ``score`` head pool at the last token; encoders use their own [CLS] head."""
    if requested in ("last", "cls"):
        return requested
    return "last" if hasattr(model, "score") else "cls"


def check_training_settings(cfg: TrainConfig, family: VisionFamily | None) -> None:
    """Data settings that need a vision-language model (or pairs) fail before anything loads."""
    if cfg.data.num_irrelevant_pairs and family is None:
        raise ConfigError("data.num_irrelevant_pairs needs a vision-language model (it swaps images between pairs)")
    if cfg.model.ensemble and family is not None:
        raise ConfigError("model.ensemble works on text models for now; drop it for a vision-language model")
    if cfg.model.attributes and family is not None:
        raise ConfigError("model.attributes works on text models for now; drop it for a vision-language model")
    if cfg.data.num_irrelevant_pairs and cfg.data.ranked_as == "groups":
        raise ConfigError("data.num_irrelevant_pairs works on pairs; set data.ranked_as=pairs or drop it")


def assemble(
    model: RewardModel,
    tokenizer: Any,
    meta: ExportMeta,
    source: str,
    *,
    text_format: InputFormat,
    overlong: str | None = None,
    pixels: tuple[int | None, int | None] = (None, None),
) -> RewardBundle:
    """The one place that decides, for a model and tokenizer, its family, transform and mask dtype (and so whether
    prompts may be shared: :attr:`RewardBundle.share_prompts`).

    ``source``: the directory (or hub name) whose image processor a vision model uses; ``overlong``: the
    transform's policy (scoring always truncates; training follows ``meta.overlong``); ``pixels``: Qwen-VL's
    ``(min_pixels, max_pixels)``."""
    from rewardlab.data.transforms import TextTransform, VisionTransform
    from rewardlab.models.backbones import adopt_processor_chat_template, load_image_processor

    config = unwrap_peft(model.backbone).config
    family = vision_family(config)
    max_length = meta.max_length or DEFAULT_MAX_LENGTH
    policy = overlong or meta.overlong
    if family is None:
        transform: Any = TextTransform(tokenizer, max_length, model.pooling, policy, meta.chat_template,
                                       input_format=text_format)  # fmt: skip
    else:
        processor = load_image_processor(source, config, family, *pixels)
        adopt_processor_chat_template(tokenizer, source)
        transform = VisionTransform(
            tokenizer, processor, family.layout, config.image_token_id,
            family.image_tokens(config, processor, tokenizer), max_length, policy, chat_template=meta.chat_template,
        )  # fmt: skip
    mask_dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return RewardBundle(model, tokenizer, transform, meta, family, meta.padding_side, mask_dtype, source)
