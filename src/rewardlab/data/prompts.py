"""Implicit-prompt extraction: split two full answers into a shared prompt and two responses.

TRL's "implicit prompt" preference format stores only ``chosen`` and ``rejected``; the prompt is whatever the
two share at the start. This module finds that split for plain strings, for hh-rlhf style transcripts
(``"\\n\\nHuman: ...\\n\\nAssistant: ..."``) and for chat message lists.

Convention (the same as TRL's ``extract_prompt``): a transcript prompt ends with ``"\\n\\nAssistant:"`` and the
responses keep their leading space (``" Sure, ..."``), so ``prompt + response`` is exactly the original string.
"""

from __future__ import annotations

import os
from typing import Any

ASSISTANT_MARKER = "\n\nAssistant:"


def extract_prompt(chosen: str, rejected: str) -> tuple[str, str, str, bool]:
    """Split ``chosen`` and ``rejected`` into ``(prompt, chosen_response, rejected_response, prefixes_matched)``.

    Always ``prompt + chosen_response == chosen`` and ``prompt + rejected_response == rejected``.

    - Transcripts (either string contains ``"\\n\\nAssistant:"``): the prompt is everything up to and including
      the last marker. If the two strings agree up to their own last marker, ``prefixes_matched`` is True.
      Otherwise (different earlier turns, different numbers of turns) ``prefixes_matched`` is False and the
      split falls back to the longest common prefix cut back to the end of the last marker inside it
      (``""`` if it holds none); the caller decides whether to keep, drop or reject such a pair.
    - Other strings: the character common prefix cut back to its last whitespace, so no word is split; the
      whitespace goes to the responses. With no whitespace in the common prefix the prompt is ``""``.
      ``prefixes_matched`` is True.

    Responses may come back empty or equal (e.g. ``chosen == rejected``); validating them is the caller's job.
    """
    if ASSISTANT_MARKER in chosen or ASSISTANT_MARKER in rejected:
        prompt_c, prompt_r = _up_to_last_marker(chosen), _up_to_last_marker(rejected)
        if prompt_c is not None and prompt_c == prompt_r:
            return prompt_c, chosen[len(prompt_c) :], rejected[len(prompt_c) :], True
        common = os.path.commonprefix([chosen, rejected])
        prompt = _up_to_last_marker(common) or ""
        return prompt, chosen[len(prompt) :], rejected[len(prompt) :], False
    common = os.path.commonprefix([chosen, rejected])
    cut = max((i for i, ch in enumerate(common) if ch.isspace()), default=0)
    return common[:cut], chosen[cut:], rejected[cut:], True


def split_implicit_pair(chosen: Any, rejected: Any) -> tuple[Any, Any, Any, bool]:
    """An implicit-prompt pair (no prompt column) as ``(prompt, chosen_response, rejected_response, matched)``:
    two strings through :func:`extract_prompt`, two message lists through :func:`split_common_messages` (always
    matched). The one split every reader of such pairs uses (training, ``inspect``, ``label``); what to do with an
    unmatched pair and with the responses is the caller's. Raises ``TypeError`` for a string beside a list."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        return extract_prompt(chosen, rejected)
    if isinstance(chosen, list) and isinstance(rejected, list):
        return (*split_common_messages(chosen, rejected), True)
    raise TypeError("chosen and rejected must both be strings or both be lists of chat messages")


def split_common_messages(
    chosen: list[dict[str, Any]], rejected: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Split two conversations into ``(prompt, chosen_rest, rejected_rest)``; the prompt is their common start.

    Messages compare by value (role, content and any other keys). Either rest may be empty when one
    conversation is a prefix of the other; validating that is the caller's job.
    """
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return list(chosen[:n]), list(chosen[n:]), list(rejected[n:])


def _up_to_last_marker(text: str) -> str | None:
    """``text`` up to and including its last ``"\\n\\nAssistant:"``, or None when it has none."""
    at = text.rfind(ASSISTANT_MARKER)
    return None if at < 0 else text[: at + len(ASSISTANT_MARKER)]
