"""``rewardlab eval``: many models × all their checkpoints × eval sets → CSV, JSON, log, plots, a table.

One bad checkpoint (missing or corrupt weights) is reported in its row and skipped; the sweep goes on.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from glob import glob
from pathlib import Path
from typing import Any

from rewardlab.config.schema import EvalConfig, ScoringSettings
from rewardlab.data.records import PreferencePair, RankedGroup, Text, plain_text
from rewardlab.errors import DataError, ModelError, RewardlabError
from rewardlab.models.export_meta import META_NAME
from rewardlab.recipes.run_dir import step_in_name

logger = logging.getLogger(__name__)

CSV_COLUMNS = [
    "model", "checkpoint", "step", "eval_set", "status", "n_pairs", "accuracy", "ties", "margin_mean",
    "margin_std", "ece", "score_mean", "score_std", "score_length_corr", "accuracy_chosen_shorter",
    "n_chosen_shorter", "n_groups", "kendall_tau", "spearman_rho", "top1_accuracy", "selective_accuracy_50",
    "selective_accuracy_80", "uncertainty_auroc", "margin_selective_accuracy_50", "margin_selective_accuracy_80",
    "margin_auroc", "n_rated", "combined_accuracy", "judge_pairs", "order_disagreement", "judge_calls", "seconds",
    "path", "error", "note",
]  # fmt: skip
# Per attribute head, as CSV columns ``<attribute>_<metric>`` after CSV_COLUMNS (see metrics.attribute_metrics).
ATTRIBUTE_COLUMNS = ("n", "pearson", "spearman", "mse", "constant_mse", "length_pearson", "length_spearman",
                     "prediction_length_pearson")  # fmt: skip


@dataclass(frozen=True)
class Candidate:
    """One model directory to evaluate: a run's final export or one of its checkpoints."""

    model: str
    checkpoint: str
    step: int | None
    path: Path
    judge: str | None = None  # ``judge:SPEC``: an LLM judge, not a model directory


@dataclass
class EvalSet:
    """One eval set's records: pairs, ranked groups (K >= 2, maybe rated) and rated responses (groups of one)."""

    name: str
    source: str
    pairs: list[PreferencePair] = field(default_factory=list)
    groups: list[RankedGroup] = field(default_factory=list)
    rated: list[RankedGroup] = field(default_factory=list)

    @property
    def n_rated(self) -> int:
        """Responses with ratings: every response of a rated group, and every rated response."""
        return sum(len(g.responses) for g in self.groups + self.rated if g.ratings is not None)


@dataclass
class EvalResult:
    output_dir: Path
    rows: list[dict[str, Any]]
    best: dict[str, int]


def is_model_dir(path: Path) -> bool:
    """A model directory: a classifier, an adapter, or a rewardlab export of any kind (a LoRA ensemble has
    neither file at its top)."""
    return any((path / name).is_file() for name in ("config.json", "adapter_config.json", META_NAME))


def _final_name(run_dir: Path, checkpoints: list[Path]) -> str:
    """``final``, or ``final (= checkpoint-N)`` when the run ended at the step of one of its checkpoints: the same
    model (merged, if trained with LoRA), so a table does not show two rows that look like two models."""
    try:
        step = json.loads((run_dir / "results.json").read_text(encoding="utf-8")).get("global_step")
    except (OSError, ValueError, AttributeError):
        return "final"
    return (
        f"final (= checkpoint-{step})"
        if step is not None and step in {step_in_name(c) for c in checkpoints}
        else "final"
    )


def find_candidates(cfg: EvalConfig) -> list[Candidate]:
    """Expand ``model_dirs`` globs into final exports and checkpoints, checkpoints in step order."""
    from rewardlab.judges.spec import is_judge
    from rewardlab.recipes.bench import model_names

    found: list[Candidate] = []
    for pattern in cfg.model_dirs:
        if is_judge(pattern):
            found.append(Candidate(model_names([pattern])[0], "judge", None, Path("."), judge=pattern))
            continue
        dirs = [Path(p) for p in sorted(glob(str(Path(pattern).expanduser()))) if Path(p).is_dir()]
        if not dirs:
            raise ModelError(f"model_dirs: no directory matches {pattern!r}")
        for d in dirs:
            checkpoints = sorted(
                (c for c in d.glob(cfg.checkpoint_pattern) if c.is_dir()), key=lambda c: step_in_name(c) or 0
            )
            final = d if is_model_dir(d) else (d / "model" if is_model_dir(d / "model") else None)
            if cfg.include_final and final is not None and final not in checkpoints:
                last_step = max((step_in_name(c) or 0 for c in checkpoints), default=None)
                found.append(Candidate(d.name, _final_name(d, checkpoints), last_step, final))
            found.extend(Candidate(d.name, c.name, step_in_name(c), c) for c in checkpoints)
    if not found:
        raise ModelError(
            f"no model to evaluate: no final export and no checkpoint matching {cfg.checkpoint_pattern!r} "
            f"in {', '.join(cfg.model_dirs)}"
        )
    return found


def load_eval_sets(cfg: EvalConfig) -> list[EvalSet]:
    from rewardlab.data.prepare import read_source

    sets = []
    for source in cfg.eval_sets:
        records, _ = read_source(source)
        es = EvalSet(source.display_name, source.path)
        for rec in records:
            if isinstance(rec, PreferencePair):
                es.pairs.append(rec)
            else:  # a group of one is a rated response: its ratings are evaluated, it gives no pair
                (es.rated if len(rec.responses) == 1 else es.groups).append(rec)
        if not es.pairs and not any(len(set(g.ranks)) > 1 for g in es.groups) and not es.n_rated:
            raise DataError("the eval set has no pair to compare (empty, or only ties) and no ratings",
                            source=source.path)  # fmt: skip
        sets.append(es)
    names = [s.name for s in sets]
    if len(set(names)) != len(names):
        raise DataError(f"two eval sets share a name ({names}); set `label:` on them")
    return sets


def response_length(tokenizer: Any, response: Text) -> int:
    text = response if isinstance(response, str) else " ".join(str(m.get("content", "")) for m in response)
    return len(tokenizer(text, add_special_tokens=False, verbose=False).input_ids)


@dataclass
class SetScores:
    """Scores of one model on one eval set; pairs from groups included (ties give no pair).

    Every response is scored once, in the flat order: the pairs' chosen, the pairs' rejected, each group's responses,
    the rated responses. ``pair_index`` holds each pair's (chosen, rejected) index into that order, and the
    ``response_*`` lists one entry per response in it: ``response_attributes`` the attribute heads' values (empty
    dicts without heads), ``response_ratings`` the human ratings (None where the record has none)."""

    chosen: list[float]
    rejected: list[float]
    chosen_len: list[int]
    rejected_len: list[int]
    subsets: list[str | None]
    group_scores: list[list[float]]
    margin_spread: list[float] | None = None  # an ensemble's members' standard deviation of each pair's margin
    pair_index: list[tuple[int, int]] = field(default_factory=list)
    response_scores: list[float] = field(default_factory=list)
    response_chars: list[int] = field(default_factory=list)
    response_attributes: list[dict[str, float]] = field(default_factory=list)
    response_ratings: list[dict[str, float | None] | None] = field(default_factory=list)


def flat_responses(es: EvalSet) -> tuple[list[Text], list[Text], list[tuple], list[dict | None]]:
    """(prompts, responses, images, ratings) of every response of ``es`` in :class:`SetScores`' flat order."""
    prompts = [p.prompt for p in es.pairs] * 2
    responses = [p.chosen for p in es.pairs] + [p.rejected for p in es.pairs]
    images = [p.images for p in es.pairs] * 2
    ratings: list[dict | None] = [None] * len(responses)
    for g in es.groups + es.rated:
        prompts += [g.prompt] * len(g.responses)
        responses += list(g.responses)
        images += [g.images] * len(g.responses)
        ratings += list(g.ratings) if g.ratings is not None else [None] * len(g.responses)
    return prompts, responses, images, ratings


def score_set(scorer: Any, es: EvalSet, on_batch: Any = None) -> SetScores:
    prompts, responses, images, ratings = flat_responses(es)
    members: list[list[float]] = []
    names = scorer.attribute_names
    if scorer.members > 1 or names:  # an ensemble's members, or the attribute heads after the score
        rows = scorer.score_items(scorer.encode(prompts, responses, images=images), on_batch, members=True)
        scores = [r[0] for r in rows]
        members = [r[1:] for r in rows] if scorer.members > 1 else []
        attributes = [dict(zip(names, r[1:])) for r in rows] if names else [{} for _ in rows]
    else:
        scores = scorer.score(prompts, responses, on_batch=on_batch, images=images)
        attributes = [{} for _ in scores]
    lengths = [response_length(scorer.tokenizer, r) for r in responses]
    out = set_scores(es, scores, lengths, responses, attributes, ratings)
    if members:
        out.margin_spread = [margin_spread(members[i], members[j]) for i, j in out.pair_index]
    return out


def set_scores(es: EvalSet, scores: list[float], lengths: list[int], responses: list[Text],
               attributes: list[dict[str, float]], ratings: list[dict | None]) -> SetScores:  # fmt: skip
    """:class:`SetScores` from one value per response in the flat order (pairs' chosen, pairs' rejected, each
    group's responses, then any rated ones): each group's pairs (ties give none) follow the set's pairs."""
    n = len(es.pairs)
    index = [(i, n + i) for i in range(n)]
    subsets = [p.subset for p in es.pairs]
    offset = 2 * n
    group_scores = []
    for g in es.groups:
        k = len(g.responses)
        group_scores.append(scores[offset : offset + k])
        better = [(offset + i, offset + j) for i in range(k) for j in range(k) if g.ranks[i] < g.ranks[j]]
        index += better
        subsets += [g.subset] * len(better)
        offset += k
    return SetScores(
        [scores[i] for i, _ in index], [scores[j] for _, j in index], [lengths[i] for i, _ in index],
        [lengths[j] for _, j in index], subsets, group_scores, pair_index=index, response_scores=scores,
        response_chars=[len(plain_text(r)) for r in responses], response_attributes=attributes,
        response_ratings=ratings,
    )  # fmt: skip


def margin_spread(chosen: list[float], rejected: list[float]) -> float:
    """The members' (population) standard deviation of a pair's margin ``r⁺ − r⁻``."""
    import statistics

    return statistics.pstdev([c - r for c, r in zip(chosen, rejected)])


def set_metrics(scores: SetScores, es: EvalSet, bins: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(CSV row metrics, JSON detail) for one model on one eval set."""
    from rewardlab.evaluation import metrics as m

    row: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    if scores.chosen:
        acc = m.preference_accuracy(scores.chosen, scores.rejected)
        margins = [c - r for c, r in zip(scores.chosen, scores.rejected)]
        cal = m.calibration(margins, n_bins=bins)
        bias = m.length_bias(scores.chosen, scores.rejected, scores.chosen_len, scores.rejected_len)
        stats = m.score_statistics(scores.chosen + scores.rejected)
        row.update(
            n_pairs=acc["n"], accuracy=acc["accuracy"], ties=acc["ties"], margin_mean=acc["margin_mean"],
            margin_std=acc["margin_std"], ece=cal["ece"], score_mean=stats["mean"], score_std=stats["std"],
            score_length_corr=bias["score_length_corr"], accuracy_chosen_shorter=bias["accuracy_when_chosen_shorter"],
            n_chosen_shorter=bias["n_chosen_shorter"],
        )  # fmt: skip
        if scores.margin_spread is not None:  # an ensemble: does its spread find the misranked pairs?
            row.update(m.uncertainty_metrics(margins, scores.margin_spread))
        detail.update(
            subsets=m.subset_accuracy(scores.chosen, scores.rejected, scores.subsets),
            reliability=cal["reliability"], length_bias=bias,
        )  # fmt: skip
    if es.groups:
        ranking = m.ranking_metrics(scores.group_scores, [list(g.ranks) for g in es.groups])
        row.update(
            n_groups=ranking["n_groups"],
            kendall_tau=ranking["kendall_tau"],
            spearman_rho=ranking["spearman_rho"],
            top1_accuracy=ranking["top1_accuracy"],
        )
        detail["ranking"] = ranking
    return row, detail


def attribute_results(scores: SetScores, ranges: dict[str, list[float]] | None) -> tuple[dict[str, Any], list[str]]:
    """Per attribute head of the model (``ranges``: ``model.attributes``), ``metrics.attribute_metrics`` on the
    responses that have that rating, ratings scaled to 0–1 by the head's range; and notes on what could not be
    evaluated (no heads, an attribute the data does not rate, ratings the model has no head for)."""
    from rewardlab.evaluation.metrics import attribute_metrics
    from rewardlab.recipes.train import scaled_ratings

    rated = [i for i, r in enumerate(scores.response_ratings) if r is not None]
    given = list(dict.fromkeys(name for i in rated for name in scores.response_ratings[i]))
    if not rated:
        return {}, []
    if not ranges:
        return {}, [f"attributes skipped: the model has no attribute heads ({len(rated)} rated responses)"]
    notes = []
    missing = [name for name in ranges if name not in given]
    if missing:
        notes.append(f"not in the eval data's ratings: {', '.join(missing)} (the model's heads: {', '.join(ranges)})")
    unused = [name for name in given if name not in ranges]
    if unused:
        notes.append(f"ratings without a head in the model, ignored: {', '.join(unused)}")
    targets = {i: scaled_ratings(scores.response_ratings[i], ranges) for i in rated}
    out: dict[str, Any] = {}
    for k, name in enumerate(ranges):
        keep = [i for i in rated if not math.isnan(targets[i][k])]  # an unknown (null) rating is left out
        if name not in missing:
            out[name] = attribute_metrics(
                [scores.response_attributes[i][name] for i in keep],
                [targets[i][k] for i in keep],
                [scores.response_chars[i] for i in keep],
            )
    return out, notes


def combined_accuracy(scores: SetScores, weights: dict[str, float], preference: list[float]) -> float:
    """Pairwise accuracy (ties half) of ``combine_attributes(score, attributes, weights)`` on the set's pairs;
    ``preference``: each response's preference score in the flat order (raw or normalized). ValueError for a
    weight that names neither ``reward`` nor one of the model's attributes."""
    from rewardlab.evaluation.metrics import preference_accuracy
    from rewardlab.models.scorer import combine_attributes

    combined = [combine_attributes(s, a, weights) for s, a in zip(preference, scores.response_attributes)]
    pairs = scores.pair_index
    return preference_accuracy([combined[i] for i, _ in pairs], [combined[j] for _, j in pairs])["accuracy"]


def samples(scores: SetScores, es: EvalSet) -> dict[str, Any]:
    """Per-sample scores (JSON, and the plots of the best model)."""
    groups = [
        {"prompt": g.prompt, "responses": list(g.responses), "ranks": list(g.ranks), "scores": s}
        for g, s in zip(es.groups, scores.group_scores)
    ]
    rated = [
        {"ratings": rating, "attributes": attributes, "score": score, "characters": chars}
        for rating, attributes, score, chars in zip(scores.response_ratings, scores.response_attributes,
                                                    scores.response_scores, scores.response_chars)
        if rating is not None
    ]  # fmt: skip
    return {
        "chosen": scores.chosen,
        "rejected": scores.rejected,
        "chosen_length": scores.chosen_len,
        "rejected_length": scores.rejected_len,
        "groups": groups,
        **({"rated": rated} if rated else {}),
    }


WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")
# What else decides a model's scores: the tokenizer, and config.json and rewardlab.json minus what an export adds
# about itself (score statistics, metrics, its id, the run config).
SCORING_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
NOT_SCORING = {"config.json": ("mean", "std"), "rewardlab.json": ("normalization", "metrics", "export_id", "config")}


class SameModels:
    """Which model directory already scored holds the very same model: byte-identical weights, tokenizer and input
    format (a run's final export and its last checkpoint, unless LoRA was merged). Only directories whose weight
    files have the same names and sizes are hashed."""

    def __init__(self) -> None:
        self._by_size: dict[tuple[tuple[str, int], ...], list[Path]] = {}
        self._digests: dict[Path, str] = {}

    def match(self, path: Path) -> Path | None:
        """A directory seen before with the same model as ``path``, else None (and ``path`` is remembered)."""
        weights = sorted(p for pattern in WEIGHT_FILES for p in path.glob(pattern) if p.name != "training_args.bin")
        if not weights:
            return None
        size = tuple((p.name, p.stat().st_size) for p in weights)
        for other in self._by_size.get(size, []):
            if self._digest(other, weights) == self._digest(path, weights):
                return other
        self._by_size.setdefault(size, []).append(path)
        return None

    def _digest(self, path: Path, weights: list[Path]) -> str:
        if path not in self._digests:
            h = hashlib.sha256()
            for name in [p.name for p in weights] + list(SCORING_FILES):
                file = path / name
                h.update(name.encode() + (b"\0" if file.is_file() else b"\1"))
                if file.is_file():
                    with file.open("rb") as f:
                        while chunk := f.read(1 << 22):
                            h.update(chunk)
            for name, dropped in NOT_SCORING.items():
                try:
                    data = json.loads((path / name).read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = None
                kept = {k: v for k, v in data.items() if k not in dropped} if isinstance(data, dict) else data
                h.update(json.dumps(kept, sort_keys=True, default=str).encode())
            self._digests[path] = h.hexdigest()
        return self._digests[path]


def evaluate_candidate(cand: Candidate, sets: list[EvalSet], cfg: EvalConfig, progress: Any) -> list[tuple]:
    """[(row, detail, samples)] per eval set; a load or scoring failure becomes an error row per set."""
    from rewardlab.models.scorer import Scorer

    base = {"model": cand.model, "checkpoint": cand.checkpoint, "step": cand.step,
            "path": cand.judge or str(cand.path)}  # fmt: skip
    if cand.judge is not None:
        return evaluate_judge(cand, sets, cfg, base, progress)
    start = time.perf_counter()
    try:
        scorer = Scorer.from_pretrained(str(cand.path), cfg.scoring())
    except (RewardlabError, OSError, RuntimeError, ValueError, KeyError) as exc:
        logger.warning("%s: cannot be loaded, skipped (%s)", cand.path, exc)
        return [
            ({**base, "eval_set": es.name, "status": "error", "error": str(exc).splitlines()[0]}, {}, None)
            for es in sets
        ]
    results = []
    for es in sets:
        t0 = time.perf_counter()
        try:
            scores = score_set(scorer, es, on_batch=progress)
        except (RuntimeError, ValueError, IndexError) as exc:
            logger.warning("%s on %s: scoring failed, skipped (%s)", cand.path, es.name, exc)
            results.append(({**base, "eval_set": es.name, "status": "error", "error": str(exc)}, {}, None))
            continue
        row, detail = set_metrics(scores, es, cfg.calibration_bins)
        row.update(attribute_row(scorer, scores, cfg, f"{cand.path} on {es.name}"))
        row = {**base, "eval_set": es.name, "status": "ok", **row, "seconds": round(time.perf_counter() - t0, 3)}
        results.append((row, detail, samples(scores, es)))
    logger.info("%s/%s: done in %.1f s", cand.model, cand.checkpoint, time.perf_counter() - start)
    return results


def evaluate_judge(cand: Candidate, sets: list[EvalSet], cfg: EvalConfig, base: dict[str, Any],
                   progress: Any) -> list[tuple]:  # fmt: skip
    """:func:`evaluate_candidate` for an LLM judge: pairs judged in both orders, groups as the judge scores them;
    a judge that cannot be built is a :class:`ConfigError` (it is a setting to fix, not a bad checkpoint)."""
    from rewardlab.judges.scoring import load_judge_scorer

    scorer = load_judge_scorer(str(cand.judge), cfg.scoring())
    results = []
    try:
        for es in sets:
            t0 = time.perf_counter()
            before = scorer.counts()
            scores = judge_set(scorer, es, progress)
            row, detail = set_metrics(scores, es, cfg.calibration_bins)
            used = {k: v - before[k] for k, v in scorer.counts().items()}
            row["judge_calls"] = used["calls"]
            if used["pairs"]:
                row.update(judge_pairs=used["pairs"], order_disagreement=used["orders_disagree"] / used["pairs"])
            notes = [f"{es.n_rated} rated responses skipped: a judge has no attribute heads"] if es.n_rated else []
            if used["unparseable"]:
                notes.append(f"{used['unparseable']} unparseable judge replies (scored as no preference)")
            for note in notes:
                logger.warning("%s on %s: %s", cand.judge, es.name, note)
            row = {**base, "eval_set": es.name, "status": "ok", **row, **({"note": "; ".join(notes)} if notes else {}),
                   "seconds": round(time.perf_counter() - t0, 3)}  # fmt: skip
            results.append((row, detail, samples(scores, es)))
    finally:
        logger.info("%s: judge usage %s", cand.judge, scorer.usage())
        scorer.close()
    return results


def judge_set(scorer: Any, es: EvalSet, progress: Any = None) -> SetScores:
    """A judge's :class:`SetScores`: each pair's verdict P(chosen ≻ rejected) (both orders) as the scores
    ``±logit(P)/2``, so the margin is the verdict's log-odds and σ(margin) = P (the calibration metrics read the
    judge's own probability); each group's scores as the judge gives them (Bradley–Terry strengths or ratings)."""
    from rewardlab.judges.scoring import logit

    verdicts = scorer.prefer_pairs([(p.prompt, p.chosen, p.rejected) for p in es.pairs]) if es.pairs else []
    if progress is not None:
        progress(2 * len(es.pairs))
    half = [logit(v.p_a) / 2 for v in verdicts]
    scores = half + [-h for h in half]
    responses: list[Text] = [p.chosen for p in es.pairs] + [p.rejected for p in es.pairs]
    group_scores = scorer.score_groups([(g.prompt, g.responses) for g in es.groups]) if es.groups else []
    if progress is not None:
        progress(sum(len(g.responses) for g in es.groups + es.rated))
    for g, s in zip(es.groups, group_scores):
        scores += s
        responses += list(g.responses)
    lengths = [judge_length(scorer.tokenizer, r) for r in responses]
    return set_scores(es, scores, lengths, responses, [{} for _ in scores], [None] * len(scores))


def judge_length(tokenizer: Any, response: Text) -> int:
    """A response's length in the judge's tokens, or in characters for a judge without a tokenizer (an endpoint)."""
    return response_length(tokenizer, response) if tokenizer is not None else len(plain_text(response))


def attribute_row(scorer: Any, scores: SetScores, cfg: EvalConfig, where: str) -> dict[str, Any]:
    """The row's attribute part: ``n_rated``, ``attributes`` ({name: metrics}), ``combined_accuracy`` (with
    ``cfg.weights``) and ``note`` (what was skipped, and why; also logged)."""
    attributes, notes = attribute_results(scores, scorer.bundle.meta.attributes)
    row: dict[str, Any] = {}
    if attributes:
        row.update(n_rated=max(m["n"] for m in attributes.values()), attributes=attributes)
    if cfg.weights and scores.pair_index:
        try:
            preference = scorer.normalize(scores.response_scores) if cfg.normalize else scores.response_scores
            row["combined_accuracy"] = combined_accuracy(scores, cfg.weights, preference)
        except (ValueError, ModelError) as exc:
            notes.append(f"weights skipped: {exc}")
    for note in notes:
        logger.warning("%s: %s", where, note)
    return {**row, **({"note": "; ".join(notes)} if notes else {})}


def reused_row(row: dict[str, Any], cand: Candidate) -> dict[str, Any]:
    """``row`` of an identical model, as ``cand``'s (its name, step and path; no time spent)."""
    return {**row, "model": cand.model, "checkpoint": cand.checkpoint, "step": cand.step, "path": str(cand.path),
            "seconds": 0.0}  # fmt: skip


def best_rows(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Index of the best row per eval set: highest accuracy, else (ranked-only sets) highest Kendall τ."""
    best: dict[str, int] = {}
    for i, row in enumerate(rows):
        key = row.get("accuracy", row.get("kendall_tau"))
        if row["status"] != "ok" or key is None or (isinstance(key, float) and math.isnan(key)):
            continue
        cur = best.get(row["eval_set"])
        cur_key = None if cur is None else rows[cur].get("accuracy", rows[cur].get("kendall_tau"))
        if cur is None or key > cur_key:
            best[row["eval_set"]] = i
    return best


def to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV_COLUMNS, then ``<attribute>_<metric>`` for every attribute head met in ``rows`` (in order of meeting)."""
    names = list(dict.fromkeys(name for row in rows for name in row.get("attributes") or {}))
    extra = {f"{name}_{metric}": (name, metric) for name in names for metric in ATTRIBUTE_COLUMNS}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS + list(extra), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        flat = {k: row.get(k) for k in CSV_COLUMNS}
        flat.update(
            {k: (row.get("attributes") or {}).get(name, {}).get(metric) for k, (name, metric) in extra.items()}
        )
        writer.writerow({k: ("" if v is None else v) for k, v in flat.items()})
    return buf.getvalue()


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def add_log_file(out: Path) -> logging.Handler:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    (out / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "logs" / f"eval_{stamp}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    if logging.getLogger().level > logging.INFO or logging.getLogger().level == logging.NOTSET:
        logging.getLogger().setLevel(logging.INFO)
    return handler


def run_bench_section(cfg: EvalConfig, candidates: list[Candidate], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The eval config's ``bench:`` suites on every candidate that evaluated (``OUTPUT_DIR/bench``: bench.json,
    bench.csv, the score cache): ``{"rows": [...], "models": {bench name: {model, checkpoint, step}}}``."""
    from rewardlab.config.schema import BenchConfig
    from rewardlab.recipes.bench import model_names, run_bench

    ok = {(r["model"], r["checkpoint"]) for r in rows if r["status"] == "ok"}
    chosen = [c for c in candidates if (c.model, c.checkpoint) in ok]
    if not chosen:
        return {"rows": [], "models": {}}
    scoring = {k: v for k, v in cfg.model_dump().items() if k in ScoringSettings.model_fields}
    bench_cfg = BenchConfig(model=[c.judge or str(c.path) for c in chosen], out=str(Path(cfg.output_dir) / "bench"),
                            **cfg.bench.model_dump(), **scoring)  # fmt: skip
    result = run_bench(bench_cfg)
    names = model_names(bench_cfg.model)
    models = {n: {"model": c.model, "checkpoint": c.checkpoint, "step": c.step} for n, c in zip(names, chosen)}
    return {"rows": result.rows, "models": models}


def run_eval(cfg: EvalConfig) -> EvalResult:
    """Evaluate every candidate on every eval set; write results, log and plots into ``cfg.output_dir``."""
    from rewardlab.data.files import atomic_write_text
    from rewardlab.recipes.eval_output import make_plots, print_table, progress_bar

    candidates = find_candidates(cfg)
    sets = load_eval_sets(cfg)
    out = Path(cfg.output_dir)
    handler = add_log_file(out)
    try:
        logger.info("evaluating %d model directories on %d eval sets", len(candidates), len(sets))
        rows, details, kept = [], [], {}
        per_candidate = sum(2 * len(s.pairs) + sum(len(g.responses) for g in s.groups + s.rated) for s in sets)
        with progress_bar(len(candidates) * per_candidate) as progress:
            same, scored = SameModels(), {}
            for i, cand in enumerate(candidates, start=1):
                progress.describe(f"[{i}/{len(candidates)}] {cand.model}/{cand.checkpoint}")
                twin = same.match(cand.path) if cand.judge is None else None
                if twin is not None and twin in scored:
                    logger.info("%s: the same model as %s; its scores are reused", cand.path, twin)
                    progress.advance(per_candidate)
                    results = [(reused_row(row, cand), detail, sample) for row, detail, sample in scored[twin]]
                else:
                    results = scored[cand.path] = evaluate_candidate(cand, sets, cfg, progress.advance)
                for row, detail, sample in results:
                    rows.append(row)
                    entry = {k: row[k] for k in ("model", "checkpoint", "step", "eval_set")}
                    if cfg.per_sample_scores and sample is not None:
                        detail = {**detail, "scores": sample}
                    details.append({**entry, **detail})
                    kept[len(rows) - 1] = sample
        best = best_rows(rows)
        bench = run_bench_section(cfg, candidates, rows) if cfg.bench else None
        plots = make_plots(out, rows, best, kept) if cfg.plots else []
        payload = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": cfg.model_dump(mode="json"),
            "rows": rows,
            "details": details,
            "best": best,
            "plots": plots,
            **({"bench": bench} if bench is not None else {}),
        }
        atomic_write_text(out / "evaluation_results.csv", to_csv(rows))
        atomic_write_text(out / "evaluation_results.json", json.dumps(_json_safe(payload), indent=2, default=str))
        print_table(rows, best)
        failed = sum(r["status"] != "ok" for r in rows)
        logger.info("wrote %s (%d rows, %d failed)", out / "evaluation_results.csv", len(rows), failed)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    return EvalResult(out, rows, best)
