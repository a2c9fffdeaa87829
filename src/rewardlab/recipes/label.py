"""``rewardlab label DATA --db labels.sqlite``: load items into the store and serve the labeling app;
``rewardlab label export --db labels.sqlite --out prefs.jsonl``: labels → pairs / ranked groups + agreement."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rewardlab.errors import ConfigError

logger = logging.getLogger(__name__)


def check_label_dependencies() -> None:
    try:
        import fastapi  # noqa: F401
        import jinja2  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"labeling needs the [collect] extra ({exc.name} is missing): "
                          "pip install 'rewardlab[collect]'") from None  # fmt: skip


def load_items(db: str, data: str | None, seed: int = 0) -> Any:
    from rewardlab.collection.label_store import LabelStore
    from rewardlab.config.schema import DataSource
    from rewardlab.data.readers import iter_rows

    rows = list(iter_rows(DataSource(path=data))) if data else []  # read (and checked) before the store is touched
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
              token_env: str | None = None, on_listening: Callable[[str], None] | None = None) -> None:  # fmt: skip
    check_label_dependencies()
    import uvicorn

    from rewardlab.collection.label_app import create_label_app, token_from_env

    if data is None and not Path(db).is_file():
        raise ConfigError(f"{db} does not exist yet: give the data to label (rewardlab label DATA --db {db})")
    token = token_from_env(token_env)
    store = load_items(db, data)
    image_root = str(Path(data).resolve().parent) if data else None
    app = create_label_app(store, per_item=per_item, image_root=image_root, token=token)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False)
    sock = config.bind_socket()
    if on_listening is not None:
        h, p = sock.getsockname()[:2]
        on_listening(f"http://{h}:{p}/" + (f"?token={token}" if token else ""))
    uvicorn.Server(config).run(sockets=[sock])


def run_to_label_studio(data: str, db: str, out_dir: str) -> list[Path]:
    from rewardlab.collection.label_studio import write_label_studio

    return write_label_studio(load_items(db, data).all_items(), out_dir)


def run_label_export(db: str, out: str) -> dict[str, Any]:
    from rewardlab.collection.label_export import export_labels
    from rewardlab.collection.label_store import LabelStore

    if not Path(db).is_file():
        raise ConfigError(f"{db}: no such label database")
    return export_labels(LabelStore(db), out)
