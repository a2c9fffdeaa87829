"""RewardModel: a backbone and a scalar head, pooled at the last non-pad token (DESIGN.md §3).

The index of the scored token comes from the attention mask, never from ``input_ids == pad_token_id``,
so a batch padded on either side, and a tokenizer whose pad token is its EOS token, score the same.
(Hugging Face's own sequence-classification pooling looks for the pad id and so reads the token *before*
a trailing EOS when pad == eos — a known way reward models silently learn from the wrong token.)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from rewardlab.config.schema import EnsembleKind


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last attended token of each row, for left or right padding. ``(b, t) → (b,)``."""
    t = attention_mask.shape[-1]
    positions = torch.arange(t, device=attention_mask.device).expand_as(attention_mask)
    return (positions * attention_mask.to(positions.dtype)).argmax(-1)


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that count attended tokens only, so left padding does not shift them. ``(b, t) → (b, t)``."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def unwrap_peft(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (LoRA layers are injected in place, so it trains them)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


# Attention implementations that take an arbitrary 4-D additive mask (flash-attention's kernels do not), and
# FlexAttention, which takes the same structure as a block mask (flex_shared_mask) and skips the masked tiles.
MASKABLE_ATTENTION = (None, "sdpa", "eager")
BLOCK_MASK_ATTENTION = "flex_attention"


def attention_implementation(model: Any) -> str | None:
    """The attention implementation of ``model``'s (text) transformer."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "_attn_implementation", None)


def can_share_prompts(model: RewardModel, family: Any = None) -> bool:
    """Whether shared-prefix rows (:func:`rewardlab.data.collator.shared_prefix_batch`) give ``model`` exactly the
    scores of one row per sequence: a causal model read at the last token, with attention that takes a 4-D mask
    or a FlexAttention block mask (text models); for vision-language models (``family``, a
    :class:`~rewardlab.models.vision.VisionFamily`), a family with plain 1-D positions (LLaVA, LLaVA-NeXT; Qwen-VL
    derives its 3-D rotary positions from the whole row) on a dense mask."""
    attention = attention_implementation(model)
    if family is not None and (family.mrope or attention == BLOCK_MASK_ATTENTION):
        return False
    return model.pooling == "last" and attention in (*MASKABLE_ATTENTION, BLOCK_MASK_ATTENTION)


def flex_shared_mask(block_ids: torch.Tensor, segment_ids: torch.Tensor) -> Any:
    """The FlexAttention ``BlockMask`` of shared-prefix rows (the rule of
    :func:`rewardlab.data.collator.shared_attention`, the dense mask's): tiles no query of a tile may see are
    skipped by the kernel, so a row costs what its prompt and responses need, not its length squared."""
    from torch.nn.attention.flex_attention import create_block_mask

    from rewardlab.data.collator import shared_attention

    def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
        return shared_attention(block_ids[b, q], block_ids[b, kv], segment_ids[b, q], segment_ids[b, kv], q, kv)

    rows, length = block_ids.shape
    return create_block_mask(mask_mod, rows, None, length, length, device=block_ids.device)


class RewardModel(nn.Module):
    """Scores token sequences: ``forward(input_ids, attention_mask) → (b,)`` float32 scores.

    An ensemble of ``members`` (``model.ensemble``) scores with each member and returns their mean;
    ``return_members=True`` gives ``(b, 1 + members)``: the mean, then each member. Two kinds:

    - ``heads``: K heads on one backbone, one forward pass, ``1 + members`` logits: the members' scores in
      ``1..members`` and, in logit 0, their mean — which is itself linear in the pooled features, so the export's
      head row 0 holds the mean of the member rows (:func:`sync_ensemble_mean`) and a plain transformers client
      reads the ensemble's reward as ``logits[:, 0]``. ``forward`` computes the mean from the members.
    - ``lora``: K peft adapters (``member_1`` ... ``member_K``, :func:`member_names`), each with its own one-logit
      head (peft's ``modules_to_save`` copy), on one frozen base: one forward pass per member, peft's active
      adapter switched in between (K times the cost of one model). The switch is state on the backbone, so one
      model is not called from several threads at once (the server scores in one thread).

    Attribute heads (``model.attributes``): ``attributes`` more logits after the preference score, each an
    attribute's predicted rating on a 0–1 scale; ``return_attributes=True`` gives ``(b, 1 + attributes)``: the
    score, then the attributes (``forward`` alone still returns the preference score).

    Args:
        backbone: an ``AutoModelForSequenceClassification`` model with ``num_labels=1`` (``1 + members`` for
            ``heads``, ``1 + attributes`` with attribute heads), optionally wrapped by peft (for ``lora``: a peft
            model holding the members' adapters).
        pooling: ``"last"`` reads the head at the last attended token (decoders: Llama, Qwen, ...);
            ``"cls"`` uses the model's own head on the first token (encoders: BERT, DistilBERT, MiniLM).
    """

    def __init__(self, backbone: nn.Module, pooling: Literal["last", "cls"], members: int = 1,
                 kind: EnsembleKind = "heads", attributes: int = 0):  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        self.members = members
        self.attributes = attributes
        self.adapters = member_names(members) if kind == "lora" else []
        hf = unwrap_peft(backbone)
        if pooling == "last" and not isinstance(getattr(hf, "score", None), nn.Module):
            raise ValueError(f"pooling='last' needs a model with a `score` head; {type(hf).__name__} has none")
        if self.adapters:
            missing = [name for name in self.adapters if name not in getattr(backbone, "peft_config", {})]
            if missing:
                raise ValueError(f"a LoRA ensemble of {members} needs the peft adapters {self.adapters}; "
                                 f"{', '.join(missing)} missing")  # fmt: skip
        elif members > 1 and hf.config.num_labels != members + 1:
            raise ValueError(f"an ensemble of {members} heads needs num_labels={members + 1}, "
                             f"the model has {hf.config.num_labels}")  # fmt: skip
        if attributes and (members > 1 or self.adapters):
            raise ValueError("attribute heads do not combine with an ensemble")
        if attributes and hf.config.num_labels != attributes + 1:
            raise ValueError(f"{attributes} attribute heads need num_labels={attributes + 1} (the score first), "
                             f"the model has {hf.config.num_labels}")  # fmt: skip

    @property
    def config(self) -> Any:
        return unwrap_peft(self.backbone).config

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        return_members: bool = False,
        return_attributes: bool = False,
        **extra: Any,
    ) -> torch.Tensor:
        if return_attributes:
            return self._logits(input_ids, attention_mask, token_type_ids, extra)[:, : 1 + self.attributes].float()
        if not self.adapters:
            return self._reward(self._logits(input_ids, attention_mask, token_type_ids, extra), return_members)
        if "block_ids" in extra:  # one FlexAttention block mask for all members
            attention_mask = flex_shared_mask(extra.pop("block_ids"), extra.pop("segment_ids"))
        # Training: each member runs with its adapter active and trainable, so the graph holds every member's own
        # adapter and head; set_adapter freezes the others, and they are made trainable again for the optimizer.
        # (Gradient checkpointing would recompute with the adapter active at backward time: refused in the config.)
        training = self.training and torch.is_grad_enabled()
        scores = []
        for name in self.adapters:
            self.backbone.set_adapter(name, inference_mode=not training)
            scores.append(self._logits(input_ids, attention_mask, token_type_ids, extra)[:, 0].float())
        if training:
            self.backbone.set_requires_grad(self.adapters, requires_grad=True)
        members = torch.stack(scores, 1)  # (b, members)
        if self.members == 1:
            return members if return_members else members[:, 0]
        mean = members.mean(-1)
        return torch.cat([mean[:, None], members], 1) if return_members else mean

    def _logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: Any,
        token_type_ids: torch.Tensor | None,
        extra: dict[str, Any],
    ) -> torch.Tensor:
        """``(b, labels)`` head logits of the backbone (its active adapter, under peft). ``extra`` is not changed."""
        extra = dict(extra)
        if self.pooling == "cls":
            kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs, **extra).logits
        hf = unwrap_peft(self.backbone)
        body = getattr(hf, hf.base_model_prefix)
        score_positions = extra.pop("score_positions", None)
        if score_positions is not None:
            # Shared-prefix rows (data.collator.shared_prefix_batch): a 4-D mask (or the block and segment ids of a
            # FlexAttention block mask), its own position ids, and the (row, column) of every scored token.
            if "block_ids" in extra:
                attention_mask = flex_shared_mask(extra.pop("block_ids"), extra.pop("segment_ids"))
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                          **extra).last_hidden_state  # fmt: skip
            return hf.score(hidden[score_positions[:, 0], score_positions[:, 1]])
        hidden = body(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
            use_cache=False,
            **extra,
        ).last_hidden_state  # (b, t, h)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        return hf.score(hidden[rows, last_token_index(attention_mask)])  # (b, labels)

    def _reward(self, logits: torch.Tensor, return_members: bool) -> torch.Tensor:
        """``(b, labels)`` head logits → ``(b,)`` scores, or ``(b, 1 + members)`` with ``return_members``."""
        logits = logits.float()
        if self.members == 1:  # with attribute heads, "every score" is the preference score and the attributes
            return logits[:, : 1 + self.attributes] if return_members else logits[:, 0]
        members = logits[:, 1 : 1 + self.members]
        mean = members.mean(-1)
        return torch.cat([mean[:, None], members], 1) if return_members else mean

    # Trainer calls these on the model it is given.
    def activation_checkpointing_enable(self, activation_checkpointing_kwargs=None, **kwargs: Any) -> None:
        if self.adapters:  # the config refuses it; this guards other callers
            raise ValueError("gradient checkpointing gives a LoRA ensemble wrong gradients (see forward)")
        hf = unwrap_peft(self.backbone)
        kw = {"use_reentrant": False, **(activation_checkpointing_kwargs or {})}
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
        if hf is not self.backbone:
            # Frozen embeddings give no grad to checkpointed blocks' inputs; LoRA needs them to require grad.
            hf.enable_input_require_grads()

    gradient_checkpointing_enable = activation_checkpointing_enable


def member_names(members: int) -> list[str]:
    """``member_1`` ... ``member_K``: an ensemble's members (its logits after the mean; a LoRA ensemble's adapters)."""
    return [f"member_{k}" for k in range(1, members + 1)]


def ensemble_labels(members: int) -> list[str]:
    """The names of an ensemble's scores (``id2label``): ``reward`` (the members' mean), then each member."""
    return ["reward", *member_names(members)] if members > 1 else ["reward"]


def head_labels(cfg: Any) -> list[str] | None:
    """The export's score names for a ``ModelConfig``: ``reward`` then an ensemble's members (the head's
    ``id2label`` for ``heads``; a LoRA ensemble's members each have one logit), or ``reward`` then the attributes;
    None for one score."""
    if cfg.attributes:
        return ["reward", *cfg.attributes]
    if cfg.ensemble and cfg.ensemble.members > 1:
        return ensemble_labels(cfg.ensemble.members)
    return None


@torch.no_grad()
def sync_ensemble_mean(model: RewardModel, state_dict: dict[str, torch.Tensor] | None = None) -> int:
    """Set row 0 of an ensemble's output layer (weight and bias) to the mean of the member rows, in the live
    model and in ``state_dict`` (the Trainer's, under DeepSpeed/FSDP), so that ``logits[:, 0]`` of the saved
    model is the ensemble's reward. Returns how many tensors it set; 0 for a single head."""
    if model.members == 1 or model.adapters:  # a LoRA ensemble's members each have their own one-logit head
        return 0
    labels = model.members + 1
    tensors = [p for name, m in unwrap_peft(model.backbone).named_modules() if isinstance(m, nn.Linear)
               and m.out_features == labels and name.split(".")[0] in ("score", "classifier")
               for p in (m.weight, m.bias) if p is not None]  # fmt: skip
    if state_dict is not None:
        head = ("score", "classifier")
        tensors += [v for k, v in state_dict.items() if k.split(".")[-1] in ("weight", "bias") and v.ndim >= 1
                    and v.shape[0] == labels and any(part in head for part in k.split("."))]  # fmt: skip
    for t in tensors:
        t[0] = t[1:labels].mean(0)
    return len(tensors)
