"""The input format of a text reward model: how (prompt, response) becomes token ids — one contract, written
into every export (``rewardlab.json`` → ``input_format``, the tokenizer, the model card) and read by the Scorer.

Format 2 (rewardlab ≥ 0.2) is chosen so that the *natural call* of every client builds exactly the training input:

- **Decoders** (``layout="concat"``): ``tokenizer(prompt + response)`` — the two strings concatenated with no
  separator and tokenized *together*, nothing added by default (no BOS, no EOS), the score read at the last token.
  That is what TRL's GRPO reward path builds (``prompt + completion``, completions decoded without special tokens,
  ``add_special_tokens=False``), what ``pipeline("text-classification")`` builds, and what a user writes. The
  exported tokenizer adds nothing either, so ``tokenizer(text)`` and ``tokenizer(text, add_special_tokens=False)``
  agree. ``append_eos=True`` (``data.append_eos``) appends the EOS instead (OpenRLHF's convention); the exported
  tokenizer then appends it too, but TRL's GRPO path, which strips it, needs rewardlab's reward function.
- **Encoders** (``layout="pair"``): ``tokenizer(prompt, response)`` — ``[CLS] prompt [SEP] response [SEP]`` with
  segment ids 0/1, the score read by the model's own head at ``[CLS]``. With ``data.text_pair: false``
  (``layout="joined"``): ``tokenizer(prompt + response)`` — one segment, ``[CLS] prompt+response [SEP]``, segment
  ids 0, as TRL's reward trainer and ``pipeline("text-classification")`` build it.
- **Chat messages** are rendered by the tokenizer's chat template and the whole conversation is tokenized
  together without added specials (the template writes its own), as ``apply_chat_template`` + TRL do. A model
  trained on plain strings only is exported with :data:`CONCAT_TEMPLATE`, which renders ``[user, assistant]`` as
  ``prompt + response`` — the string format it was trained on — so template-driven tools (reward-bench, TRL's
  conversational path) give the trained input.

Format 1 (exports without ``input_format``): prompt and response tokenized separately, the tokenizer's BOS
first, the EOS appended. Still read, so older exports score as they were trained.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

FORMAT_VERSION = 2

# Renders a conversation as the concatenation of its contents: [user: p, assistant: r] → p + r.
CONCAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


@dataclass(frozen=True)
class InputFormat:
    """How a text RM's input is built (see the module docstring). ``version`` 1 is the legacy layout."""

    version: int = FORMAT_VERSION
    layout: Literal["concat", "pair", "joined"] = "concat"
    append_eos: bool = False
    # Foreign RMs (no rewardlab.json) are scored as their tokenizer builds inputs: with its own special tokens.
    add_special_tokens: bool = False

    @classmethod
    def for_training(cls, pooling: str, append_eos: bool, text_pair: bool = True) -> InputFormat:
        encoder = "pair" if text_pair else "joined"
        return cls(layout=encoder if pooling == "cls" else "concat", append_eos=append_eos and pooling != "cls")

    def as_json(self, *, chat_template: str) -> dict[str, Any]:
        """``rewardlab.json``'s ``input_format``; ``chat_template``: ``"trained"`` (the tokenizer's own, used in
        training), ``"concat"`` (:data:`CONCAT_TEMPLATE`, the plain-string format) or ``"none"`` (an encoder
        trained on plain strings: a text pair, which no chat template renders)."""
        return {**asdict(self), "chat_template": chat_template, "score_token": "last" if self.layout == "concat"
                else "cls", "padding_side": "right", "recipe": self.recipe()}  # fmt: skip

    def recipe(self) -> str:
        """The natural call that builds the training input, as code."""
        if self.layout == "pair":
            return "tokenizer(prompt, response)"
        if self.version == 1:
            return "tokenizer(prompt + response + tokenizer.eos_token, add_special_tokens=False)  # format 1"
        return "tokenizer(prompt + response)"


def export_tokenizer(tokenizer: Any, fmt: InputFormat, *, trained_with_template: bool) -> Any:
    """A copy of the training tokenizer whose natural call builds the training input: right padding; for decoders
    a post-processor that adds exactly what training added (nothing, or the EOS) and, for a model trained on plain
    strings only, :data:`CONCAT_TEMPLATE` as its chat template."""
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.padding_side = "right"
    if fmt.layout != "concat" or fmt.version != FORMAT_VERSION:
        return tok
    if not trained_with_template:
        tok.chat_template = CONCAT_TEMPLATE
    if hasattr(type(tok), "add_bos_token") and hasattr(tok, "update_post_processor"):
        tok._add_bos_token, tok._add_eos_token = False, fmt.append_eos  # both set, then one rebuild
        tok.update_post_processor()
    return tok


def pin_special_tokens(directory: Path, fmt: InputFormat) -> None:
    """Write ``add_bos_token``/``add_eos_token`` into the saved ``tokenizer_config.json``: tokenizers that rebuild
    their post-processor from these flags when loaded (Llama's) then keep adding exactly what training added."""
    path = directory / "tokenizer_config.json"
    if fmt.layout != "concat" or fmt.version != FORMAT_VERSION or not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(add_bos_token=False, add_eos_token=fmt.append_eos)
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
