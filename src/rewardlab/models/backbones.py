"""Backbone loading: tokenizer, weights (text or vision-language, by the family the config names), dropout,
quantization and LoRA. Assembly into a reward model is :mod:`rewardlab.models.bundle`'s job."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from rewardlab.config.schema import LoraSettings, ModelConfig, QuantizationSettings
from rewardlab.errors import ModelError
from rewardlab.models.vision import FAMILIES, VisionFamily, vision_family

logger = logging.getLogger(__name__)

_DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The backbone's tokenizer with a pad token: ``model.pad_token`` if set, else its own pad token when that is
    not the EOS, else a pad-like special token it already has (``<|fim_pad|>``, ``<|finetune_right_pad_id|>``,
    ``<unk>``), else the EOS. A pad distinct from the EOS lets Hugging Face's own pooling (which skips every pad
    id) read the last token in outside tools; rewardlab pools from the attention mask either way."""
    from transformers import AutoTokenizer

    check_tokenizer_files(Path(cfg.name_or_path))
    try:
        tok = AutoTokenizer.from_pretrained(cfg.name_or_path, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{cfg.name_or_path}: cannot load a tokenizer ({exc})") from None
    check_tokenizer(tok, cfg.name_or_path)
    if cfg.pad_token is not None:
        tok.pad_token = cfg.pad_token
    elif tok.pad_token is None or tok.pad_token_id == tok.eos_token_id:
        pad = distinct_pad_token(tok)
        if pad is not None:
            logger.info("pad token: %s (the tokenizer's %s)", pad, "is the EOS" if tok.pad_token else "is unset")
            tok.pad_token = pad
        elif tok.pad_token is None and tok.eos_token is not None:
            logger.info("pad token: the EOS (the tokenizer has no other; set model.pad_token to choose one)")
            tok.pad_token = tok.eos_token
        elif tok.pad_token is None:
            raise ModelError(f"{cfg.name_or_path}: the tokenizer has no pad or eos token; set model.pad_token")
    return tok


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.txt", "vocab.json",
                   "spiece.model")  # fmt: skip


def check_tokenizer_files(directory: Path) -> None:
    """A local model directory must hold its tokenizer: without one, transformers builds an empty tokenizer that
    turns every text into nothing, and every response would get the same score."""
    if directory.is_dir() and not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"{directory}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...); copy the base model's "
            "tokenizer files into it"
        )


def check_tokenizer(tok: Any, where: str) -> None:
    if len(tok) < 2 or not tok("a b", add_special_tokens=False).input_ids:
        raise ModelError(f"{where}: the tokenizer is empty (it turns text into no tokens); restore its files")


def distinct_pad_token(tok: Any) -> str | None:
    """A special token already in the vocabulary that can pad without being the EOS or BOS: one named like a pad
    token, else the unknown token; None when there is none."""
    taken = {tok.eos_token, tok.bos_token}
    added = [t.content for t in getattr(tok, "added_tokens_decoder", {}).values() if getattr(t, "special", False)]
    for token in added:
        if "pad" in token.lower() and token not in taken:
            return token
    return tok.unk_token if tok.unk_token is not None and tok.unk_token not in taken else None


def read_vision_family(name_or_path: str, trust_remote_code: bool = False) -> VisionFamily | None:
    """The vision family (:data:`rewardlab.models.vision.FAMILIES`) ``name_or_path``'s config names; None for a
    text model."""
    from transformers import AutoConfig

    try:
        return vision_family(AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{name_or_path}: cannot read the model config ({exc})") from None


def load_backbone(cfg: ModelConfig, tokenizer: Any, family: VisionFamily | None) -> Any:
    """``AutoModelForSequenceClassification`` with one output — or, for a vision-language model (``family``), a
    :class:`~rewardlab.models.vision.VisionRewardBackbone` — with LoRA applied when configured."""
    import torch
    from safetensors import SafetensorError

    from rewardlab.models.vision import VisionRewardBackbone

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    kwargs["dtype"] = getattr(torch, cfg.dtype) if cfg.dtype != "auto" else "auto"
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    check_vision_settings(cfg, family)
    if cfg.quantization is not None:
        kwargs["quantization_config"] = quantization_config(cfg.quantization)
    try:
        if family is not None:
            model = VisionRewardBackbone.from_pretrained(cfg.name_or_path, **kwargs)
        else:
            model = load_sequence_classifier(cfg.name_or_path, {**head_kwargs(cfg), **kwargs})
    except ImportError as exc:  # e.g. attn_implementation=flash_attention_2 without the flash-attn package
        hint = " (or leave model.attn_implementation unset for sdpa)" if cfg.attn_implementation else ""
        raise ModelError(f"{cfg.name_or_path}: a package the model settings need is missing: {exc}{hint}") from None
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
        raise ModelError(
            f"{cfg.name_or_path}: cannot load a reward backbone: missing, corrupt or incomplete files ({exc})"
        ) from None
    model.config.get_text_config().pad_token_id = tokenizer.pad_token_id
    if cfg.disable_dropout:
        logger.info("dropout disabled in %d modules", disable_dropout(model))
    if cfg.freeze_vision_tower:
        logger.info("froze %d vision-tower parameters", model.freeze_vision_tower())
    if cfg.quantization is not None:
        prepare_quantized(model)
    if cfg.lora is not None:
        lora_members = cfg.ensemble.members if cfg.ensemble and cfg.ensemble.kind == "lora" else 0
        model = apply_lora(model, cfg.lora, family, members=lora_members)
    return model


def head_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """The output head's size and names: one ``reward`` logit (also each member's of a LoRA ensemble), an
    ensemble of heads' mean and members, or the score and the attribute heads."""
    from rewardlab.models.reward_model import head_labels

    lora_ensemble = cfg.ensemble is not None and cfg.ensemble.kind == "lora"
    labels = ["reward"] if lora_ensemble else head_labels(cfg) or ["reward"]
    if len(labels) == 1:
        return {"num_labels": 1}
    # A backbone that already has a one-logit head (a reward model) gets a fresh head of the ensemble's size.
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)}, "ignore_mismatched_sizes": True}  # fmt: skip


# A reward head a base model does not have: transformers' load report lists it as MISSING on every fresh run.
HEAD_PREFIXES = ("score.", "classifier.")


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


def load_sequence_classifier(name_or_path: str, kwargs: dict[str, Any]) -> Any:
    """``AutoModelForSequenceClassification`` with one output (or ``kwargs``' ``num_labels``), where a newly
    initialised reward head is reported as what it is (info) and only weights missing elsewhere, or of another
    shape, as a warning (transformers' own load report, which calls every fresh head MISSING, is kept quiet)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    # A filter, not a level: transformers runs extra checks (and logs them) when this logger's level is raised.
    hf_logger = hf_logging.get_logger("transformers.modeling_utils")
    no_report = _DropLoadReport()
    hf_logger.addFilter(no_report)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, output_loading_info=True, **{"num_labels": 1, **kwargs}
        )
    finally:
        hf_logger.removeFilter(no_report)
    missing = sorted(info.get("missing_keys") or [])
    # An ensemble's head replaces a one-logit head of another shape: that is a new head too.
    mismatched = [k if isinstance(k, str) else str(k[0]) for k in info.get("mismatched_keys") or []]
    head = [k for k in missing + mismatched if k.startswith(HEAD_PREFIXES)]
    other = [k for k in missing + mismatched if k not in head]
    if head:
        logger.info("%s: new reward head (%s), initialised randomly", name_or_path, ", ".join(head))
    if other:
        shown = ", ".join(other[:8]) + (f" and {len(other) - 8} more" if len(other) > 8 else "")
        logger.warning("%s: %d weights missing from the checkpoint or of another shape, initialised randomly: %s",
                       name_or_path, len(other), shown)  # fmt: skip
    return model


def disable_dropout(model: Any) -> int:
    """Zero every dropout: ``nn.Dropout`` modules, and the ``attention_dropout`` rates attention layers pass to
    their kernels (Llama/Qwen). Returns how many modules changed."""
    from torch import nn

    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout) and module.p:
            module.p = 0.0
            changed += 1
        if isinstance(getattr(module, "attention_dropout", None), float) and module.attention_dropout:
            module.attention_dropout = 0.0
            changed += 1
    return changed


def check_vision_settings(cfg: ModelConfig, family: VisionFamily | None) -> None:
    """Settings that only a vision-language model can honour fail for a text model, all listed, before loading."""
    if family is not None:
        return
    problems = []
    if cfg.freeze_vision_tower:
        problems.append("model.freeze_vision_tower is set, but the model has no vision tower")
    if cfg.lora is not None and cfg.lora.projector != "frozen":
        problems.append(f"model.lora.projector={cfg.lora.projector} needs a vision-language model (a projector)")
    if problems:
        raise ModelError(f"{cfg.name_or_path}: " + "; ".join(problems))


def not_quantized_modules() -> list[str]:
    """Kept in full precision when quantizing: fresh heads, and a VLM's vision tower and projector.

    transformers matches these against module names from the start or as a suffix, so a VLM's parts are named
    by their full path in ``AutoModelForImageTextToText`` (``model.vision_tower``, ``model.visual.merger``).
    """
    parts = {f"model.{m}" for family in FAMILIES.values() for m in (*family.vision_modules, family.projector)}
    return ["score", "classifier", "pre_classifier", "lm_head", *sorted(parts)]


def quantization_config(q: QuantizationSettings) -> Any:
    import importlib.util

    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError("model.quantization needs bitsandbytes: pip install 'rewardlab[quant]'")
    skip = not_quantized_modules()
    if q.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
        bnb_4bit_use_double_quant=q.double_quant,
        llm_int8_skip_modules=skip,
    )


def prepare_quantized(model: Any) -> None:
    """Freeze quantized weights and make layer norms fp32 (peft's k-bit preparation), plus a CPU fix."""
    import bitsandbytes as bnb
    from peft import prepare_model_for_kbit_training

    prepare_model_for_kbit_training(getattr(model, "vlm", model), use_gradient_checkpointing=False)
    for module in model.modules():
        # On CPUs with AVX512-BF16, an eval forward repacks 4-bit weights in place and the next training step
        # fails ("a view of a leaf Variable ... in-place"); keep the portable kernel.
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def lora_targets(model: Any, lora: LoraSettings, family: VisionFamily | None) -> tuple[str | list[str], list[str]]:
    """peft's ``(target_modules, modules_to_save)``: the head is always trained fully and saved; with
    ``projector: lora`` the projector's linear layers join the targets (by full name), with ``full`` the
    projector joins ``modules_to_save``."""
    from torch import nn

    to_save = [name for name in ("score", "classifier", "pre_classifier") if hasattr(model, name)]
    all_linear = family is not None and lora.target_modules == "all-linear"
    targets = family.lora_targets if all_linear else lora.target_modules
    if family is None or lora.projector == "frozen":
        return targets, to_save
    projector = model.projector_path()
    if lora.projector == "full":
        return targets, [*to_save, projector]
    linears = [name for name, module in model.named_modules()
               if name.startswith(projector + ".") and isinstance(module, nn.Linear)]  # fmt: skip
    if isinstance(targets, str):  # peft full-matches a string as one regex
        return f"(?:{targets})|" + "|".join(re.escape(name) for name in linears), to_save
    return [*targets, *linears], to_save


def apply_lora(model: Any, lora: LoraSettings, family: VisionFamily | None = None, *, members: int = 0) -> Any:
    """Wrap with peft LoRA (targets and fully trained modules: :func:`lora_targets`). ``members``: a LoRA
    ensemble's K adapters instead of one (:func:`add_lora_members`)."""
    from peft import LoraConfig, TaskType, get_peft_model

    targets, to_save = lora_targets(model, lora, family)
    peft_cfg = LoraConfig(
        task_type=None if family is not None else TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        modules_to_save=to_save,
    )
    peft_model = add_lora_members(model, peft_cfg, members) if members else get_peft_model(model, peft_cfg)
    trainable, total = peft_model.get_nb_trainable_parameters()
    logger.info("LoRA: %d of %d parameters trainable (%.2f%%)", trainable, total, 100 * trainable / total)
    return peft_model


def add_lora_members(model: Any, peft_cfg: Any, members: int) -> Any:
    """A LoRA ensemble: adapters ``member_1`` ... ``member_K`` on one frozen base, each with its own copy of the
    head (peft's ``modules_to_save``), all trainable. peft copies the loaded head for every adapter, so members 2..K
    get fresh heads, drawn from the (seeded) global generator as transformers initialises a new head; member 1
    keeps the loaded one, so one member trains exactly like plain LoRA. LoRA's A matrices are drawn per adapter."""
    import torch
    from peft import get_peft_model

    from rewardlab.models.reward_model import member_names

    names = member_names(members)
    peft_model = get_peft_model(model, peft_cfg, adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, peft_cfg)
    std = getattr(model.config, "initializer_range", 0.02)
    with torch.no_grad():
        for module in peft_model.modules():
            copies = getattr(module, "modules_to_save", None)
            if not isinstance(copies, torch.nn.ModuleDict):
                continue
            for name in names[1:]:
                for layer in copies[name].modules():
                    if isinstance(layer, torch.nn.Linear):
                        layer.weight.normal_(0.0, std)
                        if layer.bias is not None:
                            layer.bias.zero_()
    # add_adapter and set_adapter leave only the active adapter trainable; the optimizer needs all of them.
    peft_model.set_requires_grad(names, requires_grad=True)
    return peft_model


def load_image_processor(
    path: str, config: Any, family: VisionFamily, min_pixels: int | None = None, max_pixels: int | None = None
) -> Any:
    """The family's PIL image processor (no torchvision needed), read from ``path``."""
    import importlib

    module, name = family.image_processor.split(":")
    cls = getattr(importlib.import_module(module), name)
    kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    if kwargs and not family.pixel_knobs:
        raise ModelError(f"{path}: model.min_pixels / max_pixels apply to Qwen-VL models, not {config.model_type}")
    if (Path(path) / "preprocessor_config.json").is_file() or not Path(path).exists():
        try:
            return cls.from_pretrained(path, **kwargs)
        except OSError as exc:
            raise ModelError(f"{path}: cannot load the image processor ({exc})") from None
    raise ModelError(f"{path}: no preprocessor_config.json (the image processor) in the model directory")


def adopt_processor_chat_template(tokenizer: Any, path: str) -> None:
    """Some VLM checkpoints keep their image-aware chat template with the processor (``chat_template.json``),
    not with the tokenizer; give it to the tokenizer, which saves it into every checkpoint from then on."""
    import json

    from transformers.utils import cached_file

    if "image" in (getattr(tokenizer, "chat_template", None) or ""):
        return
    try:
        found = cached_file(path, "chat_template.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        return
    if found is None:
        return
    try:
        template = json.loads(Path(found).read_text(encoding="utf-8")).get("chat_template")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise ModelError(f"{found}: not a valid chat_template.json ({exc})") from None
    if isinstance(template, str) and "image" in template:
        tokenizer.chat_template = template
        logger.info("using the processor's chat template from %s", found)
