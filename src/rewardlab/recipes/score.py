"""``rewardlab score``, ``compare`` and ``rank``: the Scorer behind the command line, for text and vision RMs."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource, ScoreConfig
from rewardlab.data.records import Text, plain_text
from rewardlab.errors import ConfigError, DataError, missing_reason


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


def parse_weights(specs: list[str] | None) -> dict[str, float] | None:
    """``--weights quality=1,verbosity=-0.5`` (the flag may repeat) → ``{"quality": 1.0, "verbosity": -0.5}``;
    ``reward`` names the preference score. None when no flag was given."""
    if not specs:
        return None
    weights: dict[str, float] = {}
    for part in (p.strip() for spec in specs for p in spec.split(",")):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ConfigError(f"--weights: {part!r} is not NAME=WEIGHT (e.g. --weights reward=1,verbosity=-0.5)")
        if name in weights:
            raise ConfigError(f"--weights: {name!r} is given twice")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--weights: {name}={value!r} is not a number") from None
        if not math.isfinite(weights[name]):
            raise ConfigError(f"--weights: {name}={value.strip()} is not a finite number")
    return weights


def check_score_weights(scorer: Any, weights: dict[str, float] | None) -> None:
    """``--weights`` the model can apply (:func:`~rewardlab.models.scorer.check_weights`), checked before scoring."""
    from rewardlab.models.scorer import check_weights

    if weights is None:
        return
    try:
        check_weights(scorer.attribute_names, weights)
    except ValueError as exc:
        raise ConfigError(f"--weights: {exc}") from None


def describe_weights(weights: dict[str, float]) -> str:
    """``{"reward": 1, "words": -0.5}`` → ``1·reward - 0.5·words`` (what the ``combined`` values are)."""
    terms = [f"{'-' if w < 0 else '+'} {abs(w):g}·{name}" for name, w in weights.items()]
    return " ".join(terms).removeprefix("+ ")


def combined_values(scores: list[float], attributes: list[dict[str, float]],
                    weights: dict[str, float] | None) -> list[float] | None:  # fmt: skip
    """Each response's :func:`~rewardlab.models.scorer.combine_attributes` with ``weights``; None without them."""
    from rewardlab.models.scorer import combine_attributes

    if weights is None:
        return None
    return [combine_attributes(s, a, weights) for s, a in zip(scores, attributes)]


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
    weights: dict[str, float] | None = None,
):
    """Scores every row; writes JSONL (the input row plus ``score``) atomically. Returns (count, destination).

    A vision-language model scores each row's text against the row's images (``image_col``: a path or URL, or a
    list of them); a text model ignores that column. A model with attribute heads adds ``attributes`` (each
    attribute on its 0–1 scale), and ``weights`` adds ``combined``: the weighted sum of ``score`` (as written,
    normalized with ``normalize``) and the attributes. ``score`` stays the preference score."""
    data = read_scoring_rows(input_path, prompt_col, response_col, image_col)
    rows = data.rows
    if is_judge(cfg.model):  # a row is rated alone (pointwise): each response's expected rating
        judge = judge_of(cfg, weights).judge
        ratings = judge.score([prompt_text(p) for p in data.prompts], [plain_text(r) for r in data.responses])
        return _write_rows([{**row, "score": s} for row, s in zip(rows, ratings)], output_path)
    scorer = load_scorer(cfg)
    check_score_weights(scorer, weights)
    images = data.images if scorer.is_vision else None
    if images is not None and not any(images):
        raise DataError(
            f"the model scores texts against images, but no row has a {image_col!r} column; name yours with "
            "--image-column",
            source=input_path,
        )
    attributes: list[dict[str, float]] | None = None
    try:
        if scorer.attribute_names:
            scores, attributes = scorer.score_with_attributes(data.prompts, data.responses, normalize=cfg.normalize,
                                                              images=images)  # fmt: skip
            spread: list[float | None] = [None] * len(scores)
        else:
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
    if attributes is not None:
        combined = combined_values(scores, attributes, weights)
        for i, (row, attrs) in enumerate(zip(out, attributes)):
            row["attributes"] = attrs
            if combined is not None:
                row["combined"] = combined[i]
    return _write_rows(out, output_path)


def _write_rows(out: list[dict[str, Any]], output_path: str | None) -> tuple[int, str]:
    from rewardlab.data.files import atomic_write_text

    lines = "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in out)
    if output_path is None:
        sys.stdout.write(lines)
        return len(out), "stdout"
    atomic_write_text(output_path, lines)
    return len(out), str(Path(output_path))


def is_judge(model: str) -> bool:
    from rewardlab.judges.scoring import is_judge as judge_spec

    return judge_spec(model)


def judge_of(cfg: ScoreConfig, weights: dict[str, float] | None) -> Any:
    """The :class:`~rewardlab.judges.scoring.JudgeScorer` of ``--model judge:SPEC`` (a local chat model, an
    endpoint or a judge file)."""
    from rewardlab.judges.scoring import load_judge_scorer

    if weights:
        raise ConfigError("--weights combines a reward model's attribute heads; a judge has none")
    return load_judge_scorer(cfg.model, cfg)


def prompt_text(value: Any) -> str:
    from rewardlab.judges.scoring import prompt_text as as_text

    return as_text(value)


def run_compare(cfg: ScoreConfig, prompt: str, a: str, b: str, image: list[str] | None = None,
                weights: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
    """``image``: paths or URLs of the image(s) both answers are about (vision-language models). The fields are
    /v1/compare's: a model with attribute heads adds ``attributes_a``/``attributes_b``; with ``weights``, ``better``
    and ``p_a`` compare ``combined_a``/``combined_b`` (``score_a``/``score_b`` stay the preference scores)."""
    if is_judge(cfg.model):  # pairwise: both orders, p_a their mean; pointwise: σ of the ratings' difference
        v = judge_of(cfg, weights).prefer_pairs([(prompt, a, b)])[0]
        better = "a" if v.p_a > 0.5 else "b" if v.p_a < 0.5 else "tie"
        return {"better": better, "p_a": round(v.p_a, 6), "p_a_a_first": round(v.first, 6),
                "p_a_b_first": round(v.second, 6), "orders_disagree": v.disagree}  # fmt: skip
    scorer = load_scorer(cfg)
    check_score_weights(scorer, weights)
    c = scorer.compare(prompt, a, b, images=image_arg(scorer, image), weights=weights)
    out = {k: v for k, v in dataclasses.asdict(c).items() if v is not None}  # what /v1/compare answers
    return out | {"p_a": round(c.p_a, 6)}


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
    cfg: ScoreConfig,
    prompt: str,
    responses: list[Text],
    responses_file: str | None,
    image: list[str] | None = None,
    weights: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Best-of-N: the responses sorted by score, best first, each with its input index and score. A model with
    attribute heads adds each response's ``attributes``; with ``weights`` the order is by ``combined`` (the
    weighted sum of the score — normalized with ``normalize`` — and the attributes)."""
    if responses_file:
        responses = [*responses, *read_responses_file(responses_file)]
    if len(responses) < 2:
        raise DataError("rank needs at least 2 responses (--response ... --response ..., or --responses-file)")
    if is_judge(cfg.model):  # pairwise: the schedule's pairs, both orders, fitted into strengths; or ratings
        scores = judge_of(cfg, weights).score_groups([(prompt, responses)])[0]
        order = sorted(range(len(responses)), key=lambda i: -scores[i])
        return [{"rank": k + 1, "index": i, "score": scores[i], "response": responses[i]}
                for k, i in enumerate(order)]  # fmt: skip
    scorer = load_scorer(cfg)
    check_score_weights(scorer, weights)
    if scorer.attribute_names:
        return _rank_attributes(cfg, scorer, prompt, responses, image_arg(scorer, image), weights)
    ranked = scorer.rank(prompt, responses, images=image_arg(scorer, image))
    normalized = scorer.normalize([r.score for r in ranked]) if cfg.normalize else None
    return [
        {"rank": i + 1, "index": r.index, "score": r.score, "response": r.response,
         **({"normalized_score": normalized[i]} if normalized else {}),
         **({"uncertainty": r.uncertainty} if r.uncertainty is not None else {})}
        for i, r in enumerate(ranked)
    ]  # fmt: skip


def _rank_attributes(cfg: ScoreConfig, scorer: Any, prompt: str, responses: list[Text], images: tuple[Any, ...],
                     weights: dict[str, float] | None) -> list[dict[str, Any]]:  # fmt: skip
    """:func:`run_rank` for a model with attribute heads: each response's attributes, and with ``weights`` the
    order of the combined rewards."""
    from rewardlab.models.scorer import best_first

    scores, attributes = scorer.score_with_attributes(prompt, responses, images=[images] * len(responses))
    normalized = scorer.normalize(scores) if cfg.normalize else None
    combined = combined_values(normalized or scores, attributes, weights)
    return [
        {"rank": rank, "index": i, "score": scores[i], "response": responses[i],
         **({"normalized_score": normalized[i]} if normalized else {}), "attributes": attributes[i],
         **({"combined": combined[i]} if combined else {})}
        for rank, i in enumerate(best_first(combined or scores), start=1)
    ]  # fmt: skip
