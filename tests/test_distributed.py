"""Multi-process training through the existing engines (torchrun + DDP, DeepSpeed ZeRO-2) on 2 CPU ranks.

At equal global batch the loss curve must be the one of a single process: same data order (the sampler
groups by the global batch), same mean loss, same averaged gradients.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rewardlab.data.synthetic import make_pairs
from tests.tiny import make_tiny, pair_rows, write_jsonl

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    make_tiny(root / "base")
    write_jsonl(root / "train.jsonl", pair_rows(make_pairs(96, seed=1)))
    cfg = {
        "output_dir": str(root / "single"),
        "data": {"train": str(root / "train.jsonl"), "max_length": 96},
        "model": {"name_or_path": str(root / "base")},
        "training": {
            "per_device_train_batch_size": 8,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "max_steps": 8,
            "save_strategy": "no",
            "use_cpu": True,
        },
    }
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    run(root, [sys.executable, "-m", "rewardlab.cli"], [])
    return root


def run(root: Path, launcher: list[str], overrides: list[str]) -> None:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(root / "torch_extensions"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*launcher, "train", "--config", str(root / "c.yaml"), *overrides],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=1800,  # hang guard
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


TORCHRUN = [
    sys.executable,
    "-m",
    "torch.distributed.run",
    "--standalone",
    "--nproc_per_node",
    "2",
    "-m",
    "rewardlab.cli",
]


def test_torchrun_two_ranks_match_one_process(setup):
    run(setup, TORCHRUN, [f"output_dir={setup / 'ddp'}", "training.per_device_train_batch_size=4"])
    assert json.loads((setup / "ddp" / "env.json").read_text())["world_size"] == 2
    single, ddp = losses(setup / "single"), losses(setup / "ddp")
    assert len(single) == 8
    assert ddp == pytest.approx(single, rel=1e-4)
    assert single[-1] < single[0]


@pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed (rewardlab[deepspeed])"
)
def test_deepspeed_zero2_two_ranks_match_one_process(setup):
    zero2 = REPO / "configs" / "deepspeed" / "zero2.json"
    run(
        setup,
        TORCHRUN,
        [
            f"output_dir={setup / 'ds'}",
            "training.per_device_train_batch_size=4",
            f"training.deepspeed={zero2}",
            "training.save_strategy=steps",
            "training.save_steps=8",
        ],
    )
    assert losses(setup / "ds") == pytest.approx(losses(setup / "single"), rel=1e-4)
    assert (setup / "ds" / "checkpoint-8" / "model.safetensors").is_file()
    assert (setup / "ds" / "model" / "rewardlab.json").is_file()
