"""Backbone loading: the one models module that knows about model families (and, later, modalities)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from rewardlab.config.schema import LoraSettings, ModelConfig
from rewardlab.errors import ModelError

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def resolve_pooling(model: Any, requested: str) -> Literal["last", "cls"]:
    """``auto``: decoders with a ``score`` head pool at the last token; encoders use their own [CLS] head."""
    if requested in ("last", "cls"):
        return requested  # type: ignore[return-value]
    return "last" if hasattr(model, "score") else "cls"


def load_tokenizer(cfg: ModelConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(cfg.name_or_path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{cfg.name_or_path}: cannot load a tokenizer ({exc})") from None
    if tok.pad_token is None:
        if cfg.pad_token is not None:
            tok.pad_token = cfg.pad_token
        elif tok.eos_token is not None:
            # Safe here: RewardModel pools from the attention mask, not from the pad id.
            tok.pad_token = tok.eos_token
        else:
            raise ModelError(f"{cfg.name_or_path}: the tokenizer has no pad or eos token; set model.pad_token")
    elif cfg.pad_token is not None:
        tok.pad_token = cfg.pad_token
    return tok


def load_backbone(cfg: ModelConfig, tokenizer: Any) -> Any:
    """``AutoModelForSequenceClassification`` with one output; LoRA applied when configured."""
    import torch
    from transformers import AutoModelForSequenceClassification

    kwargs: dict[str, Any] = {"num_labels": 1, "trust_remote_code": cfg.trust_remote_code}
    kwargs["dtype"] = getattr(torch, cfg.dtype) if cfg.dtype != "auto" else "auto"
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    try:
        model = AutoModelForSequenceClassification.from_pretrained(cfg.name_or_path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{cfg.name_or_path}: cannot load a sequence-classification model ({exc})") from None
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    return model


def apply_lora(model: Any, lora: LoraSettings) -> Any:
    """Wrap with peft LoRA; the freshly initialised head is trained fully and saved (``modules_to_save``)."""
    from peft import LoraConfig, TaskType, get_peft_model

    head = [name for name in ("score", "classifier", "pre_classifier") if hasattr(model, name)]
    peft_cfg = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        modules_to_save=head,
    )
    peft_model = get_peft_model(model, peft_cfg)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return peft_model
