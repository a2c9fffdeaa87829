"""Writing run outputs so that a reader never sees half a file (no torch: every layer may use it)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to a temporary sibling, flush it to disk and ``os.replace`` it onto ``path``; on any
    failure the temporary file is removed and ``path`` is left as it was. Creates missing parent folders; the
    file gets the usual permissions (the umask's), like any file the user writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
