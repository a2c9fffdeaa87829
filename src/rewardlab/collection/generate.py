"""K candidate answers per prompt from a causal LM (transformers ``generate``, batched, sampled).

Prompts are text or chat messages. The rule (``chat_template: auto``): the tokenizer's chat template is used only
when the tokenizer has one (an instruct model answers a user turn, with the generation prompt); a base model without
one is prompted plainly, with the text as it is (chat-message prompts then are refused). Which form was used is
logged and recorded as ``prompt_form`` (``chat_template`` or ``plain``). Candidates of one prompt that come out
identical are sampled again (``max_tries`` rounds), so a group holds K different answers when the model can produce
them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from rewardlab.errors import ConfigError, ModelError

logger = logging.getLogger(__name__)


class CandidateGenerator:
    def __init__(self, model_path: str, *, device: str = "auto", dtype: str | None = None,
                 chat_template: str = "auto", trust_remote_code: bool = False):  # fmt: skip
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from rewardlab.models.scorer import resolve_device

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                model_path, dtype=getattr(torch, dtype) if dtype else "auto", trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"{model_path}: cannot load a causal language model and its tokenizer ({exc})") from None
        self.model.to(resolve_device(device)).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if chat_template == "always" and not has_template:
            raise ConfigError(f"chat_template=always, but {model_path}'s tokenizer has no chat template")
        self.use_template = has_template and chat_template != "never"
        why = "chat_template=never" if has_template else "the tokenizer has no chat template"
        if self.use_template:
            logger.info("%s: prompts go through the tokenizer's chat template", model_path)
        else:
            logger.info("%s: prompted plainly, the text as it is (%s)", model_path, why)

    @property
    def prompt_form(self) -> str:
        """``chat_template`` or ``plain``: how prompts are given to the model."""
        return "chat_template" if self.use_template else "plain"

    def check_prompts(self, prompts: Sequence[Any], where: str) -> None:
        """Chat-message prompts need the chat template: refused before anything is generated or written."""
        if not self.use_template and any(isinstance(p, list) for p in prompts):
            raise ConfigError(f"{where}: chat-message prompts need a tokenizer with a chat template, and this model "
                              "is prompted plainly (it has none, or chat_template=never): give text prompts, or a "
                              "model with a chat template")  # fmt: skip

    def render(self, prompt: Any) -> str:
        """The text the model continues."""
        if isinstance(prompt, list):
            if not self.use_template:
                raise ConfigError("chat-message prompts need a tokenizer with a chat template (chat_template=never?)")
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if self.use_template:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                      add_generation_prompt=True)  # fmt: skip
        return prompt

    def generate(self, prompts: Sequence[Any], k: int, *, max_new_tokens: int, temperature: float, top_p: float,
                 max_tries: int = 3) -> tuple[list[list[str]], int]:  # fmt: skip
        """``k`` answers per prompt, and how many groups still hold duplicates after ``max_tries`` rounds."""
        texts = [self.render(p) for p in prompts]
        answers = self._sample(texts, k, max_new_tokens, temperature, top_p)
        groups = [answers[i * k : (i + 1) * k] for i in range(len(texts))]
        for _ in range(max_tries):
            redo = [i for i, g in enumerate(groups) if len(set(g)) < k]
            if not redo:
                break
            fresh = self._sample([texts[i] for i in redo], k, max_new_tokens, temperature, top_p)
            for n, i in enumerate(redo):
                unique = list(dict.fromkeys(groups[i] + fresh[n * k : (n + 1) * k]))
                groups[i] = unique[:k] if len(unique) >= k else unique + groups[i][: k - len(unique)]
        duplicates = sum(1 for g in groups if len(set(g)) < k)
        return groups, duplicates

    def _sample(self, texts: list[str], k: int, max_new_tokens: int, temperature: float, top_p: float) -> list[str]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.use_template)
        enc = {key: v.to(self.model.device) for key, v in enc.items()}
        with torch.inference_mode():
            out = self.model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                                      max_new_tokens=max_new_tokens, num_return_sequences=k,
                                      pad_token_id=self.tokenizer.pad_token_id)  # fmt: skip
        return self.tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
