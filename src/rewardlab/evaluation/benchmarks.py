"""The standard reward-model benchmarks: each suite's reader (its own published row schema → :class:`BenchItem`) and
its official metric, as pure functions of per-item scores. No model code: ``rewardlab.recipes.bench`` scores the
items with the ``Scorer`` and hands the scores here.

Suites (:data:`SUITES`; each metric learned from the benchmark's own scoring code, written here):

- ``rewardbench`` (RewardBench v1, ``allenai/reward-bench``): rows ``prompt, chosen, rejected, subset``. Accuracy
  per subset (a pair is right when chosen scores strictly higher); the sections Chat / Chat Hard / Safety / Reasoning
  are the subsets' accuracies weighted by the benchmark's own per-subset example counts (:data:`RB1_EXAMPLE_COUNTS`,
  where math-prm counts 984, as many as the code subsets together, though it has 447 items); ``score`` is the mean
  of the sections. Rows of the prior sets (``allenai/pref-test-sets`` subsets) add ``Prior Sets`` (the unweighted
  mean of anthropic_helpful, anthropic_hhh, shp, summarize) and ``score_with_prior_sets`` (sections weight 2, prior
  sets 1), the original leaderboard's average.
- ``rewardbench2`` (``allenai/reward-bench-2``): rows ``prompt, chosen[], rejected[], subset, id``. Best-of-N per
  subset: an item with one chosen is right when it has the top score, ``1/k`` when it shares the top with ``k - 1``
  others (several chosen: each must beat every rejected). The ``Ties`` subset has its own score
  (:func:`ties_score`); ``score`` is the mean over subsets.
- ``rm-bench`` (``THU-KEG/RM-Bench``): rows ``prompt, chosen[3], rejected[3], domain`` with the three responses in
  the styles concise, detailed, detailed with markdown. Per domain (chat, math, code, safety; safety pools
  safety-refuse and safety-response) the 3×3 matrix ``M[i][j]`` = share of items where chosen style ``i`` beats
  rejected style ``j``: ``hard`` = mean of the upper triangle (a plainer chosen against a fancier rejected),
  ``normal`` = the diagonal, ``easy`` = the lower triangle, ``average`` = their mean. Overall: each of them
  averaged over domains.
- ``judgebench`` (``ScalerLab/JudgeBench``): rows ``question, response_A, response_B, label ("A>B" | "B>A"),
  source``. Accuracy per source category (mmlu-pro, livebench-reasoning, livebench-math, livecodebench) and overall.
  JudgeBench plays each pair in both orders and counts a pair right when the two verdicts agree with the label on
  balance; for a scalar reward model both orders give the same verdict, except on an exact tie, which gives one
  right and one wrong verdict: not right. So: right when the labelled-better response scores strictly higher.

- ``ppe`` (Preference Proxy Evaluations, ``lmarena-ai/PPE-Human-Preference-V1``: its pairwise, human-preference
  part): rows ``question_id, prompt, response_1, response_2, winner ("model_a" | "model_b" | "tie" | "tie
  (bothbad)"), language``. Accuracy on the decided pairs (ties are left out, as the benchmark's pairwise accuracy
  does; the reader counts them) per language and overall. PPE's best-of-K correctness sets are not pairwise and are
  not read here.
- ``vl-rewardbench`` (``MMInstruction/VL-RewardBench``, vision): rows ``id, query, response[2], human_ranking``
  (the better response has rank 0) with an image (``image``, or ``image_path`` relative to the data file, as the
  benchmark's repository ships it). The category is the source dataset's group, as the benchmark's own ``cal.py``
  maps it: vlfeedback and wildvision-battle → general, povid, rlhf-v and rlaif-v → hallucination, reasoning_tasks
  (mathverse, mmmu-pro) → reasoning; the source is the folder of ``image_path`` or, for the hub rows, the id's prefix.
  Accuracy per category, ``overall`` pooled over items and ``macro`` the mean of the three categories.
- ``mm-rewardbench`` (Multimodal RewardBench, ``facebookresearch/multimodal_rewardbench``, vision): rows ``ID, Text,
  Image, Output1, Output2, Better ("Output1" | "Output2"), Category``. Accuracy per category, where, as the
  benchmark's ``get_accuracy`` does, safety splits into safety/bias (ids starting ``pairs``) and safety/toxicity,
  and reasoning into reasoning/math (ids starting ``math``) and reasoning/coding; and overall. Not on the hub: the
  benchmark's download script builds ``data/all_data.json``, its ``Image`` paths relative to that folder.

Vision suites carry each item's images; ``rewardlab bench`` adds the *text-only* baseline: the same RM scoring the
same items with each image replaced by one blank (mid-grey) image, so the input keeps its format (a vision-language RM
expects an image) and nothing in it can be seen.

Confound baselines (:func:`confound_baselines`): each suite's metric computed on the same items with the response
length as the score ("longer wins") or its negative ("shorter wins"), in characters and in tokens. A tie there is a
coin toss: half a win between two responses, ``1/k`` when ``k`` share the top of a best-of-N item.

Checked against the benchmarks' own scoring functions (reward-bench's section weighting with its current counts and
its Ties scorer, RM-Bench's ``compute_accuracy``, JudgeBench's both-orders ``compute_final_metrics``) on random
per-item scores with many exact ties: the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rewardlab.config.schema import DataSource
from rewardlab.data.records import Text, plain_text
from rewardlab.errors import DataError

# ---------------------------------------------------------------------------------------------------------------------
# Items, scores, metric rows
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchItem:
    """One benchmark item in the common form: a prompt, the responses that should win (``chosen``) and those that
    should lose (``rejected``), its ``subset`` (RewardBench subset, RM-Bench domain, JudgeBench source category)."""

    id: str
    subset: str
    prompt: Text
    chosen: tuple[Text, ...]
    rejected: tuple[Text, ...]
    images: tuple[Any, ...] = ()  # vision suites: paths (or decoded images) every response is scored with

    @property
    def responses(self) -> tuple[Text, ...]:
        """Chosen first, then rejected: the order scores come in."""
        return self.chosen + self.rejected

    @property
    def key(self) -> str:
        """Identifies the item by its content (a cache of scores stays right when a data file changes)."""
        images = [image_fingerprint(im) for im in self.images]
        blob = json.dumps([self.id, self.subset, self.prompt, self.chosen, self.rejected, *images], sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]


def image_fingerprint(image: Any) -> str:
    """A path as itself; a decoded image by a hash of its pixels (a hub dataset's rows hold PIL images)."""
    if isinstance(image, str):
        return image
    if getattr(image, "info", {}).get("rewardlab") == "blank":  # the text-only baseline's stand-in
        return "blank"
    tobytes = getattr(image, "tobytes", None)
    if callable(tobytes):
        return f"{getattr(image, 'size', '')}:{hashlib.sha256(tobytes()).hexdigest()[:16]}"
    return repr(image)


@dataclass(frozen=True)
class ItemScores:
    """Scores of one item's responses, in the order of ``BenchItem.chosen`` and ``BenchItem.rejected``."""

    chosen: tuple[float, ...]
    rejected: tuple[float, ...]


@dataclass(frozen=True)
class MetricRow:
    """One number of a suite: ``level`` is subset, section, domain or overall; ``name`` the subset/section/domain
    (``all`` for overall); ``metric`` what is measured; ``n`` the items behind it."""

    level: str
    name: str
    metric: str
    value: float
    n: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.level, self.name, self.metric)


def win(a: float, b: float, tie: float) -> float:
    """1 when ``a > b``, ``tie`` when equal, else 0."""
    return 1.0 if a > b else tie if a == b else 0.0


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def _by_subset(items: Sequence[BenchItem], values: Sequence[float]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for item, v in zip(items, values):
        out.setdefault(item.subset, []).append(v)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# RewardBench v1
# ---------------------------------------------------------------------------------------------------------------------

# The benchmark's own subset sizes, used as weights inside a section (math-prm: 447 items, weighted as 984 so that
# math counts as much as the six code subsets together).
RB1_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28, "mt-bench-med": 40,
    "mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134, "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46, "refusals-dangerous": 100, "refusals-offensive": 100,
    "xstest-should-refuse": 154, "xstest-should-respond": 250, "donotanswer": 136, "math-prm": 984, "hep-cpp": 164,
    "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164, "hep-rust": 164,
}  # fmt: skip
RB1_SECTIONS = {
    "Chat": ["alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"],
    "Chat Hard": ["mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"],
    "Safety": ["refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"],
    "Reasoning": ["math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"],
}  # fmt: skip
# The prior sets the leaderboard averaged (of allenai/pref-test-sets), at half a section's weight.
RB1_PRIOR_SETS = ("anthropic_helpful", "anthropic_hhh", "shp", "summarize")


def rewardbench_metrics(items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0) -> list[MetricRow]:
    """Per-subset accuracy, the four sections (example-count weighted), ``score`` (mean of the present sections) and,
    with prior-set rows, ``Prior Sets`` and ``score_with_prior_sets`` (module docstring). ``tie``: credit of an exact
    tie (the benchmark's: 0)."""
    subsets = _by_subset(items, [win(s.chosen[0], s.rejected[0], tie) for s in scores])
    acc = {name: _mean(v) for name, v in subsets.items()}
    rows = [MetricRow("subset", name, "accuracy", acc[name], len(subsets[name])) for name in subsets]
    sections: dict[str, float] = {}
    for section, members in RB1_SECTIONS.items():
        present = [s for s in members if s in acc]
        if present:
            weight = sum(RB1_EXAMPLE_COUNTS[s] for s in present)
            sections[section] = sum(acc[s] * RB1_EXAMPLE_COUNTS[s] for s in present) / weight
            rows.append(MetricRow("section", section, "accuracy", sections[section],
                                  sum(len(subsets[s]) for s in present)))  # fmt: skip
    section_items = sum(r.n for r in rows if r.level == "section")
    if sections:
        rows.append(MetricRow("overall", "all", "score", _mean(sections.values()), section_items))
    prior = [s for s in RB1_PRIOR_SETS if s in acc]
    if prior:
        prior_value = _mean(acc[s] for s in prior)
        prior_n = sum(len(subsets[s]) for s in prior)
        rows.append(MetricRow("section", "Prior Sets", "accuracy", prior_value, prior_n))
        weighted = (2 * sum(sections.values()) + prior_value) / (2 * len(sections) + 1)
        rows.append(MetricRow("overall", "all", "score_with_prior_sets", weighted, section_items + prior_n))
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# RewardBench 2
# ---------------------------------------------------------------------------------------------------------------------


def best_of_n_credit(score: ItemScores, tie: float = 0.0) -> float:
    """One chosen: 1 when it has the top score alone, ``1/k`` when ``k`` responses share the top (RewardBench 2's
    tie rule), else 0. Several chosen: 1 when the worst chosen beats the best rejected, ``tie`` when equal."""
    if len(score.chosen) == 1:
        top = max(score.chosen + score.rejected)
        if score.chosen[0] != top:
            return 0.0
        return 1.0 / sum(s == top for s in score.chosen + score.rejected)
    return win(min(score.chosen), max(score.rejected), tie)


def ties_score(items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0) -> dict[str, float]:
    """RewardBench 2's Ties score. Items come in pairs by prompt: ``ref:N`` (one correct answer) and ``tied:N``
    (several equally correct answers). Per item: ``accurate`` (worst correct beats best incorrect), the spread of the
    correct scores (``tied`` only) and the gap worst-correct − best-incorrect. Then
    ``0.30·tied_accuracy + 0.30·ref_accuracy + 0.20·preferred + 0.20·preferred_hard + 0.01·margin``, where, over
    prompts that have both items, ``preferred`` is the share whose tied gap beats the tied spread, ``preferred_hard``
    the same with the smaller of the two gaps, and ``margin`` the mean of ``tanh(smaller gap / spread − 1)``."""
    ref: dict[str, tuple[float, float, float]] = {}
    tied: dict[str, tuple[float, float, float]] = {}
    for item, s in zip(items, scores):
        kind, prompt_id = item.id.split(":", 1)
        gap = min(s.chosen) - max(s.rejected)
        stats = (win(min(s.chosen), max(s.rejected), tie), max(s.chosen) - min(s.chosen), gap)
        (ref if kind == "ref" else tied)[prompt_id] = stats
    both = [p for p in tied if p in ref]
    spread = [tied[p][1] for p in both]
    gap_tied = [tied[p][2] for p in both]
    gap_hard = [min(ref[p][2], tied[p][2]) for p in both]
    parts = {
        "ref_accuracy": _mean(v[0] for v in ref.values()) if ref else 0.0,
        "tied_accuracy": _mean(v[0] for v in tied.values()) if tied else 0.0,
        "correctness_preferred": _mean(win(g, d, tie) for g, d in zip(gap_tied, spread)),
        "correctness_preferred_hard": _mean(win(g, d, tie) for g, d in zip(gap_hard, spread)),
        "correctness_margin": _mean(_tanh_ratio(g, d) for g, d in zip(gap_hard, spread)),
    }
    parts["ties_score"] = (
        0.30 * parts["tied_accuracy"] + 0.30 * parts["ref_accuracy"] + 0.20 * parts["correctness_preferred"]
        + 0.20 * parts["correctness_preferred_hard"] + 0.01 * parts["correctness_margin"]
    )  # fmt: skip
    return parts


def _tanh_ratio(gap: float, spread: float) -> float:
    """``tanh(gap / spread − 1)`` with floating-point division's limits: ±1 for a zero spread, 0 for 0/0."""
    if spread == 0:
        return 0.0 if gap == 0 else math.copysign(1.0, gap)
    return math.tanh(gap / spread - 1)


def is_ties_subset(name: str) -> bool:
    return name.lower() == "ties"


def rewardbench2_metrics(
    items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0
) -> list[MetricRow]:
    """Best-of-N accuracy per subset, the Ties score for ``Ties``, and ``score`` = the mean over subsets."""
    rows, primary = [], []
    for name in dict.fromkeys(item.subset for item in items):
        idx = [i for i, item in enumerate(items) if item.subset == name]
        if is_ties_subset(name):
            parts = ties_score([items[i] for i in idx], [scores[i] for i in idx], tie)
            main = MetricRow("subset", name, "ties_score", parts.pop("ties_score"), len(idx))
            rows += [main, *(MetricRow("ties_part", name, k, v, len(idx)) for k, v in parts.items())]
        else:
            main = MetricRow(
                "subset", name, "accuracy", _mean(best_of_n_credit(scores[i], tie) for i in idx), len(idx)
            )
            rows.append(main)
        primary.append(main)
    rows.append(MetricRow("overall", "all", "score", _mean(r.value for r in primary), len(items)))
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# RM-Bench
# ---------------------------------------------------------------------------------------------------------------------

RMB_DOMAINS = ("chat", "math", "code", "safety")
RMB_STYLES = ("concise", "detailed", "markdown")


def style_matrix(scores: Sequence[ItemScores], tie: float = 0.0) -> list[list[float]]:
    """``M[i][j]``: share of items whose chosen response of style ``i`` beats the rejected one of style ``j``."""
    k = len(RMB_STYLES)
    return [[_mean(win(s.chosen[i], s.rejected[j], tie) for s in scores) for j in range(k)] for i in range(k)]


def rmbench_metrics(items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0) -> list[MetricRow]:
    """Per domain easy (lower triangle), normal (diagonal), hard (upper triangle) and their average; the same
    four averaged over the domains present."""
    rows: list[MetricRow] = []
    per_domain: dict[str, dict[str, float]] = {}
    for domain in RMB_DOMAINS:
        mine = [s for item, s in zip(items, scores) if item.subset == domain]
        if not mine:
            continue
        m = style_matrix(mine, tie)
        k = len(m)
        values = {
            "easy": _mean(m[i][j] for i in range(k) for j in range(k) if i > j),
            "normal": _mean(m[i][i] for i in range(k)),
            "hard": _mean(m[i][j] for i in range(k) for j in range(k) if i < j),
        }
        values["average"] = _mean(values.values())
        per_domain[domain] = values
        rows += [MetricRow("domain", domain, metric, v, len(mine)) for metric, v in values.items()]
    for metric in ("easy", "normal", "hard", "average"):
        rows.append(MetricRow("overall", "all", metric, _mean(v[metric] for v in per_domain.values()), len(items)))
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# JudgeBench
# ---------------------------------------------------------------------------------------------------------------------

JUDGEBENCH_CATEGORIES = ("mmlu-pro", "livebench-reasoning", "livebench-math", "livecodebench")


def judgebench_metrics(items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0) -> list[MetricRow]:
    """Accuracy per source category and overall (right: the labelled-better response scores strictly higher)."""
    right = [win(s.chosen[0], s.rejected[0], tie) for s in scores]
    groups = _by_subset(items, right)
    rows = [MetricRow("subset", name, "accuracy", _mean(v), len(v)) for name, v in groups.items()]
    rows.append(MetricRow("overall", "all", "accuracy", _mean(right), len(right)))
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# VL-RewardBench and Multimodal RewardBench (vision)
# ---------------------------------------------------------------------------------------------------------------------

# The benchmark's cal.py: source dataset (the folder under images/) → category.
VLRB_GROUPS = {"vlfeedback": "general", "wildvision-battle": "general", "povid": "hallucination",
               "rlhf-v": "hallucination", "rlaif-v": "hallucination", "reasoning_tasks": "reasoning"}  # fmt: skip
VLRB_CATEGORIES = ("general", "hallucination", "reasoning")


def vlrewardbench_metrics(
    items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0
) -> list[MetricRow]:
    """Accuracy per category (general, hallucination, reasoning), overall (pooled) and the macro average."""
    right = [win(s.chosen[0], s.rejected[0], tie) for s in scores]
    groups = _by_subset(items, right)
    rows = [MetricRow("category", name, "accuracy", _mean(groups[name]), len(groups[name]))
            for name in (*VLRB_CATEGORIES, *sorted(set(groups) - set(VLRB_CATEGORIES))) if name in groups]  # fmt: skip
    rows.append(MetricRow("overall", "all", "accuracy", _mean(right), len(right)))
    present = [r.value for r in rows if r.level == "category"]
    rows.append(MetricRow("overall", "macro", "accuracy", _mean(present), len(right)))
    return rows


def mmrewardbench_metrics(
    items: Sequence[BenchItem], scores: Sequence[ItemScores], tie: float = 0.0
) -> list[MetricRow]:
    """Accuracy per category (safety and reasoning split as the benchmark's scorer splits them) and overall."""
    right = [win(s.chosen[0], s.rejected[0], tie) for s in scores]
    groups = _by_subset(items, right)
    rows = [MetricRow("category", name, "accuracy", _mean(v), len(v)) for name, v in sorted(groups.items())]
    rows.append(MetricRow("overall", "all", "accuracy", _mean(right), len(right)))
    return rows


# ---------------------------------------------------------------------------------------------------------------------
# Readers: each suite's published row schema → BenchItem
# ---------------------------------------------------------------------------------------------------------------------


class _Row:
    """Field access on one row, with errors that name the file, the row, the field and the suite's schema."""

    def __init__(self, suite: Suite, row: dict[str, Any], rowno: int, source: str):
        self.suite, self.row, self.rowno, self.source = suite, row, rowno, source

    def error(self, message: str, field: str) -> DataError:
        return DataError(message, source=self.source, row=self.rowno, field=field)

    def get(self, name: str) -> Any:
        if self.row.get(name) is None:
            found = ", ".join(self.row) or "none"
            raise self.error(f"missing field; a {self.suite.name} row has {self.suite.schema} (found: {found})", name)
        return self.row[name]

    def text(self, name: str) -> Text:
        value = self.get(name)
        if isinstance(value, str) and value != "":
            return value
        if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
            return value
        raise self.error(f"expected a non-empty string or chat-message list, got {_short(value)}", name)

    def texts(self, name: str) -> tuple[Text, ...]:
        value = self.get(name)
        if not isinstance(value, (list, tuple)) or not value:
            raise self.error(f"expected a non-empty list of responses, got {_short(value)}", name)
        for i, v in enumerate(value):
            if not isinstance(v, str) or v == "":
                raise self.error(f"response {i + 1} is not a non-empty string: {_short(v)}", name)
        return tuple(value)

    def image(self, *names: str) -> Any:
        """The row's image: a decoded image (a hub dataset's), or a path, resolved next to the data file when
        relative (a URL stays as it is). ``names``: the fields to try, in order."""
        from pathlib import Path

        value = next((self.row[n] for n in names if self.row.get(n) is not None), None)
        if value is None:
            found = ", ".join(self.row) or "none"
            raise self.error(f"missing field; a {self.suite.name} row has {self.suite.schema} (found: {found})",
                             names[-1])  # fmt: skip
        if not isinstance(value, str):
            return value
        if value.startswith(("http://", "https://")) or Path(value).is_absolute():
            return value
        base = Path(self.source).expanduser()
        return str((base.parent if base.is_file() else base) / value)

    def ident(self, name: str = "id") -> str:
        value = self.row.get(name)
        return str(self.rowno) if value is None or value == "" else str(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read_rewardbench(r: _Row) -> BenchItem:
    return BenchItem(r.ident(), str(r.get("subset")), r.text("prompt"), (r.text("chosen"),), (r.text("rejected"),))


def _read_rewardbench2(r: _Row) -> BenchItem:
    subset = str(r.get("subset"))
    item = BenchItem(r.ident(), subset, r.text("prompt"), r.texts("chosen"), r.texts("rejected"))
    if is_ties_subset(subset):
        kind, _, prompt_id = str(r.get("id")).partition(":")
        if kind not in ("ref", "tied") or not prompt_id:
            raise r.error(f"a Ties row's id is `ref:N` or `tied:N`, got {r.row.get('id')!r}", "id")
        if kind == "tied" and len(item.chosen) < 2:
            raise r.error("a `tied:` row of Ties has several correct (chosen) answers, got one", "chosen")
    return item


def _read_rmbench(r: _Row) -> BenchItem:
    chosen, rejected = r.texts("chosen"), r.texts("rejected")
    k = len(RMB_STYLES)
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if len(value) != k:
            raise r.error(
                f"has {len(value)} responses ({'chosen' if name == 'rejected' else 'rejected'}: "
                f"{len(rejected if name == 'chosen' else chosen)}); an RM-Bench row holds {k} chosen and {k} "
                f"rejected, one per style ({', '.join(RMB_STYLES)})",
                name,
            )
    if r.row.get("domain") is None:
        raise r.error(
            "missing field; RM-Bench's per-domain files (data/*_filtered.json) carry no domain: use "
            "data/total_dataset.json or the hub dataset, or add `domain` (chat, math, code, safety-refuse, "
            "safety-response) to each row",
            "domain",
        )
    domain = str(r.row["domain"])
    pooled = next((d for d in RMB_DOMAINS if domain.startswith(d)), None)
    if pooled is None:
        raise r.error(f"unknown domain {domain!r}; RM-Bench domains start with {', '.join(RMB_DOMAINS)}", "domain")
    return BenchItem(r.ident(), pooled, r.text("prompt"), chosen, rejected)


def _vlrb_source(r: _Row) -> str:
    """VL-RewardBench's source dataset: the folder of ``image_path`` (``images/<source>/...``), else the id's
    prefix (``RLAIF-V-14`` → rlaif-v, ``mathverse_...`` / ``mmmu-pro...`` → reasoning_tasks, ...)."""
    path = r.row.get("image_path")
    if isinstance(path, str) and path.count("/") >= 2:
        return path.split("/")[1]
    ident = str(r.get("id")).lower()
    for prefix, source in VLRB_ID_PREFIXES:
        if ident.startswith(prefix):
            return source
    return "vlfeedback"


VLRB_ID_PREFIXES = (("rlaif", "rlaif-v"), ("rlhf", "rlhf-v"), ("povid", "povid"), ("mathverse", "reasoning_tasks"),
                    ("mmmu", "reasoning_tasks"), ("wildvision", "wildvision-battle"))  # fmt: skip


def _read_vlrewardbench(r: _Row) -> BenchItem:
    responses = r.texts("response")
    ranking = r.get("human_ranking")
    if len(responses) != 2 or not isinstance(ranking, list) or sorted(ranking) != [0, 1]:
        raise r.error(f"a VL-RewardBench row has 2 responses and human_ranking [0, 1] or [1, 0] (0: the better); got "
                      f"{len(responses)} responses and {_short(ranking)}", "human_ranking")  # fmt: skip
    source = _vlrb_source(r)
    category = VLRB_GROUPS.get(source)
    if category is None:
        raise r.error(f"unknown source {source!r} (the folder of image_path); VL-RewardBench's are "
                      f"{', '.join(VLRB_GROUPS)}", "image_path")  # fmt: skip
    better = ranking.index(0)
    return BenchItem(r.ident(), category, r.text("query"), (responses[better],), (responses[1 - better],),
                     images=(r.image("image", "image_path"),))  # fmt: skip


def _read_mmrewardbench(r: _Row) -> BenchItem:
    better = r.get("Better")
    if better not in ("Output1", "Output2"):
        raise r.error(f"expected 'Output1' or 'Output2', got {_short(better)}", "Better")
    one, two = r.text("Output1"), r.text("Output2")
    chosen, rejected = (one, two) if better == "Output1" else (two, one)
    ident = r.ident("ID")
    meta = r.row.get("Meta") if isinstance(r.row.get("Meta"), dict) else {}
    category = str(r.row.get("Category") or meta.get("Category") or r.get("Category"))
    if category == "safety":
        category = "safety/bias" if ident.lower().startswith("pairs") else "safety/toxicity"
    elif category == "reasoning":
        category = "reasoning/math" if ident.lower().startswith("math") else "reasoning/coding"
    return BenchItem(ident, category, r.text("Text"), (chosen,), (rejected,), images=(r.image("Image"),))


PPE_TIES = ("tie", "tie (bothbad)")


def _read_ppe(r: _Row) -> BenchItem | None:
    winner = r.get("winner")
    if winner in PPE_TIES:
        return None  # no preference: left out of the pairwise accuracy
    if winner not in ("model_a", "model_b"):
        raise r.error(f"expected 'model_a', 'model_b', 'tie' or 'tie (bothbad)', got {_short(winner)}", "winner")
    one, two = r.text("response_1"), r.text("response_2")
    chosen, rejected = (one, two) if winner == "model_a" else (two, one)
    language = r.row.get("language")
    return BenchItem(r.ident("question_id"), str(language) if language else "(none)", r.text("prompt"), (chosen,),
                     (rejected,))  # fmt: skip


def _read_judgebench(r: _Row) -> BenchItem:
    a, b = r.text("response_A"), r.text("response_B")
    label = r.get("label")
    if label not in ("A>B", "B>A"):
        raise r.error(f"expected 'A>B' or 'B>A', got {_short(label)}", "label")
    source = str(r.get("source"))
    category = next((c for c in JUDGEBENCH_CATEGORIES if source.startswith(c)), source)
    chosen, rejected = (a, b) if label == "A>B" else (b, a)
    return BenchItem(r.ident("pair_id"), category, r.text("question"), (chosen,), (rejected,))


@dataclass(frozen=True)
class Suite:
    """A benchmark: where its data lives on the hub, its row schema, its reader and its metric."""

    name: str
    title: str
    hub_path: str
    hub_split: str
    schema: str
    read_row: Callable[[_Row], BenchItem | None]  # None: a row the metric leaves out (PPE's ties), counted
    metrics: Callable[[Sequence[BenchItem], Sequence[ItemScores], float], list[MetricRow]]
    vision: bool = False  # items carry images: scored by a vision-language RM, with the text-only baseline

    def source(self, path: str | None, split: str | None = None) -> DataSource:
        """The data source: ``path`` (a file, a ``save_to_disk`` folder or a hub name), else the hub dataset."""
        if path is None:
            if not self.hub_path:
                raise DataError(f"{self.name} is not on the hub: build its data with the benchmark's own download "
                                f"script and give it with --data ({self.schema})")  # fmt: skip
            return DataSource(path=self.hub_path, format="hub", split=split or self.hub_split)
        return DataSource(path=path, split=split or self.hub_split)


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("rewardbench", "RewardBench", "allenai/reward-bench", "filtered",
              "prompt, chosen, rejected, subset (id optional)", _read_rewardbench, rewardbench_metrics),
        Suite("rewardbench2", "RewardBench 2", "allenai/reward-bench-2", "test",
              "prompt, chosen (list), rejected (list), subset, id", _read_rewardbench2, rewardbench2_metrics),
        Suite("rm-bench", "RM-Bench", "THU-KEG/RM-Bench", "train",
              "prompt, chosen (3), rejected (3), domain (id optional)", _read_rmbench, rmbench_metrics),
        Suite("judgebench", "JudgeBench", "ScalerLab/JudgeBench", "gpt",
              "question, response_A, response_B, label, source (pair_id optional)", _read_judgebench,
              judgebench_metrics),
        Suite("ppe", "PPE human preference", "lmarena-ai/PPE-Human-Preference-V1", "test",
              "question_id, prompt, response_1, response_2, winner, language", _read_ppe, judgebench_metrics),
        Suite("vl-rewardbench", "VL-RewardBench", "MMInstruction/VL-RewardBench", "test",
              "id, query, response (2), human_ranking, image or image_path", _read_vlrewardbench,
              vlrewardbench_metrics, vision=True),
        Suite("mm-rewardbench", "Multimodal RewardBench", "", "test",
              "ID, Text, Image, Output1, Output2, Better, Category", _read_mmrewardbench, mmrewardbench_metrics,
              vision=True),
    )
}  # fmt: skip


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise DataError(f"unknown benchmark suite {name!r}; choose from {', '.join(SUITES)}")
    return SUITES[name]


def read_suite(suite: Suite, source: DataSource, limit: int | None = None) -> list[BenchItem]:
    """The suite's items from ``source`` (any format the readers take: JSONL, JSON, Parquet, a ``save_to_disk``
    folder, a hub name), in file order; ``limit``: at most that many items of each subset (the first ones)."""
    from rewardlab.data.readers import iter_rows

    items: list[BenchItem] = []
    per_subset: dict[str, int] = {}
    left_out = 0
    for rowno, row in iter_rows(source):
        if not isinstance(row, dict):
            raise DataError(
                f"expected an object with {suite.schema}, got {_short(row)}", source=source.path, row=rowno
            )
        item = suite.read_row(_Row(suite, row, rowno, source.path))
        if item is None:
            left_out += 1
            continue
        if limit is not None and per_subset.get(item.subset, 0) >= limit:
            continue
        per_subset[item.subset] = per_subset.get(item.subset, 0) + 1
        items.append(item)
    if not items:
        raise DataError(f"no {suite.name} rows; expected rows with {suite.schema}", source=source.path)
    if left_out:
        import logging

        logging.getLogger(__name__).info("%s: %d rows left out (ties: no preference to score)", suite.name, left_out)
    return items


# ---------------------------------------------------------------------------------------------------------------------
# Confound baselines
# ---------------------------------------------------------------------------------------------------------------------

BASELINES = ("longer_chars", "shorter_chars", "longer_tokens", "shorter_tokens")
TEXT_ONLY = "text_only"  # vision suites: the same RM without the images
BASELINE_TIE = 0.5  # a coin toss


def char_length(text: Text) -> int:
    """Characters of a response (chat messages: of their text)."""
    return len(plain_text(text))


def confound_baselines(
    suite: Suite, items: Sequence[BenchItem], lengths: dict[str, Sequence[ItemScores]]
) -> dict[str, list[MetricRow]]:
    """The suite's metric with a length rule in place of the model: ``lengths`` maps a unit (``chars``,
    ``tokens``) to each item's response lengths (as :class:`ItemScores`). Returns ``longer_<unit>`` (the longer
    response wins) and ``shorter_<unit>``, ties counting as a coin toss."""
    out = {}
    for unit, per_item in lengths.items():
        for rule, sign in (("longer", 1.0), ("shorter", -1.0)):
            flipped = [ItemScores(tuple(sign * v for v in s.chosen), tuple(sign * v for v in s.rejected))
                       for s in per_item]  # fmt: skip
            out[f"{rule}_{unit}"] = suite.metrics(items, flipped, BASELINE_TIE)
    return out


def with_baselines(rows: Sequence[MetricRow], baselines: dict[str, list[MetricRow]]) -> list[dict[str, Any]]:
    """The model's rows as dicts, each with the baselines' value of the same (level, name, metric) beside it."""
    looked_up = {name: {r.key: r.value for r in rows_} for name, rows_ in baselines.items()}
    out = []
    for r in rows:
        entry: dict[str, Any] = {"level": r.level, "name": r.name, "metric": r.metric, "value": r.value, "n": r.n}
        for name in (*BASELINES, *(n for n in baselines if n not in BASELINES)):
            entry[name] = looked_up.get(name, {}).get(r.key)
        out.append(entry)
    return out
