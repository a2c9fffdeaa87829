"""Labels → the records ``train``/``eval`` read, and agreement where items were labeled more than once.

A pairwise label ``a``/``b`` becomes a pair (``chosen`` the one picked); ``tie`` and ``skip`` are counted, not
exported. A ranking becomes a ranked group (``prompt, responses, ranks``). A description check becomes a pair for
every (correct or typed-in description, wrong description), with the image. An item labeled by several annotators
gives one record per label (ids ``KEY#ANNOTATOR``). Pairs are written to ``OUT`` and ranked groups to ``OUT.groups``
(``prefs.jsonl`` → ``prefs.groups.jsonl``), each when there are any. Agreement: Cohen's κ between the two most
active annotators on the pairwise items both labeled, and Krippendorff's α (nominal for pairwise choices, interval
for ranks) over every item labeled at least twice.

Image paths in the export resolve from the export file's folder, wherever it is written: relative to that folder
when the image is inside it, absolute otherwise (the store keeps them absolute).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from rewardlab.collection.label_store import LabelStore, is_local_path
from rewardlab.evaluation.metrics import cohen_kappa, krippendorff_alpha

logger = logging.getLogger(__name__)


def export_labels(store: LabelStore, out: str | Path) -> dict[str, Any]:
    from rewardlab.data.files import atomic_write_text

    records, counts = [], Counter()
    by_item: dict[int, dict[str, Any]] = defaultdict(dict)
    folder = Path(os.path.abspath(out)).parent
    for item, annotator, value in store.labels():
        by_item[item.id][annotator] = (item, value)
        base = {"id": f"{item.key}#{annotator}", "prompt": item.prompt, "annotator": annotator}
        if item.images:
            base["images"] = images_from(item.images, folder, counts)
        if item.task == "pair":
            if value in ("tie", "skip"):
                counts[f"pair_{value}"] += 1
                continue
            chosen, rejected = item.responses if value == "a" else item.responses[::-1]
            records.append({**base, "chosen": chosen, "rejected": rejected})
            counts["pairs"] += 1
        elif value == "skip":
            counts[f"{item.task}_skip"] += 1
        elif item.task == "check":
            good = [r for r, ok in zip(item.responses, value["correct"]) if ok]
            if value.get("better", "").strip():
                good.append(value["better"].strip())
            wrong = [r for r, ok in zip(item.responses, value["correct"]) if not ok]
            for n, (chosen, rejected) in enumerate((g, w) for g in good for w in wrong):
                records.append({**base, "id": f"{base['id']}:{n}", "chosen": chosen, "rejected": rejected})
                counts["pairs"] += 1
            counts["checked"] += 1
        else:
            records.append({**base, "responses": item.responses, "ranks": value})
            counts["groups"] += 1
    out = Path(out)
    written = write_pairs_and_groups(records, out)
    if counts["images_relative_to_data"]:
        logger.warning("%s: %d image paths were stored relative to the labeled file's folder (a database from an "
                       "earlier rewardlab); they are written as stored, so write the export into that folder",
                       store.path, counts["images_relative_to_data"])  # fmt: skip
    summary = {"files": written, "counts": dict(counts), "agreement": agreement(by_item)}
    atomic_write_text(out.with_name(out.name + ".agreement.json"), json.dumps(summary, indent=2))
    return summary


def write_pairs_and_groups(records: list[dict[str, Any]], out: Path) -> list[str]:
    """Write pair records (``chosen``) to ``out`` and ranked groups (``ranks``) to :func:`groups_path` — two record
    shapes, each under one name whichever occur — and return the files written."""
    from rewardlab.data.files import atomic_write_text

    written = []
    pairs, groups = [r for r in records if "chosen" in r], [r for r in records if "ranks" in r]
    for path, rows in ((out, pairs), (groups_path(out), groups)):
        if rows:
            atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
            written.append(str(path))
    return written


def groups_path(out: Path) -> Path:
    """Where the ranked groups of an export to ``out`` go: ``prefs.jsonl`` → ``prefs.groups.jsonl``."""
    return out.with_name(out.stem + ".groups" + out.suffix)


def images_from(images: list[Any], folder: Path, counts: Counter) -> list[Any]:
    """Stored (absolute) image paths as the export at ``folder`` writes them: relative to ``folder`` when inside it,
    else absolute; the readers resolve both from the export's folder."""
    out = []
    for image in images:
        if is_local_path(image) and os.path.isabs(image):
            path = Path(image)
            image = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else image
        elif is_local_path(image):
            counts["images_relative_to_data"] += 1
        out.append(image)
    return out


def agreement(by_item: dict[int, dict[str, Any]]) -> dict[str, Any]:
    multi = {i: labels for i, labels in by_item.items() if len(labels) >= 2}
    pair_units = [[v for _, v in labels.values() if v in ("a", "b", "tie")]
                  for labels in multi.values() if next(iter(labels.values()))[0].task == "pair"]  # fmt: skip
    rank_units: list[list[int]] = []
    for labels in multi.values():
        item = next(iter(labels.values()))[0]
        ranked = [v for _, v in labels.values() if isinstance(v, list)]
        if item.task == "rank" and len(ranked) >= 2:
            rank_units += [[r[k] for r in ranked] for k in range(len(item.responses))]
    out: dict[str, Any] = {"items_labeled_twice_or_more": len(multi)}
    if any(len(u) >= 2 for u in pair_units):
        out["pairwise_krippendorff_alpha"] = krippendorff_alpha(pair_units, "nominal")
        annotators = Counter(a for labels in multi.values() for a in labels)
        if len(annotators) >= 2:
            (first, _), (second, _) = annotators.most_common(2)
            both = [(labels[first][1], labels[second][1]) for labels in multi.values()
                    if first in labels and second in labels and labels[first][0].task == "pair"
                    and "skip" not in (labels[first][1], labels[second][1])]  # fmt: skip
            if both:
                out["pairwise_cohen_kappa"] = {"annotators": [first, second], "items": len(both),
                                               "kappa": cohen_kappa(*zip(*both))}  # fmt: skip
    if rank_units:
        out["rank_krippendorff_alpha_interval"] = krippendorff_alpha(rank_units, "interval")
    return out
