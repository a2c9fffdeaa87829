"""`rewardlab select`: the pairs (or candidate groups) of a pool a reward model is least sure about, to label first
(active learning).

How unsure, per item:
- an ensemble (``model.ensemble``): the members' standard deviation of the margin between two responses — for a group
  of K candidates, the largest over its pairs (the pair the members disagree on most);
- a single head: how close the model is to a coin flip, ``−|margin|`` — for a group, its closest pair.

``criterion="margin"`` uses the second for an ensemble too (its mean margin): on hh-rlhf the mean's margin picked
out misranked pairs better than the members' spread did (docs/training.md, Ensembles and uncertainty).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource, ScoreConfig
from rewardlab.data.records import PreferencePair, RankedGroup, Text
from rewardlab.errors import ConfigError, DataError


@dataclass
class PoolItem:
    row: int  # the pool's row number
    prompt: Text
    responses: list[Text]
    source: dict[str, Any]  # the row as read (written back with the selection)


@dataclass
class SelectResult:
    selected: int
    pool: int
    criterion: str  # "ensemble_spread" or "margin"
    destination: str


def read_pool(path: str) -> list[PoolItem]:
    """Pairs (any form ``train`` reads: explicit or implicit prompt) or groups of candidates (``responses``, ranks
    optional, as ``rewardlab generate`` writes them)."""
    from rewardlab.data.readers import iter_rows, read_records_lenient

    source = DataSource(path=path)
    rows = list(iter_rows(source))
    if not rows:
        raise DataError("the pool is empty", source=path)
    first = rows[0][1]
    if "responses" in first and "ranks" not in first:  # unranked candidates
        items = []
        for rowno, row in rows:
            responses = row.get("responses")
            if not isinstance(responses, list) or len(responses) < 2:
                raise DataError("needs a list of at least 2 responses", source=path, row=rowno, field="responses")
            if "prompt" not in row:
                raise DataError("missing; each group of candidates needs its prompt", source=path, row=rowno,
                                field="prompt")  # fmt: skip
            items.append(PoolItem(rowno, row["prompt"], list(responses), row))
        return items
    read = read_records_lenient(source)
    if read.errors:
        raise read.errors[0]  # file:row:field of the first bad row
    raw = dict(rows)
    items = []
    for rowno, rec in zip(read.record_rows, read.records):
        if isinstance(rec, PreferencePair):
            items.append(PoolItem(rowno, rec.prompt, [rec.chosen, rec.rejected], raw.get(rowno, {})))
        elif isinstance(rec, RankedGroup):
            items.append(PoolItem(rowno, rec.prompt, list(rec.responses), raw.get(rowno, {})))
    return items


def uncertainty(members: list[list[float]], ensemble: bool) -> float:
    """How unsure the model is about one item, from each response's ``[mean, member 1, ...]`` (see module doc)."""
    values = []
    for a, b in combinations(members, 2):
        if ensemble:
            values.append(statistics.pstdev([x - y for x, y in zip(a[1:], b[1:])]))
        else:
            values.append(-abs(a[0] - b[0]))
    return max(values)


CRITERIA = ("auto", "spread", "margin")


def criterion_of(scorer: Any, requested: str = "auto") -> str:
    """``ensemble_spread`` or ``margin``: ``auto`` is the spread for an ensemble, the margin for a single head."""
    if requested not in CRITERIA:
        raise ConfigError(f"--criterion {requested!r}: choose one of {', '.join(CRITERIA)}")
    if requested == "spread" and scorer.members < 2:
        raise ConfigError("--criterion spread needs an ensemble reward model (model.ensemble); use margin or auto")
    return "ensemble_spread" if requested != "margin" and scorer.members > 1 else "margin"


def uncertainties(scorer: Any, items: list[PoolItem], criterion: str = "auto") -> list[float]:
    """Each item's uncertainty under ``scorer`` by ``criterion`` (see the module docstring), in order."""
    spread = criterion_of(scorer, criterion) == "ensemble_spread"
    if scorer.is_vision:
        raise ConfigError("ordering by uncertainty works with text reward models for now")
    prompts = [it.prompt for it in items for _ in it.responses]
    responses = [r for it in items for r in it.responses]
    rows = scorer.score_items(scorer.encode(prompts, responses), members=True)
    out, offset = [], 0
    for it in items:
        k = len(it.responses)
        out.append(uncertainty(rows[offset : offset + k], spread))
        offset += k
    return out


def run_select(cfg: ScoreConfig, data: str, top: int, out: str, criterion: str = "auto") -> SelectResult:
    """Score the pool, write its ``top`` most uncertain items to ``out`` (JSONL, most uncertain first): each the
    prompt and ``responses`` to label, with ``uncertainty``, ``criterion``, the pool's ``row`` and its other
    columns (``chosen``/``rejected`` become ``responses`` in that order)."""
    from rewardlab.data.files import atomic_write_text
    from rewardlab.recipes.score import load_scorer

    if top < 1:
        raise ConfigError("--top must be at least 1")
    items = read_pool(data)
    scorer = load_scorer(cfg)
    criterion = criterion_of(scorer, criterion)
    how = "spread" if criterion == "ensemble_spread" else "margin"
    # Stable: ties keep the pool's order.
    scored = sorted(zip(uncertainties(scorer, items, how), items), key=lambda pair: -pair[0])
    lines = []
    for u, it in scored[:top]:
        rest = {k: v for k, v in it.source.items() if k not in ("prompt", "chosen", "rejected", "responses")}
        row = {"prompt": it.prompt, "responses": it.responses, **rest, "row": it.row, "uncertainty": u,
               "criterion": criterion}  # fmt: skip
        lines.append(json.dumps(row, ensure_ascii=False, default=str))
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return SelectResult(len(lines), len(items), criterion, str(Path(out)))
