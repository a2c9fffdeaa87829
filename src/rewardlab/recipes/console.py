"""Rich consoles shared by the CLI and the recipes' progress output (stdout for results, stderr for logs)."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@functools.cache
def stdout_console() -> Any:
    from rich.console import Console

    return Console()
