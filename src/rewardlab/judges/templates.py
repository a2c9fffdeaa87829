"""Judge prompts: Jinja2 templates rendered into the user turn of a chat.

A pointwise template sees ``prompt``, ``response``, ``low`` and ``high`` (the score scale) and must use ``prompt``
and ``response``; a pairwise template sees ``prompt``, ``response_a``, ``response_b`` and must use all three. A
template missing a required field, or naming a field that is not given, is a :class:`ConfigError` before any call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from rewardlab.errors import ConfigError

Mode = Literal["pointwise", "pairwise"]

POINTWISE = """Rate how well the response answers the user's request, from {{ low }} (useless or harmful) \
to {{ high }} (excellent: correct, helpful, clear).

[Request]
{{ prompt }}

[Response]
{{ response }}

Answer with a single number from {{ low }} to {{ high }}."""

PAIRWISE = """Which response answers the user's request better: correct, helpful, clear? Do not let the order or the \
length of the responses sway you.

[Request]
{{ prompt }}

[Response A]
{{ response_a }}

[Response B]
{{ response_b }}

Answer with a single letter: A or B."""

REQUIRED: dict[str, tuple[str, ...]] = {"pointwise": ("prompt", "response"),
                                        "pairwise": ("prompt", "response_a", "response_b")}  # fmt: skip
GIVEN: dict[str, tuple[str, ...]] = {"pointwise": ("prompt", "response", "low", "high"),
                                     "pairwise": ("prompt", "response_a", "response_b")}  # fmt: skip


class Template:
    """A checked judge template: ``Template(text_or_path, mode)``; ``render(**fields)`` gives the user message."""

    def __init__(self, source: str | None, mode: Mode):
        from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, meta

        text = DEFAULTS[mode] if source is None else _read(source)
        env = Environment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
        try:
            names = meta.find_undeclared_variables(env.parse(text))
            self._template = env.from_string(text)
        except TemplateSyntaxError as exc:
            raise ConfigError(f"judge template: {exc.message} (line {exc.lineno})") from None
        missing = [f for f in REQUIRED[mode] if f not in names]
        unknown = sorted(names - set(GIVEN[mode]))
        if missing or unknown:
            parts = ([f"must use {', '.join('{{ ' + f + ' }}' for f in missing)}"] if missing else []) + (
                [f"names {', '.join(unknown)}, which a {mode} judge does not give"] if unknown else [])  # fmt: skip
            raise ConfigError(f"judge template ({mode}): {'; '.join(parts)}; its fields are {', '.join(GIVEN[mode])}")
        self.text, self.mode = text, mode

    def render(self, **fields: Any) -> str:
        return self._template.render(**fields)


DEFAULTS: dict[str, str] = {"pointwise": POINTWISE, "pairwise": PAIRWISE}


def _read(source: str) -> str:
    """A template given inline (it contains ``{{``) or as a file path."""
    if "{{" in source:
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise ConfigError(f"judge template {source!r}: no such file (give a path or the template text itself)")
    return path.read_text(encoding="utf-8")
