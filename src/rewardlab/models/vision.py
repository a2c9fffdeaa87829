"""Vision-language backbones for reward models (part of the backbone loader, DESIGN.md §2).

A :class:`VisionRewardBackbone` wraps an ``AutoModelForImageTextToText`` model (LLaVA-1.5, LLaVA-NeXT,
Qwen2-VL, Qwen2.5-VL) and a scalar ``score`` head, and exposes the same two things a text decoder does —
``getattr(model, model.base_model_prefix)`` returning final hidden states, and ``model.score`` — so
:class:`~rewardlab.models.reward_model.RewardModel`, the trainer and the Scorer need no vision branch.

Images are encoded once per *image*, not once per row: the collator sends each distinct image once with
``image_rows`` listing the images every row shows, in row order (a pair's chosen and rejected rows share
theirs), and the vision tower's features are reused through ``mm_encoder_outputs``. A family is one small
:class:`VisionFamily` entry in :data:`FAMILIES`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rewardlab.data.transforms import PromptLayout

HEAD_FILE = "reward_head.safetensors"


def fixed_image_tokens(config: Any, _processor: Any, _tokenizer: Any) -> Callable[[dict, int], int]:
    """LLaVA-1.5: every image is resized to the tower's square input, so the count is fixed."""
    vision = config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2
    full = config.vision_feature_select_strategy == "full"  # "default" drops the CLS token
    return lambda _pixels, _k=0: n + int(full)


def merged_grid_image_tokens(config: Any, _processor: Any, _tokenizer: Any) -> Callable[[dict, int], int]:
    """Qwen-VL: one token per ``merge × merge`` block of the image's patch grid (``image_grid_thw``)."""
    merge = config.vision_config.spatial_merge_size
    return lambda pixels, k=0: int(pixels["image_grid_thw"][k].prod()) // merge**2


def anyres_image_tokens(config: Any, processor: Any, tokenizer: Any) -> Callable[[dict, int], int]:
    """LLaVA-NeXT: an overview crop plus the tiles of the best-fitting grid, unpadded to the image's aspect
    ratio, plus one newline token per row — counted by transformers' own LLaVA-NeXT processor."""
    from transformers import LlavaNextProcessor

    counter = LlavaNextProcessor(
        image_processor=processor, tokenizer=tokenizer, patch_size=config.vision_config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy, num_additional_image_tokens=1,
    )  # fmt: skip
    drop_cls = int(config.vision_feature_select_strategy == "default")

    def count(pixels: dict, k: int = 0) -> int:
        height, width = (int(x) for x in pixels["image_sizes"][k])
        crop_h, crop_w = pixels["pixel_values"].shape[-2:]
        return counter._get_number_of_features(height, width, crop_h, crop_w) - drop_cls

    return count


# LoRA on a VLM adapts the language model; the vision tower keeps its weights, and the projector does unless
# ``lora.projector`` says otherwise.
LANGUAGE_MODEL_LORA = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass(frozen=True)
class VisionFamily:
    """Everything that differs between VLM families, and nothing else: adding a family is one entry in
    :data:`FAMILIES` (plus its tiny test builder in :mod:`rewardlab.models.tiny`).

    ``layout``: the built-in prompt, BOS rule and mm-token rule (:class:`~rewardlab.data.transforms.PromptLayout`).
    ``vision_modules``: attribute names (on the inner model) of the vision tower, frozen on request.
    ``projector``: dotted path (on the inner model) of the vision→language projector, which ``model.lora.projector``
    keeps frozen, adapts with LoRA or trains fully.
    ``mrope``: the family computes its own 3-D rotary positions (Qwen-VL), so no 2-D ``position_ids`` (and no
    shared-prompt rows, whose positions restart per response).
    ``image_processor``: ``"module:Class"`` of its PIL image processor (no torchvision needed).
    ``pixel_knobs``: the image processor takes ``min_pixels`` / ``max_pixels`` (``model.min_pixels``...).
    ``image_tokens``: ``(config, image_processor, tokenizer) -> ((pixel_inputs, k) -> int)``, placeholder
    tokens of image ``k`` of a record.
    ``feature_kwargs``: extra inputs ``get_image_features`` takes besides ``pixel_values``.
    ``row_kwargs``: per-row inputs of the language model besides ids and mask.
    ``lora_targets``: what ``lora.target_modules: all-linear`` means for the family (peft regex).
    """

    layout: PromptLayout
    vision_modules: tuple[str, ...]
    projector: str
    mrope: bool
    image_processor: str
    image_tokens: Callable[[Any, Any, Any], Callable[[dict, int], int]]
    pixel_knobs: bool = False
    feature_kwargs: tuple[str, ...] = ()
    row_kwargs: tuple[str, ...] = field(default=())
    lora_targets: str = LANGUAGE_MODEL_LORA


_CLIP = "transformers.models.clip.image_processing_pil_clip:CLIPImageProcessorPil"
_LLAVA_NEXT = "transformers.models.llava_next.image_processing_pil_llava_next:LlavaNextImageProcessorPil"
_QWEN = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl:Qwen2VLImageProcessorPil"


def _llava_layout(family: str) -> PromptLayout:
    """LLaVA-1.5: ``USER: <image>\n{prompt} ASSISTANT: {response}</s>`` (more images: ``<image>\n<image>\n...``);
    LLaVA-NeXT uses the Vicuna/Llama prompt of llava-v1.6-vicuna, the same."""
    return PromptLayout(family, before="USER: ", between_images="\n", after_image="\n",
                        before_response=" ASSISTANT:", response_prefix=" ", bos=True)  # fmt: skip


def _qwen_vl(family: str) -> VisionFamily:
    """Qwen2-VL and Qwen2.5-VL: the chat format with vision start/end markers around each image's pads."""
    layout = PromptLayout(
        family, before="<|im_start|>user\n<|vision_start|>", between_images="<|vision_end|><|vision_start|>",
        after_image="<|vision_end|>", before_response="<|im_end|>\n<|im_start|>assistant\n", mm_token_types=True,
    )  # fmt: skip
    return VisionFamily(
        layout, ("visual",), "visual.merger", mrope=True, image_processor=_QWEN, image_tokens=merged_grid_image_tokens,
        pixel_knobs=True, feature_kwargs=("image_grid_thw",), row_kwargs=("mm_token_type_ids",),
    )  # fmt: skip


FAMILIES: dict[str, VisionFamily] = {
    "llava": VisionFamily(
        _llava_layout("llava"),
        ("vision_tower",),
        "multi_modal_projector",
        mrope=False,
        image_processor=_CLIP,
        image_tokens=fixed_image_tokens,
    ),  # fmt: skip
    "llava_next": VisionFamily(
        _llava_layout("llava_next"),
        ("vision_tower",),
        "multi_modal_projector",
        mrope=False,
        image_processor=_LLAVA_NEXT,
        image_tokens=anyres_image_tokens,
        feature_kwargs=("image_sizes",),
    ),  # fmt: skip
    "qwen2_vl": _qwen_vl("qwen2_vl"),
    "qwen2_5_vl": _qwen_vl("qwen2_5_vl"),
}


def vision_family(config: Any) -> VisionFamily | None:
    """The family of a model config, or None for a text model."""
    return FAMILIES.get(getattr(config, "model_type", None))


def is_vision_config(config: Any) -> bool:
    return vision_family(config) is not None


@dataclass
class HiddenStates:
    last_hidden_state: torch.Tensor


class VisionBody(nn.Module):
    """The VLM's inner model, called with each image encoded once. Returns final hidden states ``(rows, t, h)``."""

    def __init__(self, vlm: nn.Module, family: VisionFamily):
        super().__init__()
        self.vlm = vlm
        self.family = family

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        use_cache: bool = False,
        pixel_values: torch.Tensor | None = None,
        image_rows: torch.Tensor | None = None,
        **extra: Any,
    ) -> HiddenStates:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        inner = self.vlm.model
        kwargs: dict[str, Any] = {k: extra[k] for k in self.family.row_kwargs if k in extra}
        if pixel_values is not None:
            feature_kwargs = {k: extra[k] for k in self.family.feature_kwargs if k in extra}
            per_image = inner.get_image_features(pixel_values=pixel_values, return_dict=True, **feature_kwargs)
            rows = image_rows.tolist() if image_rows is not None else list(range(input_ids.shape[0]))
            features = [per_image.pooler_output[i] for i in rows]  # per placeholder block in row order, shared
            kwargs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=features)}
            if "image_grid_thw" in extra:
                kwargs["image_grid_thw"] = extra["image_grid_thw"][
                    image_rows if image_rows is not None else slice(None)
                ]
        if not self.family.mrope:
            kwargs["position_ids"] = position_ids
        out = inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache, **kwargs)
        return HiddenStates(out.last_hidden_state)


class VisionRewardBackbone(nn.Module):
    """A VLM plus a scalar head, shaped like a text sequence-classification decoder (``body`` + ``score``)."""

    base_model_prefix = "body"

    def __init__(self, vlm: nn.Module, model_type: str):
        super().__init__()
        self.model_type = model_type
        self.body = VisionBody(vlm, FAMILIES[model_type])
        hidden = vlm.config.get_text_config().hidden_size
        self.score = nn.Linear(hidden, 1, bias=False, dtype=next(vlm.parameters()).dtype)
        nn.init.normal_(self.score.weight, std=1.0 / (hidden + 1) ** 0.5)

    @property
    def vlm(self) -> nn.Module:
        return self.body.vlm

    @property
    def config(self) -> Any:
        return self.vlm.config

    def projector_path(self) -> str:
        """Dotted path of the vision→language projector from this module (the names peft matches)."""
        projector = self.vlm.model.get_submodule(self.body.family.projector)
        return next(name for name, module in self.named_modules() if module is projector)

    def freeze_vision_tower(self) -> int:
        """Freeze the vision tower; returns how many parameters were frozen."""
        frozen = 0
        for name in self.body.family.vision_modules:
            for p in getattr(self.vlm.model, name).parameters():
                p.requires_grad_(False)
                frozen += p.numel()
        return frozen

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        self.vlm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=gradient_checkpointing_kwargs)

    def enable_input_require_grads(self) -> None:
        self.vlm.enable_input_require_grads()

    def save_pretrained(self, directory: str | Path, state_dict: dict | None = None, **_: Any) -> None:
        """The VLM as a standard directory (``AutoModelForImageTextToText`` loads it) + ``reward_head.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        vlm_sd = head_sd = None
        if state_dict is not None:
            vlm_sd = {k.removeprefix("body.vlm."): v for k, v in state_dict.items() if k.startswith("body.vlm.")}
            head_sd = {k.removeprefix("score."): v for k, v in state_dict.items() if k.startswith("score.")}
        self.vlm.save_pretrained(directory, state_dict=vlm_sd)
        head = head_sd if head_sd is not None else self.score.state_dict()
        save_file({k: v.detach().contiguous().cpu() for k, v in head.items()}, str(directory / HEAD_FILE))
        (directory / "reward_head.json").write_text(json.dumps({"model_type": self.model_type}), encoding="utf-8")

    def load_checkpoint(self, directory: str | Path) -> None:
        """Load weights written by :meth:`save_pretrained` into this live model (resume)."""
        from safetensors.torch import load_file

        fresh = type(self.vlm).from_pretrained(directory, dtype=next(self.vlm.parameters()).dtype)
        self.vlm.load_state_dict(fresh.state_dict())
        self.score.load_state_dict(load_file(str(Path(directory) / HEAD_FILE)))

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> VisionRewardBackbone:
        """A VLM directory or hub name; a saved head is loaded when present, else the head is new."""
        from safetensors.torch import load_file
        from transformers import AutoModelForImageTextToText

        vlm = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        model = cls(vlm, vlm.config.model_type)
        model.name_or_path = str(path)  # peft records it as the adapter's base_model_name_or_path
        head = Path(path) / HEAD_FILE
        if head.is_file():
            model.score.load_state_dict(load_file(str(head)))
        return model


@dataclass
class ProcessorBundle:
    """Tokenizer + image processor saved side by side into every checkpoint (what the Trainer calls the
    processing class)."""

    tokenizer: Any
    image_processor: Any

    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(directory)
        self.image_processor.save_pretrained(directory)

    def __getattr__(self, name: str) -> Any:  # pad_token_id, eos_token_id, ... come from the tokenizer
        if name in ("tokenizer", "image_processor"):
            raise AttributeError(name)
        return getattr(self.tokenizer, name)
