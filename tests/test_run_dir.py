"""Never lose a run: one train per run directory, exports and checkpoints that survive a crash between their
renames, resume that cuts the metrics back and leaves a finished run alone, and a full disk that says so."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.data.files import RunLock, recover_directory, remove_debris
from rewardlab.data.synthetic import make_pairs
from rewardlab.models.scorer import Scorer
from tests.test_cli import read_metrics, write_config
from tests.tiny import make_workspace, write_jsonl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("rundir"))


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], capture_output=True, text=True, env=env,
                          timeout=900, **kwargs)  # fmt: skip


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def test_a_second_run_on_a_locked_directory_exits_2_and_the_first_completes(workspace):
    cfg = write_config(workspace, "locked", max_steps=60, save_strategy="no", eval_strategy="no")
    run = workspace / "locked"
    first = subprocess.Popen([sys.executable, "-m", "rewardlab.cli", "train", "--config", str(cfg)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    lock = workspace / ".locked.lock"
    deadline = time.monotonic() + 600  # a hang guard, not a timing
    while f"pid {first.pid} " not in (lock.read_text() if lock.exists() else "") and first.poll() is None:
        assert time.monotonic() < deadline, "the first run never took the lock"
        time.sleep(0.05)
    second = cli("train", "--config", str(cfg))
    out, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-2000:]
    if second.returncode == 0:
        pytest.skip("the first run finished before the second started (an extremely fast machine)")
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"{run} is in use by another run (pid {first.pid} on" in second.stderr
    assert (run / "model" / "model.safetensors").is_file() and (run / "results.json").is_file()
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == list(range(5, 61, 5))  # one run's history
    # The holder is gone: its lock file is left behind but binds nobody (the OS released the lock).
    with RunLock(run):
        pass


def test_a_held_lock_names_its_holder(workspace):
    cfg = write_config(workspace, "held", max_steps=2)
    with RunLock(workspace / "held"):
        assert main(["train", "--config", str(cfg)]) == 2
    assert not (workspace / "held").exists(), "nothing written by the refused run"


def test_an_export_interrupted_between_its_renames_is_restored(workspace, tmp_path):
    cfg = write_config(workspace, "swap", max_steps=10, save_steps=10, eval_strategy="no")
    assert main(["train", "--config", str(cfg)]) == 0
    run, model = workspace / "swap", workspace / "swap" / "model"
    pairs = make_pairs(4, seed=9)
    want = Scorer.from_pretrained(str(model), device="cpu").score_pairs(pairs)
    # The state a kill -9 leaves after the first rename of a re-export: the complete new copy is staged, the
    # old one moved aside under the same id, no model/.
    new = run / ".model.tmp-0123abcd"
    subprocess.run(["cp", "-r", str(model), str(new)], check=True)
    model.rename(run / ".model.old-0123abcd")
    (run / ".model.tmp-deadbeef").mkdir()  # an older interrupted export's empty staging dir
    out = tmp_path / "scores.jsonl"
    rows = write_jsonl(tmp_path / "in.jsonl", [{"prompt": p.prompt, "response": p.chosen} for p in pairs])
    score = cli("score", "--model", str(model), "--input", str(rows), "--output", str(out))
    assert score.returncode == 0, score.stderr[-2000:]
    assert "restored" in score.stderr and model.is_dir()
    assert [json.loads(line)["score"] for line in out.read_text().splitlines()] == pytest.approx(want[0], abs=1e-5)
    # The next train start (which holds the lock) removes the debris.
    assert sorted(remove_debris(run)) == [
        f"removed {run / '.model.old-0123abcd'}",
        f"removed {run / '.model.tmp-deadbeef'}",
    ]


def test_recover_puts_back_the_old_copy_when_no_new_one_was_staged(tmp_path):
    target = tmp_path / "model"
    (tmp_path / ".model.old-aa").mkdir()
    (tmp_path / ".model.old-aa" / "w").write_text("old")
    assert "previous" in recover_directory(target) and (target / "w").read_text() == "old"
    assert recover_directory(target) is None  # nothing to do when the target is there


def test_resume_of_a_finished_run_changes_nothing(workspace):
    cfg = write_config(workspace, "finished", max_steps=20)
    assert main(["train", "--config", str(cfg)]) == 0
    run = workspace / "finished"
    before = files_of(run / "model"), (run / "metrics.jsonl").read_bytes(), files_of(run / "checkpoint-20")
    assert main(["train", "--config", str(cfg), "resume=true"]) == 0
    assert (files_of(run / "model"), (run / "metrics.jsonl").read_bytes(), files_of(run / "checkpoint-20")) == before
    assert not (run / "checkpoint-21").exists()
    # Moved elsewhere (only output_dir differs from its saved config): still the same finished run.
    moved = shutil.copytree(run, workspace / "moved")
    assert main(["train", "--config", str(cfg), "resume=true", f"output_dir={moved}"]) == 0
    assert (
        files_of(moved / "model"),
        (moved / "metrics.jsonl").read_bytes(),
        files_of(moved / "checkpoint-20"),
    ) == before
    assert not (moved / "checkpoint-21").exists()


class Killed(BaseException):
    """What a kill -9 between the export's two renames leaves, raised where the process would have died."""


def test_results_of_an_export_interrupted_between_its_renames_are_evaluated_again(workspace, monkeypatch):
    from rewardlab.data import files

    cfg = write_config(workspace, "stale", max_steps=10, eval_strategy="no")
    assert main(["train", "--config", str(cfg)]) == 0
    run = workspace / "stale"
    first = json.loads((run / "results.json").read_text())
    assert first["export_id"] == json.loads((run / "model" / "rewardlab.json").read_text())["export_id"]
    assert f"export id `{first['export_id']}`" in (run / "report.md").read_text()

    def first_rename_only(staging: Path, target: Path) -> None:
        target.rename(target.parent / f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}")
        raise Killed

    # Twenty steps now; the process dies between the export's two renames, before results.json is written.
    cfg = write_config(workspace, "stale", max_steps=20, eval_strategy="no")
    with monkeypatch.context() as m:
        m.setattr(files, "swap_directory", first_rename_only)
        with pytest.raises(Killed):
            main(["train", "--config", str(cfg), "resume=true"])
    assert not (run / "model").exists() and json.loads((run / "results.json").read_text()) == first
    # The next start puts the new export back; results.json still describes the previous one, so resume evaluates
    # the export beside it (no training: the run is at max_steps).
    assert main(["train", "--config", str(cfg), "resume=true"]) == 0
    results = json.loads((run / "results.json").read_text())
    meta = json.loads((run / "model" / "rewardlab.json").read_text())
    assert results["global_step"] == 20 and results["export_id"] == meta["export_id"] != first["export_id"]
    assert f"export id `{meta['export_id']}`" in (run / "report.md").read_text()
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]
    # Now results and export agree: a further resume leaves both unchanged.
    before = files_of(run / "model"), (run / "results.json").read_bytes()
    assert main(["train", "--config", str(cfg), "resume=true"]) == 0
    assert (files_of(run / "model"), (run / "results.json").read_bytes()) == before


def test_resume_cuts_the_metrics_back_and_a_fresh_run_restarts_them(workspace, caplog):
    cfg = write_config(workspace, "crashed", max_steps=20)
    assert main(["train", "--config", str(cfg)]) == 0
    run = workspace / "crashed"
    # As if the process died after logging step 20 but before checkpoint-20 and the export were complete.
    subprocess.run(["rm", "-r", str(run / "checkpoint-20"), str(run / "model"), str(run / "results.json")], check=True)
    with caplog.at_level("INFO"):
        assert main(["train", "--config", str(cfg), "resume=true"]) == 0
    assert f"resume: continuing from {run / 'checkpoint-10'} (step 10)" in caplog.text
    rows = read_metrics(run)
    assert [r["step"] for r in rows if "loss" in r] == [5, 10, 15, 20]  # the replayed steps once
    assert [r["step"] for r in rows if "eval_accuracy" in r] == [10, 20]
    assert main(["train", "--config", str(cfg), "training.max_steps=5", "training.eval_strategy=no"]) == 0
    assert [r["step"] for r in read_metrics(run) if "loss" in r] == [5]


def limit_file_size(max_bytes: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return apply


def test_out_of_disk_during_export_says_so_and_keeps_the_previous_export(workspace):
    cfg = write_config(workspace, "full", max_steps=4, save_strategy="no", eval_strategy="no")
    assert main(["train", "--config", str(cfg)]) == 0
    model = workspace / "full" / "model"
    before = files_of(model)
    weights = (model / "model.safetensors").stat().st_size
    # Every file but the weights fits under the limit: the export is the write that runs out of space.
    run = cli("train", "--config", str(cfg), preexec_fn=limit_file_size(weights // 2))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"no space left on device while writing {model}" in run.stderr
    assert files_of(model) == before
    assert not [p for p in model.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_out_of_disk_during_a_checkpoint(workspace):
    cfg = write_config(workspace, "fullckpt", max_steps=10, save_steps=10, eval_strategy="no")
    run = cli("train", "--config", str(cfg), preexec_fn=limit_file_size(64_000))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"no space left on device while writing {workspace / 'fullckpt' / 'checkpoint-10'}" in run.stderr
    assert not (workspace / "fullckpt" / "checkpoint-10").exists()
    assert not (workspace / "fullckpt" / ".staging").exists()


def test_output_dir_that_is_a_file(workspace):
    (workspace / "afile").write_text("x")
    cfg = write_config(workspace, "afile_cfg", max_steps=2)
    assert main(["train", "--config", str(cfg), f"output_dir={workspace / 'afile'}"]) == 2
