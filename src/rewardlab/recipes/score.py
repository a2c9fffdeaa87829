"""``rewardlab score`` and ``rewardlab compare``: the Scorer behind the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource, ScoreConfig
from rewardlab.data.records import Text
from rewardlab.errors import DataError


def read_scoring_rows(
    path: str, prompt_col: str, response_col: str
) -> tuple[list[dict[str, Any]], list[Text], list[Text]]:
    """Rows with a prompt and a response each; errors name file, row and field."""
    from rewardlab.data.readers import iter_rows

    rows, prompts, responses = [], [], []
    for rowno, row in iter_rows(DataSource(path=path)):
        for col in (prompt_col, response_col):
            value = row.get(col)
            if col not in row:
                raise DataError(
                    f"missing column {col!r} (found: {', '.join(row) or 'none'}); name yours with "
                    f"--prompt-column/--response-column",
                    source=path,
                    row=rowno,
                    field=col,
                )
            if not isinstance(value, (str, list)) or (col == response_col and not value):
                raise DataError(
                    f"expected a non-empty string or message list, got {value!r}", source=path, row=rowno, field=col
                )
        rows.append(row)
        prompts.append(row[prompt_col])
        responses.append(row[response_col])
    if not rows:
        raise DataError("no rows to score", source=path)
    return rows, prompts, responses


def run_score(cfg: ScoreConfig, input_path: str, output_path: str | None, prompt_col: str, response_col: str):
    """Scores every row; writes JSONL (the input row plus ``score``) atomically. Returns (count, destination)."""
    from rewardlab.models.checkpoint import atomic_write_text
    from rewardlab.models.scorer import Scorer

    rows, prompts, responses = read_scoring_rows(input_path, prompt_col, response_col)
    scorer = Scorer.from_pretrained(cfg.model, batch_size=cfg.batch_size, device=cfg.device, max_length=cfg.max_length)
    scores = scorer.score(prompts, responses, normalize=cfg.normalize)
    lines = "".join(
        json.dumps({**row, "score": s}, ensure_ascii=False, default=str) + "\n" for row, s in zip(rows, scores)
    )
    if output_path is None:
        sys.stdout.write(lines)
        return len(rows), "stdout"
    atomic_write_text(output_path, lines)
    return len(rows), str(Path(output_path))


def run_compare(cfg: ScoreConfig, prompt: str, a: str, b: str) -> dict[str, Any]:
    from rewardlab.models.scorer import Scorer

    scorer = Scorer.from_pretrained(cfg.model, device=cfg.device, max_length=cfg.max_length)
    c = scorer.compare(prompt, a, b)
    return {"better": c.better, "p_a_better": round(c.p_a, 6), "score_a": c.score_a, "score_b": c.score_b}


def read_responses_file(path: str) -> list[Text]:
    """One response per line; a JSONL file of strings (or of {"response": ...}) is decoded."""
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", source=path)
    responses: list[Text] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if p.suffix == ".jsonl":
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"not valid JSON ({exc.msg})", source=path, row=lineno) from None
            value = value.get("response") if isinstance(value, dict) else value
            if not isinstance(value, (str, list)) or not value:
                raise DataError('expected a non-empty string or {"response": ...}', source=path, row=lineno)
            responses.append(value)
        else:
            responses.append(line)
    return responses


def run_rank(cfg: ScoreConfig, prompt: str, responses: list[Text], responses_file: str | None) -> list[dict[str, Any]]:
    """Best-of-N: the responses sorted by score, best first, each with its input index and score."""
    from rewardlab.models.scorer import Scorer

    if responses_file:
        responses = [*responses, *read_responses_file(responses_file)]
    if len(responses) < 2:
        raise DataError("rank needs at least 2 responses (--response ... --response ..., or --responses-file)")
    scorer = Scorer.from_pretrained(cfg.model, batch_size=cfg.batch_size, device=cfg.device, max_length=cfg.max_length)
    ranked = scorer.rank(prompt, responses)
    normalized = scorer.normalize([r.score for r in ranked]) if cfg.normalize else None
    return [
        {"rank": i + 1, "index": r.index, "score": r.score, "response": r.response,
         **({"normalized_score": normalized[i]} if normalized else {})}
        for i, r in enumerate(ranked)
    ]  # fmt: skip
