"""Records: what every reader produces and every transform consumes.

A prompt or a response is either a plain string or a list of chat messages
(``[{"role": "user", "content": "..."}, ...]``). Images are kept as given (paths, URLs or PIL images);
only the model transform opens them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Union

Message = dict[str, Any]
Text = Union[str, list[Message]]


def lone_surrogate(value: Text) -> str | None:
    """Where ``value`` holds a lone surrogate (U+D800..U+DFFF: half of a UTF-16 pair, not a character; JSON's
    ``"\\ud800"`` decodes to one, and undecodable command-line bytes become one), as ``"U+D800 at character 3"``;
    None for text that is all characters. Tokenizers cannot encode such text."""
    text = plain_text(value, turn_sep="\n", part_sep="\n")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"U+{ord(text[exc.start]):04X} at character {exc.start}"
    return None


def plain_text(
    value: Text,
    *,
    turns: Literal["all", "last", "last_user"] = "all",
    turn_sep: str = "",
    part_sep: str = "",
    roles: bool = False,
) -> str:
    """The plain text of a prompt or response: a string as is; chat messages as the text of ``turns`` (every
    message, the last one, or the last user message) joined by ``turn_sep``, each message's multimodal parts by
    their text parts joined by ``part_sep``; ``roles`` writes ``role: `` before each message."""
    if isinstance(value, str):
        return value
    messages = list(value or [])
    if turns == "last":
        messages = messages[-1:]
    elif turns == "last_user":
        messages = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"][-1:]
    texts = []
    for message in messages:
        if not isinstance(message, dict):
            texts.append(str(message))
            continue
        content = message.get("content")
        if not isinstance(content, str):
            parts = content if isinstance(content, list) else []
            content = part_sep.join(p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str))
        texts.append(f"{message.get('role', '?')}: {content}" if roles else content)
    return turn_sep.join(texts)


@dataclass(frozen=True)
class PreferencePair:
    """One human judgement: ``chosen`` is preferred over ``rejected`` as an answer to ``prompt``.

    ``margin`` is an optional strength of the preference (added inside the Bradley–Terry loss);
    ``subset`` names a slice of an eval set for per-subset metrics.
    """

    prompt: Text
    chosen: Text
    rejected: Text
    images: tuple[Any, ...] = ()
    margin: float | None = None
    id: str | None = None
    subset: str | None = None


@dataclass(frozen=True)
class RankedGroup:
    """K responses to one prompt with their ranks (1 = best). Equal ranks are ties; gaps are allowed.

    ``ratings``: optional ``{attribute: value}`` per response (None where unknown), for attribute heads. A *rated
    response* (a row ``prompt, response, ratings``) is a group of one: it gives no pair, only its ratings."""

    prompt: Text
    responses: tuple[Text, ...]
    ranks: tuple[int, ...]
    images: tuple[Any, ...] = ()
    id: str | None = None
    subset: str | None = None
    ratings: tuple[dict[str, float | None], ...] | None = field(default=None, hash=False)

    @property
    def rated(self) -> bool:
        return self.ratings is not None

    def rated_responses(self) -> list[RankedGroup]:
        """Each rated response alone (a group of one), so its ratings are learned once however many pairs it is in."""
        if self.ratings is None:
            return []
        return [RankedGroup(self.prompt, (response,), (1,), self.images, None if self.id is None else
                            f"{self.id}:{i}", self.subset, (rating,))
                for i, (response, rating) in enumerate(zip(self.responses, self.ratings))]  # fmt: skip

    def to_pairs(self) -> list[PreferencePair]:
        """All K·(K−1)/2 ordered pairs (better, worse); tied responses give no pair."""
        pairs = []
        k = len(self.responses)
        for i in range(k):
            for j in range(k):
                if self.ranks[i] < self.ranks[j]:
                    pair_id = None if self.id is None else f"{self.id}:{i}>{j}"
                    pairs.append(
                        PreferencePair(
                            prompt=self.prompt,
                            chosen=self.responses[i],
                            rejected=self.responses[j],
                            images=self.images,
                            id=pair_id,
                            subset=self.subset,
                        )
                    )
        return pairs


Record = Union[PreferencePair, RankedGroup]


@dataclass
class ReadReport:
    """What a reader did besides returning records: counts that must never be silent."""

    source: str
    format: str
    rows: int = 0
    records: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n
