"""Label Studio's JSON export → the rows the pair and group readers take (:mod:`rewardlab.data.readers` calls
:func:`label_studio_rows` for a ``.json`` list of tasks with ``data`` and ``annotations``).

Tasks are the ones ``rewardlab label --to-label-studio`` writes (:mod:`rewardlab.collection.label_studio`, which
takes the control names below from here): ``text1``/``text2`` for the Pairwise config with its ``tie`` box, ``items``
for List + Ranker (with ``buckets``, best first, for the config with Buckets). Each annotation gives one row, id
``ITEM#ANNOTATOR`` (ITEM: the task's ``rewardlab_id``, else its id), with the task's ``images``:

- a pairwise ``selected: left/right`` → ``prompt, chosen, rejected`` (left is ``text1``);
- a ranker's order → ``prompt, responses, ranks`` (1 = best); with buckets, a response's rank is its bucket's place
  in ``buckets`` (responses in one bucket are tied).

Annotations that give no row are counted, never dropped silently (``{kind}`` is ``pair`` or ``rank``):
``{kind}_skip`` (``was_cancelled``: Label Studio's Skip), ``{kind}_empty`` (no pairwise or ranker result),
``pair_tie`` (the tie box ticked: counted, not exported, as ``rewardlab label export`` counts its ties),
``pair_tie_and_side`` (the tie box ticked and a side picked as well), ``rank_unplaced`` (some response left outside
every bucket), ``{kind}_unlabeled`` (a task without annotations). Like the labeling app, an annotator has one
standing label per item: the last one (latest ``updated_at``, else ``created_at``; file order where a time is
missing) is kept and ``duplicates_dropped`` counts the others, so ids are unique.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from rewardlab.errors import DataError

TIE_CONTROL = "tie"  # the Choices control beside Pairwise: a choice ticked there marks the pair a tie
TIE_CHOICE = "Both equal"
BUCKETS = ("best", "ok", "worst")  # the bucket config's tiers, best first (Bucket names)
LEFT_OUT = ("pair_skip", "pair_empty", "pair_tie", "pair_tie_and_side", "pair_unlabeled", "rank_skip", "rank_empty",
            "rank_unplaced", "rank_unlabeled", "duplicates_dropped")  # fmt: skip

Count = Callable[[str, int], None]


@dataclass(frozen=True)
class _Annotation:
    """One annotation of one task, with what is needed to build its row and to find an annotator's last label."""

    rowno: int  # the task's position in the file (1 = first): the row errors name
    field: str  # ``annotations[k]``, for errors
    id: str
    kind: str  # pair | rank
    data: dict[str, Any]  # the task's
    annotation: dict[str, Any]
    stamp: datetime | None


def label_studio_rows(tasks: list[Any], label: str, on_error: Callable[[DataError], None],
                      count: Count | None = None) -> Iterator[tuple[int, dict[str, Any]]]:  # fmt: skip
    """Rows ``(task position, row)`` from an export's ``tasks`` (module docstring); what is left out goes to
    ``count(key, n)``. A task that is not one rewardlab wrote, or a result that does not fit its task, goes to
    ``on_error`` (which raises, or collects and goes on). Raises when no annotation gives a row."""
    by_id: dict[str, list[_Annotation]] = {}
    left_out: Counter[str] = Counter()
    for index, task in enumerate(tasks, start=1):
        for entry in _annotations(index, task, label, on_error, left_out):
            by_id.setdefault(entry.id, []).append(entry)
    rows = []
    for entries in by_id.values():
        left_out["duplicates_dropped"] += len(entries) - 1
        kept = _last(entries)
        try:
            row = _row_of(kept, left_out)
        except DataError as err:
            on_error(DataError(str(err), source=label, row=kept.rowno, field=kept.field))
            continue
        if row is not None:
            rows.append((kept.rowno, row))
    left_out = +left_out  # only the keys that occurred
    if count is not None:
        for key, n in left_out.items():
            count(key, n)
    if not rows:
        what = ", ".join(f"{k} {n}" for k, n in left_out.items()) or "no annotations"
        raise DataError(f"a Label Studio export in which no annotation gives a record ({what}); label tasks in "
                        "Label Studio, then export again", source=label)  # fmt: skip
    yield from sorted(rows, key=lambda r: r[0])


def _annotations(index: int, task: Any, label: str, on_error: Callable[[DataError], None],
                 left_out: Counter[str]) -> list[_Annotation]:  # fmt: skip
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict):
        on_error(DataError("a Label Studio task needs a `data` object", source=label, row=index))
        return []
    kind = "pair" if "text1" in data and "text2" in data else "rank" if isinstance(data.get("items"), list) else None
    if kind is None:
        on_error(DataError("the task's data has neither `text1` and `text2` (pairwise) nor `items` (ranking): read "
                           "exports of the tasks `rewardlab label --to-label-studio` writes", source=label,
                           row=index, field="data"))  # fmt: skip
        return []
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list):
        on_error(DataError("`annotations` must be a list", source=label, row=index, field="annotations"))
        return []
    if not annotations:
        left_out[f"{kind}_unlabeled"] += 1
    item = data.get("rewardlab_id", task.get("id", index))
    out = []
    for k, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            on_error(DataError("an annotation must be an object", source=label, row=index, field=f"annotations[{k}]"))
            continue
        who = _annotator(annotation) or f"annotation-{annotation.get('id', f'{index}.{k}')}"
        out.append(_Annotation(index, f"annotations[{k}]", f"{item}#{who}", kind, data, annotation,
                               _stamp(annotation)))  # fmt: skip
    return out


def _annotator(annotation: dict[str, Any]) -> str | None:
    """``completed_by``: a user id, or (some exports) a user object whose email or id names the annotator."""
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return None if who in (None, "") else str(who)


def _stamp(annotation: dict[str, Any]) -> datetime | None:
    for key in ("updated_at", "created_at"):
        value = annotation.get(key)
        if isinstance(value, str):
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    return None


def _last(entries: list[_Annotation]) -> _Annotation:
    """An annotator's standing label on an item: the latest by time when every copy has one, else the last in the
    file (``entries`` are in file order)."""
    if all(e.stamp is not None for e in entries):
        return max(enumerate(entries), key=lambda pair: (pair[1].stamp, pair[0]))[1]
    return entries[-1]


def _row_of(entry: _Annotation, left_out: Counter[str]) -> dict[str, Any] | None:
    """The row of one standing annotation, or None (counted in ``left_out``)."""
    if entry.annotation.get("was_cancelled"):
        left_out[f"{entry.kind}_skip"] += 1
        return None
    results = [r for r in entry.annotation.get("result") or [] if isinstance(r, dict)]
    base: dict[str, Any] = {"id": entry.id, "prompt": entry.data.get("prompt")}
    if entry.data.get("images"):
        base["images"] = entry.data["images"]
    if entry.kind == "pair":
        return _pair_row(entry.data, results, base, left_out)
    return _rank_row(entry.data, results, base, left_out)


def _pair_row(data: dict[str, Any], results: list[dict[str, Any]], base: dict[str, Any],
              left_out: Counter[str]) -> dict[str, Any] | None:  # fmt: skip
    sides = [(r.get("value") or {}).get("selected") for r in results if r.get("type") == "pairwise"]
    side = next((s for s in sides if s in ("left", "right")), None)
    ticked = [(r.get("value") or {}).get("choices") for r in results
              if r.get("type") == "choices" and r.get("from_name") == TIE_CONTROL]  # fmt: skip
    tie = any(ticked)
    if tie:  # counted as the labeling app counts ties; with a side picked as well the label contradicts itself
        left_out["pair_tie_and_side" if side else "pair_tie"] += 1
        return None
    if side is None:
        left_out["pair_empty"] += 1
        return None
    left, right = data["text1"], data["text2"]
    chosen, rejected = (left, right) if side == "left" else (right, left)
    return {**base, "chosen": chosen, "rejected": rejected}


def _rank_row(data: dict[str, Any], results: list[dict[str, Any]], base: dict[str, Any],
              left_out: Counter[str]) -> dict[str, Any] | None:  # fmt: skip
    result = next((r for r in results if r.get("type") == "ranker"), None)
    if result is None:
        left_out["rank_empty"] += 1
        return None
    items = [i if isinstance(i, dict) else {} for i in data["items"]]
    ranks = ranker_ranks((result.get("value") or {}).get("ranker"), [str(i.get("id")) for i in items],
                         data.get("buckets"))  # fmt: skip
    if ranks is None:
        left_out["rank_unplaced"] += 1
        return None
    return {**base, "responses": [i.get("body") for i in items], "ranks": ranks}


def ranker_ranks(ranker: Any, ids: list[str], buckets: Any = None) -> list[int] | None:
    """Ranks (1 = best) of the items ``ids`` from a ranker result: an order (a list, or Label Studio's one-key
    object ``{ranker_name: [ids]}``), or with ``buckets`` (their names, best first) an object ``{bucket: [ids]}``
    whose ``_`` key holds the items left unplaced. None when some item is unplaced; DataError when the result does
    not fit the task."""
    if buckets is not None:
        if not isinstance(buckets, list) or not all(isinstance(b, str) for b in buckets):
            raise DataError(f"the task's `buckets` must be a list of bucket names, best first; got {buckets!r}")
        if not isinstance(ranker, dict):
            raise DataError(f"a ranking in buckets is an object {{bucket: [item ids]}}; got {ranker!r}")
        unknown = sorted(k for k in ranker if k != "_" and k not in buckets)
        if unknown:
            raise DataError(f"buckets {unknown} are not the task's buckets ({', '.join(buckets)}): the project's "
                            "config and the tasks' `buckets` must name the same buckets")  # fmt: skip
        groups = [ranker.get(b) or [] for b in buckets]
    elif isinstance(ranker, list):
        groups = [[i] for i in ranker]
    elif isinstance(ranker, dict) and len(named := [v for k, v in ranker.items() if k != "_"]) == 1:
        groups = [[i] for i in named[0]] if isinstance(named[0], list) else [named[0]]
    elif isinstance(ranker, dict):
        raise DataError(
            "a ranking in several buckets needs their order: write the tasks with `rewardlab label DATA "
            "--to-label-studio DIR --ls-ranking buckets` (their data lists `buckets`, best first)"
        )
    else:
        raise DataError(f"a ranker result holds the item ids in order, or buckets of them; got {ranker!r}")
    rank_of: dict[str, int] = {}
    for place, group in enumerate(groups, start=1):
        if not isinstance(group, list):
            raise DataError(f"a bucket holds a list of item ids; got {group!r}")
        rank_of.update((str(i), place) for i in group)
    unknown = sorted(set(rank_of) - set(ids))
    if unknown:
        raise DataError(f"the ranking names items the task does not have ({', '.join(unknown)}; its items are "
                        f"{', '.join(ids)})")  # fmt: skip
    return [rank_of[i] for i in ids] if all(i in rank_of for i in ids) else None
