"""What every run leaves in its directory besides checkpoints: ``config.yaml`` and ``env.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rewardlab.config import dump_config
from rewardlab.data.files import atomic_write_text

PACKAGES = ("rewardlab", "torch", "transformers", "peft", "accelerate", "datasets", "deepspeed", "trl")


def environment() -> dict[str, Any]:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cuda_devices": torch.cuda.device_count(),
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
        "git_commit": _git_commit(),
        "versions": versions,
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_run_record(run_dir: Path, cfg: BaseModel, training_args: Any = None) -> None:
    """``config.yaml`` (the resolved config), ``env.json`` and, for training, ``training_args.json``: every
    ``TrainingArguments`` value the run used, defaults included."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    atomic_write_text(run_dir / "env.json", json.dumps(environment(), indent=2))
    if training_args is not None:
        atomic_write_text(run_dir / "training_args.json", training_args.to_json_string())
