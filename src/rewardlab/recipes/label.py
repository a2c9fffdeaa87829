"""``rewardlab label DATA --db labels.sqlite``: load items into the store and serve the labeling app;
``rewardlab label export --db labels.sqlite --out prefs.jsonl``: labels → pairs / ranked groups + agreement."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardlab.errors import ConfigError

if TYPE_CHECKING:
    from rewardlab.collection.label_studio import LabelStudioTasks, Ranking

logger = logging.getLogger(__name__)


def check_label_dependencies() -> None:
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"labeling needs the [collect] extra ({exc.name} is missing): "
                          "pip install 'rewardlab[collect]'") from None  # fmt: skip


def uncertain_first(data: str, model: str) -> Callable[[list[tuple[int, dict]]], list[tuple[int, dict]]]:
    """Reorders a data file's rows so the items ``model`` is least sure about come first (the criterion of
    ``rewardlab select``: an ensemble's spread, else the smallest margin)."""
    from rewardlab.config.schema import ScoreConfig
    from rewardlab.recipes.score import load_scorer
    from rewardlab.recipes.select import criterion_of, read_pool, uncertainties

    def order(rows: list[tuple[int, dict]]) -> list[tuple[int, dict]]:
        items = read_pool(data)
        scorer = load_scorer(ScoreConfig(model=model))
        by_row = {it.row: u for it, u in zip(items, uncertainties(scorer, items))}
        logger.info("%s: %d items ordered by %s under %s", data, len(by_row), criterion_of(scorer), model)
        return sorted(rows, key=lambda r: -by_row.get(r[0], float("-inf")))  # stable: ties keep file order

    return order


def load_items(db: str, data: str | None, seed: int = 0, order: Callable[[list], list] | None = None) -> Any:
    """The label store of ``db`` with ``data``'s rows added (``order``: how to order rows not yet in the store;
    items are served in the order they were added)."""
    from rewardlab.collection.label_store import LabelStore
    from rewardlab.config.schema import DataSource
    from rewardlab.data.readers import iter_rows

    rows = list(iter_rows(DataSource(path=data))) if data else []  # read (and checked) before the store is touched
    if rows and order is not None:
        rows = order(rows)
    created = not Path(db).exists()
    store = LabelStore(db)
    if rows:
        try:
            added = store.add_rows(rows, data or "", seed)
        except BaseException:
            if created:  # no usable rows: leave no empty database behind
                store.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(db + suffix).unlink(missing_ok=True)
            raise
        logger.info("%s: %d new items (%d rows)", db, added, len(rows))
    return store


def run_label(data: str | None, db: str, *, host: str = "127.0.0.1", port: int = 8080, per_item: int = 1,
              token_env: str | None = None, on_listening: Callable[[str], None] | None = None,
              order_model: str | None = None) -> None:  # fmt: skip
    """Serve the labeling app. ``order_model``: a reward model whose least certain items are served first."""
    check_label_dependencies()
    import uvicorn

    from rewardlab.collection.label_app import create_label_app, token_from_env

    if data is None and not Path(db).is_file():
        raise ConfigError(f"{db} does not exist yet: give the data to label (rewardlab label DATA --db {db})")
    token = token_from_env(token_env)
    order = uncertain_first(data, order_model) if data and order_model else None
    store = load_items(db, data, order=order)
    image_root = str(Path(data).resolve().parent) if data else None
    app = create_label_app(store, per_item=per_item, image_root=image_root, token=token)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    sock = config.bind_socket()
    if on_listening is not None:
        h, p = sock.getsockname()[:2]
        on_listening(f"http://{h}:{p}/" + (f"?token={token}" if token else ""))
    uvicorn.Server(config).run(sockets=[sock])


def run_to_label_studio(data: str, db: str, out_dir: str, ranking: Ranking = "order") -> LabelStudioTasks:
    """The items of ``data`` (loaded into ``db``) as Label Studio projects in ``out_dir``: a
    :class:`~rewardlab.collection.label_studio.LabelStudioTasks`. ``ranking``: ``order`` or ``buckets``."""
    from rewardlab.collection.label_studio import write_label_studio

    return write_label_studio(load_items(db, data).all_items(), out_dir, ranking)


def run_from_label_studio(export: str, out: str) -> dict[str, Any]:
    """Label Studio's JSON export → pairs at ``out`` and ranked groups beside it (as ``label export`` writes them);
    returns the summary: ``files``, ``records`` and the reader's ``counts`` (annotations left out included)."""
    from rewardlab.collection.label_studio import import_label_studio

    return import_label_studio(export, out)


def run_label_export(db: str, out: str) -> dict[str, Any]:
    from rewardlab.collection.label_export import export_labels
    from rewardlab.collection.label_store import LabelStore

    if not Path(db).is_file():
        raise ConfigError(f"{db}: no such label database")
    return export_labels(LabelStore(db), out)
