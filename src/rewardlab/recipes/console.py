"""Rich consoles shared by the CLI and the recipes' progress output (stdout for results, stderr for logs)."""

from __future__ import annotations

import functools
import sys
from typing import Any


@functools.cache
def stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@functools.cache
def stdout_console() -> Any:
    """Results: a terminal's width, but no cut at rich's 80 columns when written to a file or a pipe."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=FILE_WIDTH)


FILE_WIDTH = 400  # columns of a table written to a file: wide enough for every table rewardlab prints
