"""Model transforms: record → token ids. The only data module that knows about tokenizers.

Each text becomes ``[specials] + prompt + [sep] + response + [eos]``, built from the prompt and the
response tokenized *separately*, so that an over-long pair can be cut where it hurts least (the start of
the prompt) and so that training and scoring read exactly the same ids (`Scorer` calls this transform).

- Decoders (``pooling="last"``): ``[bos]? prompt response eos``; the score is read at the final ``eos``.
- Encoders (``pooling="cls"``): ``[CLS] prompt [SEP] response [SEP]`` with ``token_type_ids`` 0/1 — the
  same ids as ``tokenizer(prompt, response)``, so the exported model scores natively too.
- Conversational records (and ``chat_template="always"``) go through the tokenizer's chat template; the
  template closes the assistant turn, so no extra ``eos`` is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from rewardlab.data.records import PreferencePair, RankedGroup, Text
from rewardlab.errors import DataError


@dataclass
class TransformStats:
    """Counts for the over-long policy; logged by the caller so truncation is never silent."""

    truncated: int = 0
    dropped: int = 0
    seen: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"seen": self.seen, "truncated": self.truncated, "dropped": self.dropped}


@dataclass
class EncodedText:
    input_ids: list[int]
    token_type_ids: list[int] | None
    truncated: bool = False


@dataclass
class TextTransform:
    """Turns (prompt, response) into model inputs for a text reward model.

    Args:
        tokenizer: a Hugging Face tokenizer.
        max_length: longest sequence, special tokens included.
        pooling: ``"last"`` (decoders) or ``"cls"`` (encoders); decides the special-token layout.
        overlong: ``"truncate"`` (cut the prompt's start, then the response's start) or ``"drop"``.
        chat_template: ``"auto"`` (only for message lists), ``"always"`` or ``"never"``.
    """

    tokenizer: Any
    max_length: int
    pooling: Literal["last", "cls"]
    overlong: Literal["truncate", "drop"] = "truncate"
    chat_template: Literal["auto", "always", "never"] = "auto"
    stats: TransformStats = field(default_factory=TransformStats)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        if self.pooling == "cls":
            if tok.cls_token_id is None or tok.sep_token_id is None:
                raise DataError("pooling='cls' needs a tokenizer with [CLS] and [SEP] tokens (an encoder)")
            self._head, self._mid, self._tail = [tok.cls_token_id], [tok.sep_token_id], [tok.sep_token_id]
        else:
            probe = tok("a").input_ids
            adds_bos = tok.bos_token_id is not None and len(probe) > 0 and probe[0] == tok.bos_token_id
            self._head = [tok.bos_token_id] if adds_bos else []
            self._mid = []
            self._tail = [tok.eos_token_id] if tok.eos_token_id is not None else []
        # Segment ids only matter to encoders (BERT-style pair inputs); decoders do not take them.
        self._type_ids = self.pooling == "cls" and "token_type_ids" in getattr(tok, "model_input_names", ())
        # Messages are only rendered with a template; record whether one exists once.
        self._has_template = bool(getattr(tok, "chat_template", None))

    # -- rendering ---------------------------------------------------------------------------------------------
    def _uses_template(self, prompt: Text, response: Text) -> bool:
        is_chat = isinstance(prompt, list) or isinstance(response, list)
        if self.chat_template == "never":
            if is_chat:
                raise DataError("chat_template='never' but the record holds chat messages; use 'auto'")
            return False
        return self.chat_template == "always" or is_chat

    def _render(self, prompt: Text, response: Text) -> tuple[str, str, bool]:
        """Returns (prompt_text, response_text, templated)."""
        if not self._uses_template(prompt, response):
            return str(prompt), str(response), False
        if not self._has_template:
            raise DataError(
                "the record holds chat messages but the tokenizer has no chat template; set one on the "
                "tokenizer or give prompts and responses as plain strings"
            )
        prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        response_msgs = response if isinstance(response, list) else [{"role": "assistant", "content": response}]
        head = self.tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(prompt_msgs + response_msgs, tokenize=False)
        if not full.startswith(head):
            # Some templates rewrite earlier turns (e.g. strip reasoning); fall back to the prompt without the
            # generation prompt, which every template reproduces as a prefix.
            head = self.tokenizer.apply_chat_template(prompt_msgs, tokenize=False)
            if not full.startswith(head):
                raise DataError("the chat template does not render the prompt as a prefix of the conversation")
        return head, full[len(head) :], True

    # -- encoding ----------------------------------------------------------------------------------------------
    def encode(self, prompt: Text, response: Text) -> EncodedText | None:
        """Token ids for one (prompt, response); ``None`` when over-long and the policy is ``drop``."""
        prompt_text, response_text, templated = self._render(prompt, response)
        tok = self.tokenizer
        prompt_ids = tok(prompt_text, add_special_tokens=False).input_ids if prompt_text else []
        response_ids = tok(response_text, add_special_tokens=False).input_ids
        head, mid, tail = ([], [], []) if templated and self.pooling == "last" else (self._head, self._mid, self._tail)
        budget = self.max_length - len(head) - len(mid) - len(tail)
        truncated = len(prompt_ids) + len(response_ids) > budget
        if truncated:
            if self.overlong == "drop":
                return None
            keep_response = min(len(response_ids), budget)
            keep_prompt = budget - keep_response
            # Cut the prompt's start first (the recent context matters most), then the response's start, so that
            # the end of the response, where the score is read, survives.
            prompt_ids = prompt_ids[len(prompt_ids) - keep_prompt :] if keep_prompt > 0 else []
            response_ids = response_ids[len(response_ids) - keep_response :]
        first = head + prompt_ids + mid
        second = response_ids + tail
        type_ids = [0] * len(first) + [1] * len(second) if self._type_ids else None
        return EncodedText(first + second, type_ids, truncated)

    def encode_pair(self, pair: PreferencePair) -> dict[str, Any] | None:
        """Features of one pair for :class:`~rewardlab.data.collator.PairCollator`; ``None`` if dropped."""
        self.stats.seen += 1
        chosen = self.encode(pair.prompt, pair.chosen)
        rejected = self.encode(pair.prompt, pair.rejected)
        if chosen is None or rejected is None:
            self.stats.dropped += 1
            return None
        self.stats.truncated += int(chosen.truncated or rejected.truncated)
        feature: dict[str, Any] = {
            "chosen_input_ids": chosen.input_ids,
            "rejected_input_ids": rejected.input_ids,
            "margin": 0.0 if pair.margin is None else float(pair.margin),
        }
        if chosen.token_type_ids is not None:
            feature["chosen_token_type_ids"] = chosen.token_type_ids
            feature["rejected_token_type_ids"] = rejected.token_type_ids
        return feature

    def encode_group(self, group: RankedGroup) -> dict[str, Any] | None:
        """Features of one ranked group for :class:`~rewardlab.data.collator.GroupCollator`."""
        self.stats.seen += 1
        encoded = [self.encode(group.prompt, response) for response in group.responses]
        if any(e is None for e in encoded):
            self.stats.dropped += 1
            return None
        self.stats.truncated += int(any(e.truncated for e in encoded))
        feature: dict[str, Any] = {"input_ids": [e.input_ids for e in encoded], "ranks": list(group.ranks)}
        if encoded[0].token_type_ids is not None:
            feature["token_type_ids"] = [e.token_type_ids for e in encoded]
        return feature
