"""From a ``DataConfig`` to the records a run trains and evaluates on."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path

from rewardlab.config.schema import DataConfig, DataSource
from rewardlab.data.readers import read_records
from rewardlab.data.records import PreferencePair, RankedGroup, ReadReport, Record
from rewardlab.errors import DataError


@dataclass
class PreparedData:
    """``train``: pairs, or groups when ``ranked_as="groups"``; ``eval``: always pairs (metrics are pairwise)."""

    train: list[Record]
    eval: list[PreferencePair]
    reports: list[ReadReport] = field(default_factory=list)


def expand(records: list[Record], ranked_as: str) -> list[Record]:
    """Ranked groups → all ordered pairs (``ranked_as="pairs"``) or kept; pairs stay pairs."""
    out: list[Record] = []
    for rec in records:
        if isinstance(rec, RankedGroup) and ranked_as == "pairs":
            out.extend(rec.to_pairs())
        elif isinstance(rec, PreferencePair) and ranked_as == "groups":
            out.append(RankedGroup(rec.prompt, (rec.chosen, rec.rejected), (1, 2), rec.images, rec.id, rec.subset))
        else:
            out.append(rec)
    return out


def resolve_images(images: tuple, data_path: str) -> tuple:
    """Relative image paths in a data file point next to that file (so a data folder can be moved); URLs,
    absolute paths, dicts and PIL images stay as they are, and so does everything read from a non-file source."""
    if not images or not Path(data_path).expanduser().is_file():
        return images
    from rewardlab.data.transforms import local_image_path

    base = Path(data_path).expanduser().parent
    return tuple(
        str(local_image_path(im, base)) if isinstance(im, str) and not im.startswith(("http://", "https://", "/"))
        else im
        for im in images
    )  # fmt: skip


def resolve_image_paths(records: list[Record], data_path: str) -> list[Record]:
    """Every record's images through :func:`resolve_images`; a path that leaves the data folder is a DataError
    naming the file and the record."""
    out = []
    for r in records:
        try:
            out.append(dataclasses.replace(r, images=resolve_images(r.images, data_path)) if r.images else r)
        except DataError as exc:
            raise DataError(f"record {r.id or '(no id)'}: {exc}", source=data_path, field="images") from None
    return out


def read_source(source: DataSource) -> tuple[list[Record], ReadReport]:
    records, report = read_records(source)
    return resolve_image_paths(records, source.path), report


def as_pairs(records: list[Record]) -> list[PreferencePair]:
    return [p for p in expand(records, "pairs") if isinstance(p, PreferencePair)]


def prepare_data(cfg: DataConfig, seed: int) -> PreparedData:
    train_records, train_report = read_source(cfg.train)
    reports = [train_report]
    if cfg.eval is not None:
        eval_records, eval_report = read_source(cfg.eval)
        reports.append(eval_report)
    elif cfg.eval_fraction > 0:
        # Split by record (a ranked group stays whole) so no prompt is in both sets through its pairs.
        order = list(range(len(train_records)))
        random.Random(seed).shuffle(order)
        n_eval = max(1, round(len(order) * cfg.eval_fraction))
        eval_records = [train_records[i] for i in order[:n_eval]]
        train_records = [train_records[i] for i in sorted(order[n_eval:])]
    else:
        eval_records = []
    train = expand(train_records, cfg.ranked_as)
    if not train:
        raise DataError("no training records left (after the eval split and tied pairs)", source=cfg.train.path)
    return PreparedData(train, as_pairs(eval_records), reports)
