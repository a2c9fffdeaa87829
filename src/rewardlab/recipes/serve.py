"""``rewardlab serve``: load a model once, then serve it over HTTP with uvicorn until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from rewardlab.config.schema import ServeConfig
from rewardlab.errors import ConfigError

logger = logging.getLogger(__name__)


def check_serve_dependencies() -> None:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"serving needs the [serve] extra ({exc.name} is missing): pip install 'rewardlab[serve]'"
                          ) from None  # fmt: skip


def run_serve(cfg: ServeConfig, on_listening: Callable[[str], None] | None = None) -> None:
    """Serve ``cfg.model`` on ``cfg.host:cfg.port``; ``on_listening(url)`` is called once the socket is bound
    (with ``port=0`` the URL has the port chosen). Returns once the server has shut down (in-flight requests get
    ``graceful_shutdown_s`` to finish)."""
    check_serve_dependencies()
    import uvicorn

    from rewardlab.judges.spec import is_judge
    from rewardlab.models.scorer import Scorer
    from rewardlab.serving.app import api_key_from_env, create_app

    api_key_from_env(cfg)  # fail before the model loads
    if cfg.image_root is not None and not Path(cfg.image_root).is_dir():
        raise ConfigError(f"image_root={cfg.image_root}: no such folder")
    if is_judge(cfg.model):
        from rewardlab.judges.scoring import load_judge_scorer
        from rewardlab.serving.judge_app import create_judge_app

        app = create_judge_app(load_judge_scorer(cfg.model, cfg), cfg)
    else:
        scorer = Scorer.from_pretrained(cfg.model, cfg.scoring())
        app = create_app(scorer, cfg, name=cfg.name or Path(os.path.normpath(cfg.model)).name)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: the server is reachable from the network%s", cfg.host,
                       "" if cfg.api_key_env else "; consider api_key_env=VAR to require a key")  # fmt: skip
    config = uvicorn.Config(
        app,
        host=cfg.host,
        port=cfg.port,
        log_config=None,  # rewardlab's logging
        access_log=cfg.access_log,  # a line per request (method, path, status; never the body): off by default
        timeout_graceful_shutdown=cfg.graceful_shutdown_s,
    )
    try:
        sock = config.bind_socket()
    except SystemExit:  # uvicorn logs the reason (address in use, permission) and exits
        raise ConfigError(f"cannot bind {cfg.host}:{cfg.port} (in use, or not an address of this machine); choose "
                          "another --port or --host") from None  # fmt: skip
    host, port = sock.getsockname()[:2]
    if on_listening is not None:
        on_listening(f"http://{'[' + host + ']' if ':' in host else host}:{port}")
    # uvicorn drains in-flight requests on SIGTERM/SIGINT, then raises the signal again for the handler it found;
    # ours makes that a clean exit (code 0) instead of death by signal.
    stopped_by: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: stopped_by.append(number))
    uvicorn.Server(config).run(sockets=[sock])
    if stopped_by:
        logger.info("stopped by %s after finishing in-flight requests", signal.Signals(stopped_by[0]).name)
