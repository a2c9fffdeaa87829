"""rewardlab on one GPU, in one command: training at real shapes (vs TRL), exactness of prompt sharing on CUDA,
scoring and serving, vision. See README.md beside this file.

    python bench/gpu/gpu_bench.py --out DIR            # on a GPU machine (run.sh does this, ~7 minutes)
    python bench/gpu/gpu_bench.py --dry --out DIR      # the same code on a CPU at tiny sizes, about a minute

Each part runs in its own process with a time limit (its process group is killed at the limit); ``results.json``
and ``results.md`` in DIR are rewritten while parts run, so a part that fails or times out loses nothing else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# bench_train, bench_scoring, bench_serve and bench_vision are imported from here (they are scripts, not a package).
sys.path[:0] = [str(HERE), str(HERE.parent)]

# Seconds each part may take at most (train first: it answers the most); a part also stops at the overall limit.
# A --budget other than the default scales them (a slow machine's --dry can be given more time).
CAPS = {"train": 170, "exact": 60, "serve": 75, "vision": 70}
DRY_CAPS = {"train": 60, "exact": 40, "serve": 40, "vision": 30}
BUDGET_S = {False: 390.0, True: 170.0}
# A part starts no cell that would not end this many seconds before its limit (cells' time estimates are rough).
GRACE_S = {False: 10, True: 3}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("gpu-results"), help="Folder for results.json, results.md, logs.")
    p.add_argument("--dry", action="store_true", help="Tiny sizes on the CPU: checks that every part runs.")
    p.add_argument("--device", default=None, help="Default: cuda when there is a GPU (cpu with --dry).")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="Overall seconds (default 390; --dry 170); scales each part's limit too.",
    )
    p.add_argument("--parts", default=",".join(CAPS), help="Comma-separated subset of train,exact,serve,vision.")
    p.add_argument("--part", choices=list(CAPS), help=argparse.SUPPRESS)  # internal: run one part
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--part-budget", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.dry else "cpu"
    args.budget = args.budget or BUDGET_S[args.dry]
    unknown = set(args.parts.split(",")) - set(CAPS)
    if unknown:
        p.error(f"--parts: unknown {sorted(unknown)}; choose from {list(CAPS)}")
    return args


def environment(device: str) -> dict[str, Any]:
    """Versions and the device, for the report's first line."""
    import importlib.metadata as md

    import torch

    versions = {}
    for name in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "pydantic", "fastapi"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    return {"device": gpu, "python": platform.python_version(), "versions": versions}


def run_parts(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    scale = args.budget / BUDGET_S[args.dry]
    caps = {name: cap * scale for name, cap in (DRY_CAPS if args.dry else CAPS).items()}
    deadline = time.monotonic() + args.budget
    results: dict[str, Any] = {"settings": {"dry": args.dry, "device": args.device, "budget_s": args.budget},
                               **environment(args.device), "parts": {}}  # fmt: skip
    (args.out / "logs").mkdir(parents=True, exist_ok=True)
    for name in args.parts.split(","):
        limit = min(caps[name], deadline - time.monotonic())
        if limit < min(20, caps[name] / 2):
            results["parts"][name] = {"status": "skipped", "reason": "no time left in the overall budget", "cells": []}
            continue
        results["parts"][name] = run_part(args, name, work, limit, results)
        write_results(args.out, results)
    return results


def run_part(args: argparse.Namespace, name: str, work: Path, limit: float, results: dict[str, Any]) -> dict:
    """One part in its own process group, killed (with any server it started) ``limit`` seconds from now; the
    report is rewritten every few seconds from the cells the part has recorded so far."""
    out = args.out / "parts" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = max(limit - GRACE_S[args.dry], 5)
    cmd = [sys.executable, __file__, "--part", name, "--out", str(out), "--work", str(work),
           "--part-budget", str(budget), "--device", args.device] + ["--dry"] * args.dry  # fmt: skip
    print(f"== {name} (at most {limit:.0f} s)", flush=True)
    start = time.monotonic()
    with (args.out / "logs" / f"{name}.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # The part has its own process group (so a timeout also ends the servers it started): end it when this
        # process is told to stop, too.
        signal.signal(signal.SIGTERM, lambda *_: (_kill_group(proc), sys.exit(143)))
        status = None
        while status is None:
            try:
                proc.wait(timeout=5)
                status = "ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            except subprocess.TimeoutExpired:
                if time.monotonic() - start > limit:
                    status = "timeout"
                    _kill_group(proc)
                    proc.wait()
            results["parts"][name] = collect(out, status or "running", time.monotonic() - start)
            write_results(args.out, results)
    part = results["parts"][name]
    if status != "ok":
        part["log_tail"] = (args.out / "logs" / f"{name}.log").read_text(encoding="utf-8")[-1500:]
    print(_log_lines(args.out / "logs" / f"{name}.log"), flush=True)
    return part


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def collect(out: Path, status: str, seconds: float) -> dict[str, Any]:
    recorded = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {"info": {}, "cells": []}
    cells = recorded["cells"]
    if status != "running":  # the part has ended: a cell still marked running was cut off
        for cell in cells:
            if cell["status"] == "running":
                cell.update(status="cut off", reason=f"the part ended ({status}) during this cell")
    if status == "ok" and any(c["status"] != "ok" for c in cells):
        status = "partial"
    return {"status": status, "seconds": round(seconds, 1), **recorded}


def _log_lines(log: Path) -> str:
    """The part's one-line cell summaries and its last few error lines, capped: the console tail is short."""
    lines = log.read_text(encoding="utf-8").splitlines()
    errors = [ln for ln in lines if "Error" in ln and not ln.startswith("[")][-4:]
    return "\n".join(ln[:240] for ln in [*(ln for ln in lines if ln.startswith("[")), *errors])


def write_results(out: Path, results: dict[str, Any]) -> None:
    from report import markdown

    for name, text in (("results.json", json.dumps(results, indent=1)), ("results.md", markdown(results))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if args.part:
        from parts import run_part as part_main

        part_main(args.part, args.out, args.work, args.part_budget, args.device, args.dry)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rewardlab-gpu-") as tmp:
        results = run_parts(args, Path(tmp))
    write_results(args.out, results)
    print((args.out / "results.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
