"""Servers for tests: a real uvicorn on 127.0.0.1 and an ephemeral port, in this process (a thread) or in a
``rewardlab serve`` subprocess. Every wait is a hang guard of minutes, never a speed requirement."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HANG_GUARD_S = 300.0


class AppServer:
    """Any ASGI ``app`` served by uvicorn in a thread on 127.0.0.1 and an ephemeral port; ``url`` once started;
    ``stop()`` shuts it down gracefully (in-flight requests finish)."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_config=None, log_level="warning")
        self.sock = config.bind_socket()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + HANG_GUARD_S
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(HANG_GUARD_S)
        assert not self.thread.is_alive(), "the server did not stop"


class ThreadServer(AppServer):
    """``create_app(scorer, cfg)`` (the scoring server) in a thread."""

    def __init__(self, scorer: Any, **settings: Any):
        from rewardlab.config.schema import ServeConfig
        from rewardlab.serving.app import create_app

        self.cfg = ServeConfig(model="test-model", port=0, **settings)
        super().__init__(create_app(scorer, self.cfg, name="test-model"))


class ServeProcess:
    """``rewardlab serve`` in a subprocess (one torch thread, so it shares the machine with the test); reads the
    URL it prints; ``stop()`` sends SIGTERM and returns the exit code."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, log: Path | None = None):
        self.log_path = log
        environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
        self.stderr = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rewardlab.cli", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=environment,
        )
        self.url = self._read_url()

    def _read_url(self) -> str:
        found: list[str] = []

        def read() -> None:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                if m := re.search(r"listening on (http://\S+)", line):
                    found.append(m[1])
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(HANG_GUARD_S)
        if not found:
            self.proc.kill()
            raise AssertionError(f"rewardlab serve did not start (exit code {self.proc.poll()})")
        # The socket is bound when the URL is printed; the app accepts once the model's lifespan has started.
        import httpx

        deadline = time.monotonic() + HANG_GUARD_S
        while True:
            try:
                if httpx.get(found[0] + "/health", timeout=30).status_code == 200:
                    return found[0]
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "rewardlab serve did not become ready"
            time.sleep(0.1)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(HANG_GUARD_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            if self.log_path:
                self.stderr.close()
        return code

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(HANG_GUARD_S)


def metric(text: str, name: str) -> float:
    """The value of one Prometheus sample in ``/metrics`` text (``name`` with its labels, as printed)."""
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return float(values[name])


def train_tiny_rm(root: Path) -> Path:
    """A tiny trained text RM export with saved normalization statistics (``root/run/model``)."""
    from rewardlab.cli import main
    from tests.test_cli import write_config
    from tests.tiny import make_workspace

    make_workspace(root)
    cfg = write_config(root, "run", max_steps=10, save_strategy="no", eval_steps=10)
    assert main(["train", "--config", str(cfg)]) == 0
    return root / "run" / "model"
