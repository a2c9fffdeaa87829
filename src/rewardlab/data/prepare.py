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
    """``train``: pairs, or groups when ``ranked_as="groups"`` (with attribute heads, rated responses too: groups of
    one); ``eval``: always pairs (metrics are pairwise); ``rated``: held-out rated responses."""

    train: list[Record]
    eval: list[PreferencePair]
    reports: list[ReadReport] = field(default_factory=list)
    rated: list[RankedGroup] = field(default_factory=list)  # held-out rated responses (attribute heads' eval)


def expand(records: list[Record], ranked_as: str, ratings: bool = False) -> list[Record]:
    """Ranked groups → all ordered pairs (``ranked_as="pairs"``) or kept; pairs stay pairs. ``ratings`` (attribute
    heads): a rated group's responses also come alone with their ratings (pairs), or the group keeps them
    (groups); without it ratings are dropped, and so are rated responses, which hold no preference."""
    out: list[Record] = []
    for rec in records:
        if isinstance(rec, RankedGroup) and rec.rated and not ratings:
            rec = dataclasses.replace(rec, ratings=None)
            if len(rec.responses) < 2:
                continue
        if isinstance(rec, RankedGroup) and ranked_as == "pairs":
            out.extend(rec.to_pairs())
            if ratings:
                out.extend(rec.rated_responses())
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


def read_source(
    source: DataSource, attributes: dict[str, tuple[float, float]] | None = None
) -> tuple[list[Record], ReadReport]:
    records, report = read_records(source, attributes)
    return resolve_image_paths(records, source.path), report


def as_pairs(records: list[Record]) -> list[PreferencePair]:
    return [p for p in expand(records, "pairs") if isinstance(p, PreferencePair)]


def prepare_data(cfg: DataConfig, seed: int, attributes: dict[str, tuple[float, float]] | None = None) -> PreparedData:
    """``attributes`` (``model.attributes``): rated rows are read (and checked against the ranges) and trained on."""
    train_records, train_report = read_source(cfg.train, attributes)
    reports = [train_report]
    extra: list[Record] = []
    if cfg.rated is not None:
        if not attributes:
            raise DataError("data.rated trains attribute heads: set model.attributes too", source=cfg.rated.path)
        extra, rated_report = read_source(cfg.rated, attributes)
        reports.append(rated_report)
        if not all(isinstance(r, RankedGroup) and r.rated for r in extra):
            raise DataError("data.rated holds rated responses (prompt, response, ratings); this file has unrated "
                            "records: put pairs and ranked groups in data.train", source=cfg.rated.path)  # fmt: skip
    rated = sum(isinstance(r, RankedGroup) and r.rated for r in train_records + extra)
    if attributes and not rated:
        raise DataError(
            "model.attributes trains on rated responses, and this file has no ratings: add a `ratings` "
            "column (or map one with columns.ratings), or drop model.attributes",
            source=cfg.train.path,
        )
    if not attributes and rated and all(isinstance(r, RankedGroup) and len(r.responses) == 1 for r in train_records):
        raise DataError(
            "holds rated responses only (no pairs or ranked groups): set model.attributes, e.g. "
            "{helpfulness: [0, 4]}, to train attribute heads on them",
            source=cfg.train.path,
        )
    if cfg.eval is not None:
        eval_records, eval_report = read_source(cfg.eval, attributes)
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
    train = expand(train_records + extra, cfg.ranked_as, ratings=bool(attributes))
    if not train:
        raise DataError("no training records left (after the eval split and tied pairs)", source=cfg.train.path)
    return PreparedData(train, as_pairs(eval_records), reports, rated=[r for r in expand(eval_records, "pairs", True)
                        if isinstance(r, RankedGroup)] if attributes else [])  # fmt: skip
