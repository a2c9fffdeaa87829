"""Writing run outputs so that a reader never sees half a file or half a directory, and a crash never loses the
last complete one (no torch: every layer may use it).

- :func:`atomic_write_text`: a file, written beside its target and renamed onto it.
- :func:`atomic_directory`: a directory (an export, a checkpoint) staged beside its target, then swapped in by
  :func:`swap_directory`. The swap is two renames; a crash between them leaves the old and the new copy under
  names that share one id, and :func:`recover_directory` (run on the next start) puts the complete one back.
- :func:`output_errors`: out of disk space (or over a file-size limit) while writing becomes one clear
  :class:`~rewardlab.errors.OutputError` naming the path, the staging copy removed and the previous one intact.
- :class:`RunLock`: one writer per run directory.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from rewardlab.errors import OutputError

logger = logging.getLogger(__name__)

# errno values that mean "the disk (or a quota, or a file-size limit) is full", and what torch.save says instead.
_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_WORDS = ("unexpected pos", "file write failed", "no space left", "file too large", "os error 28", "os error 27")


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to a temporary sibling, flush it to disk and ``os.replace`` it onto ``path``; on any
    failure the temporary file is removed and ``path`` is left as it was. Creates missing parent folders; the
    file gets the usual permissions (the umask's), like any file the user writes."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a directory; give the path of a file to write")
    with output_errors(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with output_errors(path), tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC/EFBIG/EDQUOT, or how torch.save ("unexpected pos") and safetensors ("os error 28") report them."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    return not isinstance(exc, OSError) and any(w in str(exc).lower() for w in _FULL_WORDS)


@contextlib.contextmanager
def output_errors(target: str | os.PathLike[str]) -> Iterator[None]:
    """Turn "disk full" and "permission denied" while writing ``target`` into an :class:`OutputError`."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc):
            raise OutputError(
                f"no space left on device while writing {target} ({exc}); free some space (or raise the file-size "
                "limit) and run again — the previous copy, if any, is intact"
            ) from None
        if isinstance(exc, PermissionError):
            raise OutputError(f"cannot write {target}: permission denied; choose a writable location") from None
        raise


def swap_directory(staging: Path, target: Path) -> None:
    """Put the complete directory ``staging`` (``.NAME.tmp-ID`` beside ``target``) in place of ``target``: the old
    ``target`` becomes ``.NAME.old-ID`` (same ID), ``staging`` becomes ``target``, the old copy is removed."""
    ident = staging.name.rsplit("-", 1)[-1]
    old = target.parent / f".{target.name}.old-{ident}"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh staging directory beside ``target``; on success it replaces ``target`` (:func:`swap_directory`).

    A crash or an exception leaves ``target`` as it was (old content or absent) and removes the staging dir; running
    out of disk space is an :class:`OutputError` naming ``target``.
    """
    target = Path(target)
    with output_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
    try:
        with output_errors(target):
            yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    swap_directory(staging, target)


def recover_directory(target: str | os.PathLike[str]) -> str | None:
    """Finish a swap that a crash interrupted: when ``target`` is missing, put back the new copy if its old one
    was already moved aside (it is complete: the old one moves only after the new one is written), else the old
    copy. Returns what was done, or None. Leftovers are not removed here (see :func:`remove_debris`)."""
    target = Path(target)
    if target.exists():
        return None
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in olds:
        new = target.parent / f".{target.name}.tmp-{old.name.rsplit('-', 1)[-1]}"
        chosen = new if new.is_dir() else old
        chosen.rename(target)
        return f"restored {target} from {'the new' if chosen is new else 'the previous'} copy an interrupted save left"
    return None


def remove_debris(directory: Path) -> list[str]:
    """Restore every target an interrupted swap left missing (:func:`recover_directory`), then remove what
    interrupted writes left in ``directory`` (``.*.tmp-*``, ``.*.old-*``, ``.staging``). Returns what was done.
    Only for the holder of the run's lock: another process may be writing its staging copy right now."""
    debris = [p for p in directory.glob(".*") if ".tmp-" in p.name or ".old-" in p.name or p.name == ".staging"]
    moved_aside = {p.name[1:].rsplit(".old-", 1)[0] for p in debris if ".old-" in p.name}
    done = [msg for name in sorted(moved_aside) if (msg := recover_directory(directory / name))]
    for path in debris:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path}")
        elif path.exists():
            path.unlink(missing_ok=True)
            done.append(f"removed {path}")
    return done


class RunLock:
    """An exclusive lock on a run directory, held for the whole run: ``.NAME.lock`` beside it (so taking it creates
    nothing inside). The OS releases it when the holder dies, so a stale lock file never blocks a new run."""

    def __init__(self, run_dir: str | os.PathLike[str]):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir.parent / f".{self.run_dir.name}.lock"
        self._file = None

    def __enter__(self) -> RunLock:
        import fcntl

        with output_errors(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            f = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise OutputError(
                f"{self.run_dir} is in use by another run ({holder}); wait for it to finish or choose another "
                "output_dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the lock
            self._file = None


def cut_unfinished_line(path: Path) -> bytes:
    """The contents of the append-only JSONL ``path`` after cutting off an unfinished last line (a crash
    mid-write), which is removed from the file too; ``b""`` when there is no file."""
    if not path.is_file():
        return b""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        logger.warning("%s: cutting off an unfinished last line (%d bytes)", path, len(data) - keep)
        with path.open("r+b") as f:
            f.truncate(keep)
        data = data[:keep]
    return data
