"""The training benchmark (bench/bench_train.py) runs end to end on a tiny model and reports both sides."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "bench_train.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed (pip install -e .[bench])")
def test_quick_benchmark_reports_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE},
        timeout=1800,  # a hang guard: a loaded 2-core machine runs this many times slower than an idle one
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "| rewardlab/TRL |" in proc.stdout

    res = json.loads(out.read_text(encoding="utf-8"))
    assert set(res["sides"]) == {"rewardlab", "rewardlab_plain", "trl"}
    for side, r in res["sides"].items():
        assert r["pairs_per_s"] > 0, side
        assert r["tokens_per_s"] > 0, side
        assert 0 <= r["padding_fraction"] < 1, side
        assert r["peak_rss_mib"] > 0, side
        assert r["timed_steps"] == res["settings"]["steps"] - res["settings"]["warmup"], side
        # tokens/s counts the pairs' real tokens; tokens computed are fewer where a pair's prompt is computed once.
        assert r["tokens_per_s"] == pytest.approx(r["pairs_per_s"] * r["real_tokens_per_pair"]), side
        assert r["computed_tokens_per_s"] == pytest.approx(r["pairs_per_s"] * r["computed_tokens_per_pair"]), side
        assert 0 < r["mfu"] < 1, side
    # Same pairs, same tokens; prompt sharing computes each pair's prompt once, the other two compute it twice.
    ours, plain, trl = (res["sides"][k] for k in ("rewardlab", "rewardlab_plain", "trl"))
    assert ours["real_tokens_per_pair"] == plain["real_tokens_per_pair"]
    assert plain["computed_tokens_per_pair"] == plain["real_tokens_per_pair"]
    assert trl["computed_tokens_per_pair"] == trl["real_tokens_per_pair"]
    shared_prompt = res["data"]["prompt_tokens"]["mean"]
    assert ours["computed_tokens_per_pair"] < plain["computed_tokens_per_pair"] - 0.5 * shared_prompt
    assert {"pairs_per_s", "tokens_per_s", "padding_fraction", "peak_rss_mib"} <= set(res["ratios"])
    ratio = res["sides"]["rewardlab"]["pairs_per_s"] / res["sides"]["trl"]["pairs_per_s"]
    assert res["ratios"]["pairs_per_s"] == pytest.approx(ratio, abs=1e-3)
    assert res["ratios_plain"]["computed_tokens_per_pair"] == pytest.approx(
        plain["computed_tokens_per_pair"] / trl["computed_tokens_per_pair"], abs=1e-3
    )
    # Same settings on both sides; the ones TRL defaults otherwise are listed with its default.
    forced = res["trl_forced_equal"]
    assert forced["activation_checkpointing"] == {"trl_default": True, "used": False}
    assert forced["bf16"]["used"] is False and forced["max_length"]["used"] == res["settings"]["max_length"]
    assert res["sides"]["rewardlab"]["args"]["learning_rate"] == res["sides"]["trl"]["args"]["learning_rate"]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="trl is not installed (pip install -e .[bench])")
def test_quality_benchmark_quick_run_scores_both_sides(tmp_path: Path) -> None:
    """bench_quality.py --quick: TRL and two rewardlab variants train on one half of generated pairs and are scored
    on the other; accuracies, standard errors and length baselines are consistent with the per-run counts."""
    out = tmp_path / "q.json"
    script = SCRIPT.parent / "bench_quality.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--variants", "default", "keep_dropout", "--out", str(out),
         "--work", str(tmp_path / "work")],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=1800,  # a hang guard
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert set(res["summary"]) == {"TRL RewardTrainer", "rewardlab default", "rewardlab keep_dropout"}
    for run in res["runs"]:
        assert run["metrics"]["n"] == 48 and 0 <= run["metrics"]["correct"] <= 48
    for row in res["summary"].values():
        p = row["accuracy"]
        assert p == pytest.approx(row["correct"] / row["n"]) and row["stderr"] == pytest.approx(
            (p * (1 - p) / 48) ** 0.5
        )
        assert row["accuracy"] > 0.6  # the generated pairs are easy: both learn
    assert res["baselines"]["shorter_wins"] + res["baselines"]["longer_wins"] == pytest.approx(1.0)
    assert "| baseline: shorter wins |" in proc.stdout


def test_quality_benchmark_combines_result_files_into_one_paired_summary(tmp_path: Path) -> None:
    """bench_quality.py --combine: runs from separate result files are summarized together, paired to TRL by fold
    and seed; a run present in two files is taken from the later one; files of different protocols are refused."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "chosen": "a" * (1 + i % 3), "rejected": "bb"}) + "\n"
                            for i in range(12)), encoding="utf-8")  # fmt: skip

    def run(label: str, fold: str, seed: int, correct: float, shorter: int) -> dict:
        metrics = {"n": 10, "correct": correct, "prefers_shorter": shorter, "unequal": 8}
        return {"label": label, "fold": fold, "seed": seed, "metrics": metrics, "seconds": 1.0}

    def write(name: str, runs: list[dict], k: int = 2) -> str:
        path = tmp_path / name
        path.write_text(json.dumps({"settings": {"protocol": "kfold", "k": k}, "runs": runs}), encoding="utf-8")
        return str(path)

    trl, ours = "TRL RewardTrainer", "rewardlab default"
    first = write("a.json", [run(trl, "0", 0, 6, 4), run(trl, "1", 0, 7, 4), run(ours, "0", 0, 5, 6)])
    ensemble = {**run(ours, "0", None, 9, 1), "label": "rewardlab default, ensemble of 2 seeds"}
    second = write("b.json", [run(ours, "0", 0, 8, 2), run(ours, "1", 0, 8, 5), ensemble])
    out = tmp_path / "c.json"
    script = SCRIPT.parent / "bench_quality.py"
    cmd = [sys.executable, str(script), "--combine", first, second, "--data", str(data), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert set(res["summary"]) == {trl, ours}  # the ensemble row is not a run
    row = res["summary"][ours]
    assert row["correct"] == 16 and row["accuracy"] == pytest.approx(0.8)  # fold 0 from the later file (8, not 5)
    # Paired per fold: 0.8 - 0.6 and 0.8 - 0.7; shorter share 2/8 - 4/8 and 5/8 - 4/8.
    assert row["vs_trl"]["mean"] == pytest.approx(0.15) and row["vs_trl"]["stderr"] == pytest.approx(0.05)
    assert row["vs_trl"]["n"] == 2 and row["vs_trl"]["positive"] == 2
    assert row["shorter_vs_trl"]["mean"] == pytest.approx(-0.0625) and row["shorter_vs_trl"]["positive"] == 1
    assert res["summary"][trl]["vs_default"]["mean"] == pytest.approx(-0.15)  # the other reference: the default
    assert res["baselines"]["shorter_wins"] + res["baselines"]["longer_wins"] == pytest.approx(1.0)
    assert "| rewardlab default | 0.8000" in proc.stdout

    other = write("d.json", [run(trl, "0", 0, 6, 4)], k=5)
    proc = subprocess.run(cmd[:4] + [other, "--data", str(data)], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "different protocols" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(cmd[:4] + ["--data", str(tmp_path / "missing.jsonl")], capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode != 0 and "missing.jsonl" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("aiohttp") is None or importlib.util.find_spec("fastapi") is None,
    reason="the serving benchmark needs the [bench] extra (aiohttp, fastapi, uvicorn)",
)
def test_serving_benchmark_quick_run_reports_both_servers(tmp_path: Path) -> None:
    """bench_serve.py --quick: both servers answer every request of the same load; the ratios are computed from
    the rows printed."""
    out = tmp_path / "s.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_serve.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=1800,  # a hang guard
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert set(res["servers"]) == {"rewardlab", "one-by-one"}
    for name, r in res["servers"].items():
        assert r["requests"] > 0 and r["errors"] == 0, name
        assert r["items_per_s"] == pytest.approx(2 * r["requests_per_s"]) and r["p99_ms"] >= r["p50_ms"], name
    a, b = res["servers"]["rewardlab"], res["servers"]["one-by-one"]
    assert res["ratios"]["items_per_s"] == pytest.approx(a["items_per_s"] / b["items_per_s"])
    assert a["server"]["model_calls"] >= 1 and a["server"]["mean_batch"] >= 1
    assert "| rewardlab/one-by-one |" in proc.stdout


@pytest.mark.slow
def test_scoring_benchmark_runs_and_both_paths_agree() -> None:
    """bench_scoring.py: shared-prefix and one-row-per-response ranking give the same scores (the script checks)
    and it prints both timings and their ratio."""
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_scoring.py"), "--responses", "4", "--prompt-words", "40",
         "--repeats", "1", "--hidden", "32", "--layers", "2"],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=1800,  # a hang guard
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "prompt once (shared)" in proc.stdout and "ratio" in proc.stdout


@pytest.mark.slow
def test_gpu_benchmark_dry_run_records_every_part(tmp_path: Path) -> None:
    """bench/gpu/gpu_bench.py --dry: the GPU script's code at tiny sizes on the CPU. Every part and cell is recorded
    with a status; with a generous budget every cell runs, except those needing a package that is not installed
    (TRL; the serving stack), which are skipped with that reason. The numbers of the cells that ran are positive."""
    out = tmp_path / "gpu"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "gpu" / "gpu_bench.py"), "--dry", "--budget", "1500", "--out", str(out)],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=1800,  # a hang guard
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    res = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(res["parts"]) == {"train", "exact", "serve", "vision"}
    has = {name: importlib.util.find_spec(name) is not None for name in ("trl", "fastapi", "uvicorn", "aiohttp")}
    for name, part in res["parts"].items():
        assert part["status"] in ("ok", "partial"), (name, part.get("log_tail"))
        for cell in part["cells"]:
            needs_trl = cell.get("side") == "trl"
            needs_serving = cell["cell"] == "serve"
            if cell["status"] == "skipped" and "not installed" in cell["reason"]:
                assert (needs_trl and not has["trl"]) or (needs_serving and not all(has.values())), cell
                continue
            if cell["status"] == "skipped" and cell["reason"].startswith("needs CUDA"):  # flex training on the CPU
                assert cell.get("attention") == "flex_attention" and res["settings"]["device"] == "cpu", cell
                continue
            assert cell["status"] == "ok", (name, cell)
    cells = {(name, c["cell"]): c for name, part in res["parts"].items() for c in part["cells"] if c["status"] == "ok"}
    train = [c for (name, _), c in cells.items() if name == "train"]
    assert len(train) >= 10
    for c in train:
        assert c["pairs_per_s"] > 0 and c["tokens_per_s"] > 0 and 0 < c["mfu"] < 1, c
        # A shared prompt is computed once: fewer tokens computed than the pair holds.
        assert (c["computed_tokens_per_pair"] < c["real_tokens_per_pair"]) == (c["side"] == "rewardlab" and c["share"])
    assert cells["exact", "scores-float32"]["within"] and cells["exact", "losses-float32"]["within"]
    assert len(cells["exact", "losses-float32"]["losses_shared"]) == 4
    assert cells["serve", "rank16"]["items_per_s"] > 0 and cells["serve", "rank16"]["ratio"] > 0
    if ("serve", "serve") in cells:
        assert cells["serve", "serve"]["rewardlab"]["errors"] == 0 and cells["serve", "serve"]["ratio"] > 0
    for family in ("qwen2_5_vl", "llava"):
        assert cells["vision", family]["s_once"] > 0 and cells["vision", family]["speedup"] > 0
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "## train: ok" in markdown and "| qwen3-0.6b-1k-share |" in markdown


@pytest.mark.slow
def test_active_labeling_benchmark_quick_run_reports_every_strategy(tmp_path: Path) -> None:
    """bench_active.py --quick: the S0 ensemble selects through `rewardlab select`, each strategy's model trains on
    S0 + its picks and is scored on the test half; the report has every strategy with its difference to random."""
    out, md = tmp_path / "a.json", tmp_path / "a.md"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_active.py"), "--quick", "--json", str(out), "--out", str(md),
         "--work", str(tmp_path / "work")],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=1800,  # a hang guard
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    assert res["pool"] + res["test"] == 160 and res["settings"]["sizes"] == [16]
    strategies = {(r["n"], r["strategy"]) for r in res["runs"]}
    assert {(16, "random"), (16, "spread"), (16, "margin"), (0, "S0 only")} <= strategies
    for run in res["runs"]:
        assert run["n_test"] == res["test"] and 0 <= run["accuracy"] <= 1
    picks = [
        json.loads((tmp_path / "work" / f"select-{c}-0.json").read_text())["pair_ids"] for c in ("spread", "margin")
    ]
    for ids in picks:
        assert len(ids) == 16 == len(set(ids))
    row = res["summary"]["16"]["margin"]
    assert row["vs_random"]["mean"] == pytest.approx(row["mean"] - res["summary"]["16"]["random"]["mean"])
    assert "| S0 + 16 spread |" in md.read_text(encoding="utf-8") and "vs random" in proc.stdout
