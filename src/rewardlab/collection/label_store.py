"""The labeling store: items to label and the labels people give, in SQLite (WAL; every label committed before the
page moves on).

Items come from the files rewardlab reads and writes: preference pairs (``chosen``/``rejected``, with a ``prompt``
or in the implicit-prompt form, split as the readers split it; re-judged, shown in a seeded random order) and groups
of responses (``responses``, e.g. ``rewardlab generate``'s output: two become a pairwise task, more a ranking task).
Export writes what ``train``/``eval`` read: pairs and ranked groups.

Image paths are stored absolute (a relative one is read from the data file's folder, as the readers read it, and
may not climb out of it), so an export written to any folder can point at them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.errors import DataError

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE NOT NULL, task TEXT NOT NULL, prompt TEXT NOT NULL,
    responses TEXT NOT NULL, images TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY, item_id INTEGER NOT NULL REFERENCES items(id), annotator TEXT NOT NULL,
    value TEXT NOT NULL, created REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS labels_item ON labels(item_id, undone);
CREATE INDEX IF NOT EXISTS labels_annotator ON labels(annotator, undone);
"""
PAIR_CHOICES = ("a", "b", "tie", "skip")


@dataclass
class Item:
    id: int
    key: str
    task: str  # "pair", "rank" or "check" (descriptions of an image: correct or wrong, or a better one typed)
    prompt: Any
    responses: list[Any]
    images: list[Any]


class LabelStore:
    """Thread-safe access to one SQLite database (one connection per thread)."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        try:
            conn = self._conn()  # autocommit: the journal mode and the schema are set outside a transaction
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
        except sqlite3.Error as exc:  # not an SQLite file, or a folder it cannot be created in
            raise DataError(f"{path}: cannot be used as a label database ({exc}); give --db an earlier label "
                            "database, or a new file in a folder you can write") from None  # fmt: skip

    def close(self) -> None:
        """Close this thread's connection (the store opens a new one when used again)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.conn = conn
        return conn

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A transaction: committed on success (``BEGIN IMMEDIATE``: writers queue, never fail on a lock)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- items ---------------------------------------------------------------------------------------------------
    def add_rows(self, rows: list[tuple[int, dict[str, Any]]], source: str, seed: int = 0) -> int:
        """Items from data rows (``(row_number, row)``); rows already loaded (same key) are left alone."""
        added = mismatched = 0
        with self.connect() as db:
            for rowno, row in rows:
                key = str(row["id"]) if row.get("id") not in (None, "") else f"{Path(source).name}:{rowno}"
                task, prompt = None, row.get("prompt")
                if "descriptions" in row and isinstance(row["descriptions"], list):
                    responses, task = list(row["descriptions"]), "check"  # judge each: correct / wrong
                elif "responses" in row and isinstance(row["responses"], list):
                    responses = list(row["responses"])
                elif "chosen" in row and "rejected" in row:
                    prompt, responses, matched = pair_of(row, source, rowno)
                    mismatched += not matched
                    random.Random(f"{seed}:{key}").shuffle(responses)  # the labeler must not see which was chosen
                else:
                    raise DataError("a row to label needs `responses` (a list), `chosen` and `rejected`, or "
                                    "`descriptions` (a list, with `images`)", source=source, row=rowno)  # fmt: skip
                minimum = 1 if task == "check" else 2
                if len(responses) < minimum or any(r in (None, "", []) for r in responses):
                    raise DataError(f"needs at least {minimum} non-empty responses", source=source, row=rowno,
                                    field="responses")  # fmt: skip
                if prompt is None:
                    raise DataError("missing column 'prompt' (or null)", source=source, row=rowno, field="prompt")
                images = row.get("images") or []
                images = stored_images([images] if isinstance(images, str) else list(images), source, rowno)
                task = task or ("pair" if len(responses) == 2 else "rank")
                cur = db.execute(
                    "INSERT OR IGNORE INTO items(key, task, prompt, responses, images) VALUES (?,?,?,?,?)",
                    (key, task, json.dumps(prompt), json.dumps(responses), json.dumps(images)),
                )
                added += cur.rowcount
        if mismatched:
            logger.warning(
                "%s: %d implicit-prompt pairs whose transcripts differ before the last assistant turn (the common "
                "prefix is their prompt, as training reads them)", source, mismatched,
            )  # fmt: skip
        return added

    def item(self, item_id: int) -> Item | None:
        row = (
            self._conn()
            .execute("SELECT id, key, task, prompt, responses, images FROM items WHERE id=?", (item_id,))
            .fetchone()
        )
        return _item(row) if row else None

    def all_items(self) -> list[Item]:
        rows = (
            self._conn().execute("SELECT id, key, task, prompt, responses, images FROM items ORDER BY id").fetchall()
        )
        return [_item(r) for r in rows]

    def next_item(self, annotator: str, per_item: int) -> Item | None:
        """The first item this annotator has not labeled and that has fewer than ``per_item`` labels."""
        row = (
            self._conn()
            .execute(
                """SELECT id, key, task, prompt, responses, images FROM items i
               WHERE NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id=i.id AND l.annotator=? AND l.undone=0)
                 AND (SELECT COUNT(*) FROM labels l WHERE l.item_id=i.id AND l.undone=0) < ?
               ORDER BY id LIMIT 1""",
                (annotator, per_item),
            )
            .fetchone()
        )
        return _item(row) if row else None

    def progress(self, annotator: str) -> dict[str, int]:
        conn = self._conn()
        total = conn.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        mine = conn.execute("SELECT COUNT(*) FROM labels WHERE annotator=? AND undone=0", (annotator,)).fetchone()[0]
        labeled = conn.execute("SELECT COUNT(DISTINCT item_id) FROM labels WHERE undone=0").fetchone()[0]
        return {"total": total, "labeled_items": labeled, "mine": mine}

    # -- labels --------------------------------------------------------------------------------------------------
    def add_label(self, item_id: int, annotator: str, value: Any) -> int:
        """Store a label after checking it fits the item; returns its id. An annotator has one standing label per
        item: a repeated post (a retry, a changed mind) replaces the earlier one, never adds a second."""
        item = self.item(item_id)
        if item is None:
            raise DataError(f"no item {item_id}")
        check_value(item, value)
        with self.connect() as db:
            db.execute("UPDATE labels SET undone=1 WHERE item_id=? AND annotator=? AND undone=0", (item_id, annotator))
            cur = db.execute("INSERT INTO labels(item_id, annotator, value, created) VALUES (?,?,?,?)",
                             (item_id, annotator, json.dumps(value), time.time()))  # fmt: skip
            return int(cur.lastrowid)

    def undo(self, annotator: str) -> int | None:
        """Withdraw the annotator's last label; returns its item id (None when there is nothing to undo)."""
        with self.connect() as db:
            row = db.execute("SELECT id, item_id FROM labels WHERE annotator=? AND undone=0 ORDER BY id DESC LIMIT 1",
                             (annotator,)).fetchone()  # fmt: skip
            if row is None:
                return None
            db.execute("UPDATE labels SET undone=1 WHERE id=?", (row[0],))
            return int(row[1])

    def labels(self) -> list[tuple[Item, str, Any]]:
        """Every standing label: (item, annotator, value), in the order given."""
        rows = (
            self._conn()
            .execute(
                """SELECT i.id, i.key, i.task, i.prompt, i.responses, i.images, l.annotator, l.value FROM labels l
               JOIN items i ON i.id=l.item_id WHERE l.undone=0 ORDER BY l.id"""
            )
            .fetchall()
        )
        return [(_item(r[:6]), r[6], json.loads(r[7])) for r in rows]


def pair_of(row: dict[str, Any], source: str, rowno: int) -> tuple[Any, list[Any], bool]:
    """A pair row's prompt, its two responses (chosen first) and whether its transcripts matched. Without a
    ``prompt`` column it is an implicit-prompt pair (TRL's form, hh-rlhf transcripts), split as the readers split
    it."""
    from rewardlab.data.prompts import split_implicit_pair

    if "prompt" in row:
        return row["prompt"], [row["chosen"], row["rejected"]], True
    try:
        prompt, chosen, rejected, matched = split_implicit_pair(row["chosen"], row["rejected"])
    except TypeError as exc:
        raise DataError(f"{exc} (a pair without a prompt column is read as an implicit-prompt pair)",
                        source=source, row=rowno, field="chosen") from None  # fmt: skip
    return prompt, [chosen, rejected], matched


def stored_images(images: list[Any], source: str, rowno: int) -> list[Any]:
    """Image paths as the store keeps them: absolute. Relative ones resolve from the data file's folder and may
    not leave it (the readers' rule); URLs, images that are not paths, and everything from a source that is not a
    file (a hub dataset) stay as they are."""
    from rewardlab.data.prepare import resolve_images

    if not Path(source).expanduser().is_file():
        return images
    try:
        resolved = resolve_images(tuple(images), source)
    except DataError as exc:
        raise DataError(str(exc), source=source, row=rowno, field="images") from None
    return [os.path.abspath(im) if is_local_path(im) else im for im in resolved]


def is_local_path(image: Any) -> bool:
    return isinstance(image, str) and not image.startswith(("http://", "https://"))


def _item(row: tuple) -> Item:
    return Item(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]), json.loads(row[5]))


def check_value(item: Item, value: Any) -> None:
    """A pairwise label is a / b / tie / skip; a ranking gives each response a rank 1..K (ties allowed); a
    description check marks each description correct or not, with an optional better one typed in."""
    if item.task == "pair":
        if value not in PAIR_CHOICES:
            raise DataError(f"a pairwise label is one of {', '.join(PAIR_CHOICES)}, got {value!r}")
        return
    k = len(item.responses)
    if value == "skip":
        return
    if item.task == "check":
        marks = value.get("correct") if isinstance(value, dict) else None
        ok = isinstance(marks, list) and len(marks) == k and all(isinstance(c, bool) for c in marks)
        ok = ok and isinstance(value.get("better", ""), str)
        if not ok:
            raise DataError(f'a description check is {{"correct": [{k} true/false], "better": "text or empty"}}: '
                            f"{value!r}")  # fmt: skip
        return
    if (not isinstance(value, list) or len(value) != k
            or not all(isinstance(r, int) and not isinstance(r, bool) and 1 <= r <= k for r in value)):  # fmt: skip
        raise DataError(f"a ranking gives each of the {k} responses a rank from 1 to {k} (ties allowed): {value!r}")
