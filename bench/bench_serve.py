"""Serving throughput: ``rewardlab serve`` (dynamic batching) against a one-request-one-forward server.

    python bench/bench_serve.py [--model deep|tiny|minilm|DIR] [--clients 64] [--seconds 30] [--threads 1]
    python bench/bench_serve.py --quick          # a few seconds, a tiny model: checks that it runs

Both servers load the same model with the same ``Scorer`` (same tokenization, same forward) and run in their own
process with the same number of torch threads; only the serving strategy differs:

- **rewardlab**: ``rewardlab serve`` — requests are queued, coalesced into batches (``max_batch_size``,
  ``max_wait_ms``) and scored on one model thread off the event loop.
- **one-by-one**: the reference behaviour of OpenRLHF's ``serve_rm.py`` — an ``async`` handler that runs the
  model on each request as it arrives, alone, on the event loop.

The load is the same for both: ``--clients`` concurrent clients (asyncio + aiohttp, in this process), each sending
one pair (prompt + two responses, two items) per request, back to back, for ``--seconds``. Printed per server:
requests/s, items/s, p50/p99 latency, errors; and the rewardlab/one-by-one ratios. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the handler's annotation here

HANG_GUARD_S = 600


def baseline_server(model: str, port_file: str, device: str = "cpu", dtype: str | None = None) -> None:
    """One forward per request, on the event loop (OpenRLHF's serve_rm.py behaviour), same request schema."""
    import uvicorn
    from fastapi import FastAPI

    from rewardlab.models.scorer import Scorer

    scorer = Scorer.from_pretrained(model, device=device, dtype=dtype)
    app = FastAPI()

    @app.post("/v1/score")
    async def score(request: Request) -> dict:
        items = (await request.json())["items"]
        return {"scores": scorer.score([i["prompt"] for i in items], [i["response"] for i in items])}

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    sock = config.bind_socket()
    Path(port_file).write_text(f"http://127.0.0.1:{sock.getsockname()[1]}")
    uvicorn.Server(config).run(sockets=[sock])


def start(cmd: list[str], threads: int, url_from) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    url = url_from(proc)
    import httpx

    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        try:
            if httpx.post(
                f"{url}/v1/score", json={"items": [{"prompt": "p", "response": "r"}]}, timeout=60
            ).is_success:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"server did not start or does not answer a probe request: {' '.join(cmd)}")
        time.sleep(0.2)


def url_from_stdout(proc: subprocess.Popen) -> str:
    found: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            if m := re.search(r"listening on (http://\S+)", line):
                found.append(m[1])
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(HANG_GUARD_S)
    if not found:
        proc.kill()
        raise SystemExit("rewardlab serve did not print its URL")
    return found[0]


def url_from_file(path: Path):
    def wait(proc: subprocess.Popen) -> str:
        deadline = time.monotonic() + HANG_GUARD_S
        while not path.exists() or not path.read_text():
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the one-by-one server did not start")
            time.sleep(0.1)
        return path.read_text()

    return wait


async def drive(url: str, pairs: list, clients: int, seconds: float) -> dict:
    """``clients`` concurrent loops, one pair per request, for ``seconds``; latency of every answered request.
    aiohttp drives the load: it needs a fifth of a core where httpx's async client saturates one at ~120
    requests/s and would measure itself instead of the server."""
    import aiohttp

    latencies: list[float] = []
    errors = 0

    async def client(k: int, http: aiohttp.ClientSession, stop_at: float) -> None:
        nonlocal errors
        i = k
        while time.monotonic() < stop_at:
            p = pairs[i % len(pairs)]
            i += clients
            body = {"items": [{"prompt": p.prompt, "response": r} for r in (p.chosen, p.rejected)]}
            t0 = time.perf_counter()
            try:
                async with http.post(f"{url}/v1/score", json=body) as r:
                    ok = r.status == 200 and len((await r.json())["scores"]) == 2
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=HANG_GUARD_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        start_t = time.monotonic()
        await asyncio.gather(*(client(k, http, start_t + seconds) for k in range(clients)))
        elapsed = time.monotonic() - start_t
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [float("nan")] * 99
    return {
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "items_per_s": 2 * len(latencies) / elapsed,
        "p50_ms": 1000 * q[49],
        "p99_ms": 1000 * q[98],
        "errors": errors,
        "seconds": elapsed,
    }


# Built from configs (nothing downloaded). ``deep`` has Qwen3-0.6B's depth (28 layers) at a tiny width: its forward
# time is the per-layer overhead, nearly the same for 1 row as for 64 — the regime of a real RM on a GPU, where a
# batch of one leaves the device idle. ``tiny`` is shallow and cheap: the HTTP handling dominates.
BUILT = {"tiny": {"hidden": 128, "layers": 4, "heads": 4}, "deep": {"hidden": 32, "layers": 28, "heads": 2}}


def server_stats(url: str) -> dict:
    """Model calls of the run (warm-up included) from the server's /metrics: how full batches were, and how much
    of the wall time the model ran."""
    import httpx

    values = {}
    for line in httpx.get(f"{url}/metrics", timeout=60).text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    calls = values["rewardlab_batch_size_count"]
    return {"model_calls": calls, "mean_batch": values["rewardlab_batch_size_sum"] / max(calls, 1),
            "model_seconds": values["rewardlab_batch_seconds_sum"]}  # fmt: skip


def build_model(kind: str, tmp: Path) -> str:
    if kind in BUILT:
        from rewardlab.data.synthetic import corpus, make_pairs
        from rewardlab.models.tiny import build_tiny_model

        return str(build_tiny_model(tmp / kind, corpus(make_pairs(200, seed=1)), family="qwen2", vocab_size=2000,
                                    **BUILT[kind]))  # fmt: skip
    if kind == "minilm":
        from rewardlab.models.packaged import resolve_packaged

        return str(resolve_packaged("minilm"))
    return kind


def compare_servers(model: str, tmp: Path, args: argparse.Namespace, pairs: list) -> dict:
    """Both servers on ``model``, one after the other (the machine runs one server and the load), each warmed up
    for 2 s, then loaded for ``args.seconds``. ``args``: clients, seconds, threads, max_batch_size, max_wait_ms,
    device, dtype (None: the model's own). Returns ``{"servers": {name: stats}, "ratios": {...}}``."""
    dtype = [f"dtype={args.dtype}"] if args.dtype else []
    servers = {
        "rewardlab": (
            [sys.executable, "-m", "rewardlab.cli", "serve", "--model", model, "--port", "0", "--device", args.device,
             f"max_batch_size={args.max_batch_size}", f"max_wait_ms={args.max_wait_ms}", *dtype],
            url_from_stdout,
        ),
        "one-by-one": (
            [sys.executable, __file__, "--baseline-server", model, str(tmp / "url"), "--device", args.device,
             *(["--dtype", args.dtype] if args.dtype else [])],
            url_from_file(tmp / "url"),
        ),
    }  # fmt: skip
    results = {}
    for name, (cmd, url_from) in servers.items():
        proc, url = start(cmd, args.threads, url_from)
        try:
            asyncio.run(drive(url, pairs, args.clients, min(2.0, args.seconds)))  # warm-up
            results[name] = asyncio.run(drive(url, pairs, args.clients, args.seconds))
            if name == "rewardlab":
                results[name]["server"] = server_stats(url)
        finally:
            proc.terminate()
            proc.wait(HANG_GUARD_S)
    a, b = results["rewardlab"], results["one-by-one"]
    ratios = {"items_per_s": a["items_per_s"] / b["items_per_s"], "p99": a["p99_ms"] / b["p99_ms"]}
    return {"servers": results, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="deep", help="A model directory, `deep` or `tiny` (see BUILT) or `minilm`.")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server process")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default="cpu", help="Where both servers run the model (cpu, cuda, ...).")
    parser.add_argument("--dtype", default=None, help="Weights dtype of both servers (default: the model's).")
    parser.add_argument("--quick", action="store_true", help="8 clients, 3 s, tiny model")
    parser.add_argument("--out", default=None, help="Also write the results as JSON here.")
    parser.add_argument("--baseline-server", nargs=2, metavar=("MODEL", "URL_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        return baseline_server(*args.baseline_server, device=args.device, dtype=args.dtype)
    if args.quick:
        args.clients, args.seconds, args.model = 8, 3.0, "tiny"

    from rewardlab.data.synthetic import make_pairs

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        res = compare_servers(build_model(args.model, tmp), tmp, args, make_pairs(256, seed=7))
    results, ratios = res["servers"], res["ratios"]
    a = results["rewardlab"]
    settings = {**vars(args), "cpu_count": os.cpu_count()}
    settings.pop("baseline_server")
    print(f"\n{args.clients} clients x one pair per request, {args.seconds:.0f} s, model {args.model}, "
          f"{args.threads} torch thread(s) per server\n")  # fmt: skip
    print("| server | requests/s | items/s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['requests_per_s']:.1f} | {r['items_per_s']:.1f} | {r['p50_ms']:.0f} | "
              f"{r['p99_ms']:.0f} | {r['errors']} |")  # fmt: skip
    print(f"| rewardlab/one-by-one | | {ratios['items_per_s']:.2f}x | | {ratios['p99']:.2f}x | |")
    st = a["server"]
    print(f"\nrewardlab: {st['model_calls']:.0f} model calls, {st['mean_batch']:.1f} responses per call on average, "
          f"{st['model_seconds']:.1f} s in the model (warm-up included)")  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": settings, "servers": results, "ratios": ratios}, indent=2))


if __name__ == "__main__":
    main()
