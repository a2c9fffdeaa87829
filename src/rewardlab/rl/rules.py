"""Rule rewards, in TRL's reward-function convention: ``f(prompts, completions, **columns) -> list[float]``.

- ``word_count``: "use exactly N words" — ``exp(0.7 · −|N − words| + ln 2) − 1``: 1 at the exact count, about 0
  one word off, −0.51 two off, → −1 far off. N comes from a column (``target_column``, default ``target_words``)
  or, without one, from the prompt (``target_pattern``, default "exactly N words").
- ``length``: ``1 − |n − target| / target``, clipped to [−1, 1], with n in words or characters.
- ``regex``: 1 when the completion matches ``pattern`` (``search`` or ``fullmatch``), else 0.
- ``module:function``: any function with TRL's signature; ``options`` are passed to it as keyword arguments.

Completions are plain strings or chat messages (the text of the last message is judged).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from rewardlab.errors import ConfigError

# A word: a run of letters or digits; an apostrophe or hyphen inside it (don't, well-known) or a decimal point or
# thousands separator inside a number (3.5, 1,000) keeps it one word. Whitespace and other punctuation separate.
WORD = re.compile(r"\d+(?:[.,]\d+)+|\w+(?:['’\-]\w+)*")
TARGET_PATTERN = r"exactly\s+(\d+)\s+words?"


def count_words(text: str, counter: str = "regex") -> int:
    """Words in ``text`` by the rule above (``counter="regex"``), or spaCy's English tokenizer without punctuation
    and whitespace tokens (``counter="spacy"``, needs ``spacy``)."""
    if counter == "spacy":
        return sum(1 for t in _spacy()(text) if not (t.is_punct or t.is_space))
    return len(WORD.findall(text))


def word_count_reward(target: int, words: int) -> float:
    """``exp(0.7 · −|target − words| + ln 2) − 1``."""
    return math.exp(0.7 * -abs(target - words) + math.log(2)) - 1


def completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    content = completion[-1].get("content", "") if completion else ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(completion_text([m]) for m in prompt)


class WordCountReward:
    """The "exactly N words" reward (see the module docstring)."""

    def __init__(self, target_column: str = "target_words", target_pattern: str = TARGET_PATTERN,
                 counter: str = "regex", name: str = "word_count"):  # fmt: skip
        if counter not in ("regex", "spacy"):
            raise ConfigError(f"word_count: counter must be regex or spacy, got {counter!r}")
        if counter == "spacy":
            _spacy()
        self.target_column, self.counter = target_column, counter
        self.pattern = re.compile(target_pattern, re.IGNORECASE)
        self.__name__ = name

    def targets(self, prompts: Sequence[Any], columns: dict[str, Any]) -> list[int]:
        given = columns.get(self.target_column)
        if given is not None:
            return [int(t) for t in given]
        out = []
        for p in prompts:
            found = self.pattern.search(prompt_text(p))
            if found is None:
                raise ValueError(
                    f"word_count: no {self.target_column!r} column and the prompt does not say how many words "
                    f"(pattern {self.pattern.pattern!r}): {prompt_text(p)[:80]!r}"
                )
            out.append(int(found[1]))
        return out

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        targets = self.targets(prompts, columns)
        return [word_count_reward(t, count_words(completion_text(c), self.counter))
                for t, c in zip(targets, completions)]  # fmt: skip


class LengthReward:
    def __init__(self, target: int, unit: str = "words", name: str = "length"):
        if unit not in ("words", "chars") or target <= 0:
            raise ConfigError(f"length: needs target > 0 and unit words or chars, got {target!r}, {unit!r}")
        self.target, self.unit, self.__name__ = target, unit, name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        out = []
        for c in completions:
            text = completion_text(c)
            n = count_words(text) if self.unit == "words" else len(text)
            out.append(max(-1.0, 1.0 - abs(n - self.target) / self.target))
        return out


class RegexReward:
    def __init__(self, pattern: str, mode: str = "search", name: str = "regex"):
        try:
            self.pattern = re.compile(pattern, re.DOTALL)
        except re.error as exc:
            raise ConfigError(f"regex: {pattern!r} is not a regular expression ({exc})") from None
        if mode not in ("search", "fullmatch"):
            raise ConfigError(f"regex: mode must be search or fullmatch, got {mode!r}")
        self.mode, self.__name__ = mode, name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **_: Any) -> list[float]:
        match = self.pattern.search if self.mode == "search" else self.pattern.fullmatch
        return [1.0 if match(completion_text(c)) else 0.0 for c in completions]


BUILT_IN: dict[str, Callable[..., Any]] = {"word_count": WordCountReward, "length": LengthReward,
                                            "regex": RegexReward}  # fmt: skip


def make_rule(rule: str, options: dict[str, Any], name: str | None) -> Callable[..., list[float]]:
    """A built-in rule by name, or ``module:function``; ``options`` are its settings."""
    if rule in BUILT_IN:
        try:
            return BUILT_IN[rule](**options, name=name or rule)
        except TypeError as exc:
            raise ConfigError(f"rule {rule}: bad options {sorted(options)} ({exc})") from None
    if ":" not in rule:
        raise ConfigError(f"unknown rule {rule!r}: use one of {', '.join(BUILT_IN)} or module:function")
    module_name, _, attr = rule.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"rule {rule}: cannot import it ({exc}); is the module on PYTHONPATH?") from None
    if not callable(func):
        raise ConfigError(f"rule {rule}: not a function")
    wrapped = partial(func, **options) if options else func
    reward = _Named(wrapped, name or attr)
    return reward


class _Named:
    """A callable with the ``__name__`` TRL logs it under."""

    def __init__(self, func: Callable[..., Any], name: str):
        self.func, self.__name__ = func, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


def _spacy() -> Any:
    try:
        import spacy
    except ImportError:
        raise ConfigError("word_count: counter=spacy needs spaCy (pip install spacy)") from None
    global _NLP
    if _NLP is None:
        _NLP = spacy.blank("en")
    return _NLP


_NLP: Any = None
