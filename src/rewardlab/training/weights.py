"""Reading weights written by :func:`rewardlab.models.checkpoint.write_model_files` back into a live model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardlab.errors import ModelError
from rewardlab.models.checkpoint import LORA_MEMBERS
from rewardlab.models.reward_model import unwrap_peft


def load_backbone_weights(backbone: Any, directory: str) -> None:
    """Load a checkpoint directory's weights into ``backbone`` (a transformers model, or peft-wrapped)."""
    from safetensors.torch import load_file

    directory_path = Path(directory)
    is_peft = unwrap_peft(backbone) is not backbone
    if is_peft and (directory_path / LORA_MEMBERS).is_dir():
        _load_lora_members(backbone, directory_path)
        return
    if is_peft:
        from peft import set_peft_model_state_dict

        adapter = directory_path / "adapter_model.safetensors"
        if not adapter.is_file():
            raise ModelError(f"{directory}: no adapter_model.safetensors to resume LoRA training from")
        set_peft_model_state_dict(backbone, load_file(adapter))
        return
    single, index = directory_path / "model.safetensors", directory_path / "model.safetensors.index.json"
    if single.is_file():
        state = load_file(single)
    elif index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {k: v for f in files for k, v in load_file(directory_path / f).items()}
    else:
        raise ModelError(f"{directory}: no model.safetensors(.index.json) to load")
    result = backbone.load_state_dict(state, strict=False)
    tied = set(getattr(backbone, "_tied_weights_keys", None) or [])
    missing = [k for k in result.missing_keys if k not in tied]
    if result.unexpected_keys or missing:
        raise ModelError(
            f"{directory}: weights do not match the model (missing {missing[:5]}, unexpected "
            f"{result.unexpected_keys[:5]})"
        )


def _load_lora_members(backbone: Any, directory: Path) -> None:
    """Each adapter of a LoRA ensemble (and its head) from ``members/<adapter>/`` of a checkpoint."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    for name in backbone.peft_config:
        adapter = directory / LORA_MEMBERS / name / "adapter_model.safetensors"
        if not adapter.is_file():
            raise ModelError(f"{directory}: no {LORA_MEMBERS}/{name}/adapter_model.safetensors to resume from")
        result = set_peft_model_state_dict(backbone, load_file(adapter), adapter_name=name)
        if result.unexpected_keys:
            raise ModelError(f"{adapter}: weights do not match the model (unexpected {result.unexpected_keys[:5]})")
