"""A run directory's life across crashes, resumes and concurrent runs (DESIGN.md §9, "never lose a run").

- :func:`check_output_dir`: an ``output_dir`` that is a file, or under a folder that cannot be written, fails
  before anything is loaded.
- :func:`run_lock`: one ``rewardlab train`` per directory (the second one exits 2 with who holds it).
- :func:`tidy_run_dir`: on start, restore what an interrupted save moved aside and remove staging debris.
- :func:`finished_run`: ``resume`` on a run that already finished with the same config does nothing.
- :func:`align_metrics`: ``metrics.jsonl`` holds one run's history — a resume cuts it back to the checkpoint's
  step (the replayed steps are logged again), a fresh run starts it over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import yaml

from rewardlab.config import dump_config
from rewardlab.data.files import RunLock, atomic_write_text, remove_debris
from rewardlab.errors import ConfigError, ModelError, OutputError
from rewardlab.models.export_meta import ExportMeta

logger = logging.getLogger(__name__)


def check_output_dir(run_dir: Path) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"output_dir {run_dir} is a file, not a directory; choose another output_dir")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output_dir {run_dir}: {existing} is not writable; choose a writable output_dir")


def is_main_process() -> bool:
    """Rank 0 of a torchrun/accelerate job, or a single process: the one that owns the run directory."""
    return int(os.environ.get("RANK", "0")) == 0


def run_lock(run_dir: Path) -> contextlib.AbstractContextManager[Any]:
    """The run's lock, taken by the main process only (the other ranks of a torchrun job share its run)."""
    return RunLock(run_dir) if is_main_process() else contextlib.nullcontext()


def tidy_run_dir(run_dir: Path) -> None:
    if run_dir.is_dir() and is_main_process():
        for done in remove_debris(run_dir):
            logger.warning("%s", done)


def finished_run(run_dir: Path, cfg: Any) -> dict[str, Any] | None:
    """``results.json`` of a run that finished with this very config and still has the export it describes (same
    export id), else None. Where the run directory is (``output_dir``) does not count: a run moved or copied
    elsewhere is the same finished run. Results of another export (a crash after the export, before results.json was
    rewritten) are stale: resume then evaluates the export again."""
    results, config, model = run_dir / "results.json", run_dir / "config.yaml", run_dir / "model"
    if not (results.is_file() and config.is_file() and (model / "rewardlab.json").is_file()):
        return None
    try:
        saved = yaml.safe_load(config.read_text(encoding="utf-8"))
        done = json.loads(results.read_text(encoding="utf-8"))
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    current = yaml.safe_load(dump_config(cfg.recorded()))
    ignored = {"resume": None, "tune": None, "output_dir": None}  # none changes what `train` does
    if not isinstance(saved, dict) or {**saved, **ignored} != {**current, **ignored}:
        return None  # another config (e.g. more steps): resume trains on
    try:
        export_id = ExportMeta.read(model).export_id
    except ModelError:
        return None
    if not isinstance(done, dict) or done.get("export_id") != export_id:
        logger.warning("%s describes another export than %s; evaluating it again", results, model)
        return None
    return done


def align_metrics(run_dir: Path, resume_from: str | None) -> None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file() or not is_main_process():
        return
    if resume_from is None:
        logger.info("fresh run in %s: metrics.jsonl starts over", run_dir)
        atomic_write_text(path, "")
        return
    step = checkpoint_step(Path(resume_from))
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
    if len(kept) != len(lines):
        logger.info("resume: metrics.jsonl cut back to step %d (%d later lines dropped)", step, len(lines) - len(kept))
        atomic_write_text(path, "".join(kept))


def step_in_name(path: Path) -> int | None:
    """The step a checkpoint's name ends with (``checkpoint-120`` → 120), or None."""
    match = re.search(r"(\d+)$", path.name)
    return int(match.group(1)) if match else None


def checkpoint_step(checkpoint: Path) -> int:
    """The step a checkpoint holds: its ``trainer_state.json``'s, else the one in its name, else 0."""
    try:
        return int(json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError):
        return step_in_name(checkpoint) or 0


def _logged_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def resolve_resume(cfg: Any) -> str | None:
    """``resume: true`` → last complete checkpoint in output_dir (None if there is none yet); a path → itself."""
    from transformers.trainer_utils import get_last_checkpoint

    if cfg.resume is False:
        return None
    if isinstance(cfg.resume, str):
        if not Path(cfg.resume).is_dir():
            raise ConfigError(f"resume: checkpoint directory {cfg.resume} not found")
        return cfg.resume
    out = Path(cfg.output_dir)
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    if last is None:
        logger.info("resume: no checkpoint in %s yet, starting from scratch", out)
    else:
        logger.info("resume: continuing from %s (step %d)", last, checkpoint_step(Path(last)))
    return last
