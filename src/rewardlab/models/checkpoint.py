"""Checkpoint IO: portable, self-describing model directories, written atomically (DESIGN.md §7).

A text RM directory is a standard Hugging Face directory — ``config.json``, ``model.safetensors`` and the
tokenizer, loadable unchanged by ``AutoModelForSequenceClassification`` — or, for LoRA without merging,
``adapter_config.json`` + ``adapter_model.safetensors`` (head included) — plus ``rewardlab.json``
(:class:`~rewardlab.models.export_meta.ExportMeta`). A LoRA ensemble (``model.ensemble.kind: lora``) cannot merge
into one model: its directory holds the base model in ``base/`` (left out of checkpoints, which name their base as
adapter checkpoints do) and each member's adapter and head in ``members/member_k/``, with the tokenizer and
``rewardlab.json`` beside them and no ``config.json`` at the top, so tools that expect one classifier fail there
instead of scoring with the base's untrained head.

Text exports carry their input format (:mod:`rewardlab.data.input_format`) three ways: in ``rewardlab.json``, in
the tokenizer (its post-processor adds what training added; its chat template renders messages as training did;
a pad token distinct from the EOS where the vocabulary has one) and in the model card (``README.md``). The
normalization mean/std also go into ``config.json`` (``mean``/``std``, where OpenRLHF reads them).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.data.files import atomic_directory, recover_directory
from rewardlab.data.input_format import InputFormat, export_tokenizer, pin_special_tokens
from rewardlab.errors import ModelError, missing_reason
from rewardlab.models.export_meta import FORMAT_VERSION, META_NAME, ExportMeta, Normalization
from rewardlab.models.model_card import write_model_card
from rewardlab.models.reward_model import RewardModel, sync_ensemble_mean, unwrap_peft
from rewardlab.models.vision import is_vision_config

logger = logging.getLogger(__name__)


def write_model_files(
    model: RewardModel,
    tokenizer: Any,
    directory: Path,
    meta: ExportMeta,
    *,
    merge_lora: bool,
    state_dict: dict[str, Any] | None = None,
) -> None:
    """Write weights, tokenizer and ``rewardlab.json`` into an existing (staging) directory.

    ``merge_lora``: merge a LoRA adapter into the weights (else save adapter + head); a LoRA ensemble cannot merge,
    and writes its base into ``base/`` instead (else the adapters name their base, as in checkpoints).

    ``state_dict`` (keys of the RewardModel, i.e. ``backbone.``-prefixed) comes from the Trainer under
    DeepSpeed/FSDP, where the live module's parameters may be partitioned.
    """
    backbone = model.backbone
    is_peft = unwrap_peft(backbone) is not backbone
    sync_ensemble_mean(model, state_dict)  # logits[:, 0] of what is saved is the ensemble's mean
    inner_sd = None
    if state_dict is not None:
        inner_sd = {k.removeprefix("backbone."): v for k, v in state_dict.items()}
    if model.adapters:
        write_lora_ensemble(backbone, directory, model.adapters, with_base=merge_lora, state_dict=inner_sd)
        adapter = None if merge_lora else {"base_model": unwrap_peft(backbone).config._name_or_path}
    elif is_peft and merge_lora:
        if inner_sd is not None:
            backbone.load_state_dict(inner_sd, strict=False)
        merged = _merged_copy(backbone)
        merged.save_pretrained(directory)
        adapter = None
    else:
        backbone.save_pretrained(directory, state_dict=inner_sd)
        adapter = {"base_model": unwrap_peft(backbone).config._name_or_path} if is_peft else None
    if meta.input_format is None and not is_vision_config(model.config):
        fmt = meta.text_format(model.pooling)  # what it was built with (format 2 for a model from memory)
        meta = meta.model_copy(update={"input_format": fmt.as_json(chat_template="trained")})
    # Whatever was loaded, the directory written now is a current-format export (its input format recorded).
    meta = meta.model_copy(update={"format_version": FORMAT_VERSION, "pooling": model.pooling,
                                   "adapter": adapter})  # fmt: skip
    if tokenizer is not None:
        meta = save_tokenizer(tokenizer, directory, meta, model.pooling)
    add_normalization_to_config(directory, meta.normalization)
    meta.write(directory)
    write_model_card(directory, meta)


LORA_BASE, LORA_MEMBERS = "base", "members"  # a LoRA ensemble's subdirectories (see the module docstring)


def write_lora_ensemble(backbone: Any, directory: Path, adapters: list[str], *, with_base: bool,
                        state_dict: dict[str, Any] | None = None) -> None:  # fmt: skip
    """A LoRA ensemble's files: each member's adapter and head in ``members/member_k/`` (peft writes every adapter
    not named ``default`` to a subdirectory of its name) and, ``with_base``, the frozen base in ``base/``."""
    backbone.save_pretrained(directory / LORA_MEMBERS, selected_adapters=adapters, state_dict=state_dict)
    (directory / LORA_MEMBERS / "README.md").unlink(missing_ok=True)  # peft's placeholder card; ours is above
    if with_base:
        base = base_model_state(state_dict if state_dict is not None else backbone.state_dict())
        unwrap_peft(backbone).save_pretrained(directory / LORA_BASE, state_dict=base)


def base_model_state(peft_state: dict[str, Any]) -> dict[str, Any]:
    """The base model's own weights from a peft LoRA model's state dict: adapter weights (``lora_*``) and the
    adapters' head copies (``modules_to_save``) left out, the wrapped layers' weights under their own names."""
    out = {}
    for key, value in peft_state.items():
        parts = key.split(".")
        if "modules_to_save" in parts or any(part.startswith("lora_") for part in parts):
            continue
        key = key.removeprefix("base_model.model.").replace(".base_layer.", ".").replace(".original_module.", ".")
        out[key] = value
    return out


def save_tokenizer(tokenizer: Any, directory: Path, meta: ExportMeta, pooling: str) -> ExportMeta:
    """Save the tokenizer (a text model's: so that its natural call builds the training input) and return
    ``meta`` with the input format's recipe checked against the saved files."""
    saved = meta.input_format
    if saved is None:
        tokenizer.save_pretrained(directory)
        portable_tokenizer_class(directory)
        return meta
    fmt = meta.text_format(pooling)
    export_tokenizer(tokenizer, fmt, trained_with_template=saved.get("chat_template") == "trained").save_pretrained(
        directory
    )
    pin_special_tokens(directory, fmt)
    portable_tokenizer_class(directory)
    if natural_call_matches(directory, tokenizer, fmt, pooling):
        return meta
    logger.warning(
        "%s: the saved tokenizer's natural call does not build the training input; the model card says to pass "
        "add_special_tokens=False",
        directory,
    )
    eos = " + tokenizer.eos_token" if fmt.append_eos else ""
    recipe = f"tokenizer(prompt + response{eos}, add_special_tokens=False)"
    return meta.model_copy(update={"input_format": {**saved, "recipe": recipe}})


# transformers 5 names its fast-tokenizer base class TokenizersBackend and writes that name into
# tokenizer_config.json; transformers 4 (which reward-bench and older stacks pin) knows it as PreTrainedTokenizerFast,
# a name transformers 5 still reads.
PORTABLE_TOKENIZER_CLASSES = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def portable_tokenizer_class(directory: Path) -> None:
    """Name the saved tokenizer's class so that transformers 4 and 5 both load it (see above)."""
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("tokenizer_class") in PORTABLE_TOKENIZER_CLASSES:
        config["tokenizer_class"] = PORTABLE_TOKENIZER_CLASSES[config["tokenizer_class"]]
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


PROBE = ("Tell me about tea.", " Green tea is steeped in water below boiling.")


def natural_call_matches(directory: Path, tokenizer: Any, fmt: InputFormat, pooling: str) -> bool:
    """Whether the saved tokenizer, reloaded, turns a probe pair into the ids training builds."""
    from transformers import AutoTokenizer

    from rewardlab.data.transforms import TextTransform

    reloaded = AutoTokenizer.from_pretrained(directory)
    prompt, response = PROBE
    natural = reloaded(prompt, response) if fmt.layout == "pair" else reloaded(prompt + response)
    trained = TextTransform(tokenizer, 10_000, pooling, input_format=fmt).encode(prompt, response)
    return natural.input_ids == trained.input_ids


def add_normalization_to_config(directory: Path, normalization: Normalization | None) -> None:
    """``mean``/``std`` of the eval scores into ``config.json`` (OpenRLHF normalizes rewards with them)."""
    path = directory / "config.json"
    if normalization is None or not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(mean=normalization.mean, std=normalization.std)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _merged_copy(peft_model: Any) -> Any:
    """Merge LoRA into a deep copy, so the live (training) model keeps its adapters."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()


def save_reward_model(
    model: RewardModel,
    tokenizer: Any,
    target: str | os.PathLike[str],
    meta: ExportMeta,
    *,
    merge_lora: bool = True,
) -> Path:
    """Export a reward model directory atomically. Returns its path."""
    with atomic_directory(target) as staging:
        write_model_files(model, tokenizer, staging, meta, merge_lora=merge_lora)
    return Path(target)


def resolve_model_dir(path: Path) -> Path:
    """A training run directory (``runs/my-rm``) means its final export (``runs/my-rm/model``)."""
    model_files = ("config.json", "adapter_config.json", META_NAME)
    if path.is_dir() and not any((path / f).is_file() for f in model_files):
        export = path / "model"
        if export.is_dir() or any(export.parent.glob(".model.old-*")):
            logger.info("%s is a run directory: using its export %s", path, export)
            return export
    return path


@dataclass
class ModelFiles:
    """What a model directory holds, loaded: the backbone (head included), its tokenizer, its ``rewardlab.json``
    and ``processor_path``, where the image processor is read (the model directory, or an adapter's base model when
    the adapter directory has none). :meth:`rewardlab.models.bundle.RewardBundle.load` assembles them."""

    backbone: Any
    tokenizer: Any
    meta: ExportMeta
    processor_path: Path


def adapter_base(path: Path, meta: ExportMeta) -> tuple[str, bool]:
    """``(base, is_vision)``: the base model an adapter directory was trained on (``adapter_config.json``'s
    ``base_model_name_or_path``, else ``rewardlab.json``'s ``adapter.base_model``) and whether it is a VLM.
    A base that is named nowhere or cannot be read is a ModelError naming both directories."""
    from rewardlab.models.backbones import read_vision_family

    try:
        base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path / 'adapter_config.json'}: corrupt ({exc})") from None
    base = base or (meta.adapter or {}).get("base_model")
    if not base:
        raise ModelError(
            f"{path}: the LoRA adapter names no base model (base_model_name_or_path in adapter_config.json)"
        )
    try:
        return base, read_vision_family(base) is not None
    except ModelError as exc:
        raise ModelError(
            f"{path}: the LoRA adapter's base model {base} cannot be loaded (moved or deleted?); restore it, or set "
            f"base_model_name_or_path in {path / 'adapter_config.json'} to where it is now ({exc})"
        ) from None


def _load_adapter(path: Path, meta: ExportMeta, kwargs: dict[str, Any]) -> tuple[Any, str]:
    """An adapter directory on its base model: ``(peft model, base)``. A VLM base gets rewardlab's reward head
    (:class:`VisionRewardBackbone`) and the trained head comes from the adapter's ``modules_to_save``."""
    from rewardlab.models.vision import VisionRewardBackbone

    base, vision = adapter_base(path, meta)
    if not vision:
        from peft import AutoPeftModelForSequenceClassification

        head: dict[str, Any] = {"num_labels": meta.num_labels}
        if meta.labels and meta.num_labels > 1:  # an ensemble's head on a base with its own (or no) head
            head |= {"id2label": dict(enumerate(meta.labels)), "ignore_mismatched_sizes": True}
        return AutoPeftModelForSequenceClassification.from_pretrained(path, **head, **kwargs), base
    from peft import PeftModel

    return PeftModel.from_pretrained(VisionRewardBackbone.from_pretrained(base, **kwargs), path), base


def _load_lora_ensemble(path: Path, meta: ExportMeta, kwargs: dict[str, Any]) -> tuple[Any, str]:
    """A LoRA ensemble directory: ``(peft model with every member's adapter, base)``, the base from ``base/`` (an
    export) or the one the adapters name (a checkpoint)."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from rewardlab.models.reward_model import member_names

    names = member_names(meta.members)
    members = [path / LORA_MEMBERS / name for name in names]
    missing = [str(m.relative_to(path)) for m in members if not (m / "adapter_config.json").is_file()]
    if missing:
        raise ModelError(f"{path}: a LoRA ensemble of {meta.members} members, but {', '.join(missing)} "
                         "holds no adapter (adapter_config.json); restore the directory or re-export it")  # fmt: skip
    base = str(path / LORA_BASE) if (path / LORA_BASE / "config.json").is_file() else adapter_base(members[0], meta)[0]
    backbone = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, **kwargs)
    backbone = PeftModel.from_pretrained(backbone, members[0], adapter_name=names[0])
    for name, member in zip(names[1:], members[1:]):
        backbone.load_adapter(member, adapter_name=name)
    return backbone, base


def _has_files(directory: Path, *names: str) -> bool:
    return any((directory / name).is_file() for name in names)


def load_model_files(path: str | os.PathLike[str], *, dtype: str | None = None) -> ModelFiles:
    """Load what a reward model directory holds: a rewardlab export or checkpoint (merged, or a LoRA adapter on its
    base model, text or vision; a LoRA ensemble's adapters on its base) or any HF sequence-classification RM. An
    adapter directory without its own tokenizer or image processor uses its base model's. Everything that goes
    wrong is a :class:`ModelError`."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rewardlab.models.backbones import check_tokenizer, check_tokenizer_files, read_vision_family
    from rewardlab.models.vision import HEAD_FILE, VisionRewardBackbone

    path = resolve_model_dir(Path(path))
    if not path.is_dir() and (restored := recover_directory(path)):
        logger.warning("%s", restored)
    if not path.is_dir():
        raise ModelError(f"{path}: model directory {missing_reason(path) or 'not found'}")
    meta = ExportMeta.read(path)
    kwargs = {"dtype": getattr(torch, dtype)} if dtype else {}
    assets = processor_path = path
    try:
        if (path / HEAD_FILE).is_file() or ((path / "config.json").is_file() and read_vision_family(str(path))):
            backbone = VisionRewardBackbone.from_pretrained(path, **kwargs)
            if not (path / HEAD_FILE).is_file():
                logger.warning(
                    "%s: a vision-language model without a reward head (%s): the head is freshly initialised, so "
                    "its scores are random and differ at each load; train it with `rewardlab train` (or load an "
                    "export) before trusting a score", path, HEAD_FILE,
                )  # fmt: skip
        elif meta.kind == "lora":
            backbone, base = _load_lora_ensemble(path, meta, kwargs)
            assets = path if _has_files(path, "tokenizer_config.json", "tokenizer.json") else Path(base)
        elif (path / "adapter_config.json").is_file():
            backbone, base = _load_adapter(path, meta, kwargs)
            assets = path if _has_files(path, "tokenizer_config.json", "tokenizer.json") else Path(base)
            processor_path = path if _has_files(path, "preprocessor_config.json") else Path(base)
        else:
            backbone = AutoModelForSequenceClassification.from_pretrained(path, num_labels=meta.num_labels, **kwargs)
        check_tokenizer_files(Path(assets))
        tokenizer = AutoTokenizer.from_pretrained(assets)
        check_tokenizer(tokenizer, str(assets))
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise ModelError(f"{path}: cannot load the model: missing, corrupt or incomplete files ({exc})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    unwrap_peft(backbone).config.get_text_config().pad_token_id = tokenizer.pad_token_id
    return ModelFiles(backbone, tokenizer, meta, processor_path)
