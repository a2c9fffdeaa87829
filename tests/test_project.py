"""Project hygiene: layers, cheap import, shipped configs, and the README's commands."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rewardlab.config import TrainConfig, load_config
from rewardlab.config.schema import EvalConfig
from rewardlab.training.arguments import check_training_keys

REPO = Path(__file__).resolve().parents[1]


def test_import_rewardlab_does_not_import_torch():
    code = "import sys, rewardlab, rewardlab.config, rewardlab.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_layers_contract_holds():
    pytest.importorskip("importlinter")
    proc = subprocess.run(
        [sys.executable, "-m", "importlinter.cli", "--config", str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr:
        proc = subprocess.run(["lint-imports"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    text = path.read_text()
    assert text.startswith("#") and "rewardlab" in text.splitlines()[0], "each config starts with its command"
    if "rewardlab eval" in text.splitlines()[0]:
        load_config(EvalConfig, path)
        return
    if " rl " in text.splitlines()[0]:
        from rewardlab.config.schema import RLConfig
        from rewardlab.rl.trainer import trl_config_class

        rl = load_config(RLConfig, path)
        check_training_keys(rl.training, trl_config_class(rl.algorithm))
        return
    cfg = load_config(TrainConfig, path)
    check_training_keys(cfg.training)


def test_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b)
    # CI has made and activated its own venv; the rest of the command is the same.
    assert test_cmd.split("&& ", 2)[2] in ci
    assert any(b.endswith("rewardlab demo") for b in blocks)
