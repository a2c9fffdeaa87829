"""``rewardlab score``, ``compare`` and ``rank``: the Scorer behind the command line, for text and vision RMs."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource, ScoreConfig
from rewardlab.data.records import Text
from rewardlab.errors import DataError, missing_reason


@dataclass
class ScoringRows:
    """Rows to score: the rows as read, their row numbers, prompts, responses and each row's images (relative
    paths resolved next to the file; empty when the file has no image column)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rownos: list[int] = field(default_factory=list)
    prompts: list[Text] = field(default_factory=list)
    responses: list[Text] = field(default_factory=list)
    images: list[tuple[Any, ...]] = field(default_factory=list)


def read_scoring_rows(path: str, prompt_col: str, response_col: str, image_col: str = "images") -> ScoringRows:
    """Rows with a prompt and a response each, and optionally images; errors name file, row and field."""
    from rewardlab.data.readers import iter_rows

    out = ScoringRows()
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
        out.rows.append(row)
        out.rownos.append(rowno)
        out.prompts.append(row[prompt_col])
        out.responses.append(row[response_col])
        out.images.append(_row_images(row.get(image_col), path, rowno, image_col))
    if not out.rows:
        raise DataError("no rows to score", source=path)
    return out


def _row_images(value: Any, path: str, rowno: int, col: str) -> tuple[Any, ...]:
    from rewardlab.data.prepare import resolve_images

    if value is None or value == "":
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if not isinstance(item, (str, dict)) or item == "":
            raise DataError(f"expected image paths or URLs, got {item!r}", source=path, row=rowno, field=col)
    return resolve_images(tuple(items), path)


def load_scorer(cfg: ScoreConfig) -> Any:
    """The :class:`~rewardlab.models.scorer.Scorer` of ``score``, ``compare`` and ``rank``."""
    from rewardlab.models.scorer import Scorer

    return Scorer.from_pretrained(cfg.model, cfg.scoring())


def run_score(
    cfg: ScoreConfig,
    input_path: str,
    output_path: str | None,
    prompt_col: str,
    response_col: str,
    image_col: str = "images",
):
    """Scores every row; writes JSONL (the input row plus ``score``) atomically. Returns (count, destination).

    A vision-language model scores each row's text against the row's images (``image_col``: a path or URL, or a
    list of them); a text model ignores that column."""
    from rewardlab.data.files import atomic_write_text

    data = read_scoring_rows(input_path, prompt_col, response_col, image_col)
    rows = data.rows
    scorer = load_scorer(cfg)
    images = data.images if scorer.is_vision else None
    if images is not None and not any(images):
        raise DataError(
            f"the model scores texts against images, but no row has a {image_col!r} column; name yours with "
            "--image-column",
            source=input_path,
        )
    try:
        scores, spread = scorer.score_with_uncertainty(data.prompts, data.responses, normalize=cfg.normalize,
                                                       images=images)  # fmt: skip
    except DataError as exc:
        if not hasattr(exc, "index"):
            raise
        message = str(exc).split(": ", 1)[1]
        where = image_col if "image" in message else None
        raise DataError(message, source=input_path, row=data.rownos[exc.index], field=where) from None
    # An ensemble adds each score's uncertainty: the members' standard deviation.
    out = [{**row, "score": s, **({"uncertainty": u} if u is not None else {})}
           for row, s, u in zip(rows, scores, spread)]  # fmt: skip
    lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in out)
    if output_path is None:
        sys.stdout.write(lines)
        return len(rows), "stdout"
    atomic_write_text(output_path, lines)
    return len(rows), str(Path(output_path))


def run_compare(cfg: ScoreConfig, prompt: str, a: str, b: str, image: list[str] | None = None) -> dict[str, Any]:
    """``image``: paths or URLs of the image(s) both answers are about (vision-language models)."""
    scorer = load_scorer(cfg)
    c = scorer.compare(prompt, a, b, images=image_arg(scorer, image))
    out = {"better": c.better, "p_a": round(c.p_a, 6), "score_a": c.score_a, "score_b": c.score_b}
    if c.agreement is not None:
        out |= {"uncertainty_a": c.uncertainty_a, "uncertainty_b": c.uncertainty_b, "agreement": c.agreement}
    return out


def read_responses_file(path: str) -> list[Text]:
    """One response per line; a JSONL file of strings (or of {"response": ...}) is decoded."""
    p = Path(path)
    if not p.is_file():
        raise DataError(missing_reason(p) or "file not found", source=path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start}); save it as UTF-8", source=path) from None
    responses: list[Text] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
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


def image_arg(scorer: Any, image: list[str] | None) -> tuple[str, ...]:
    """The ``--image`` flags of compare/rank as the Scorer's image tuple; needed exactly for vision models."""
    if scorer.is_vision and not image:
        raise DataError("this model scores a text against an image: give it with --image PATH_OR_URL")
    if not scorer.is_vision and image:
        raise DataError("--image was given, but this is a text-only reward model")
    return tuple(image or ())


def run_rank(
    cfg: ScoreConfig, prompt: str, responses: list[Text], responses_file: str | None, image: list[str] | None = None
) -> list[dict[str, Any]]:
    """Best-of-N: the responses sorted by score, best first, each with its input index and score."""
    if responses_file:
        responses = [*responses, *read_responses_file(responses_file)]
    if len(responses) < 2:
        raise DataError("rank needs at least 2 responses (--response ... --response ..., or --responses-file)")
    scorer = load_scorer(cfg)
    ranked = scorer.rank(prompt, responses, images=image_arg(scorer, image))
    normalized = scorer.normalize([r.score for r in ranked]) if cfg.normalize else None
    return [
        {"rank": i + 1, "index": r.index, "score": r.score, "response": r.response,
         **({"normalized_score": normalized[i]} if normalized else {}),
         **({"uncertainty": r.uncertainty} if r.uncertainty is not None else {})}
        for i, r in enumerate(ranked)
    ]  # fmt: skip
