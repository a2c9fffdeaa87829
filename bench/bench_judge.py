"""LLM-judge throughput and cost: pairwise verdicts (both orders) per second from a local chat model and from an
OpenAI-compatible endpoint, each without and with the SQLite cache, and the judge calls one group of G completions
costs under each schedule.

    python bench/bench_judge.py [--pairs 64] [--repeats 3] [--hidden 128] [--layers 4] [--quick]

The local judge is a Qwen2-style chat model built from a config (nothing downloaded). The endpoint is a small
OpenAI-compatible server started on 127.0.0.1 by this script, answering with the same local model's log-probabilities
(so it measures rewardlab's client: HTTP, JSON, concurrency), not a real inference server. Prints markdown tables:
pairs/s (median of interleaved repeats) and calls per group.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' server helper


def build_chat_model(root: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    from rewardlab.models.tiny import tiny_config, train_tokenizer

    texts = ["Which response answers the request better? Answer with a single letter: A or B."] * 50
    texts += ["the sky is blue green red tea coffee answer response request colour " * 3] * 50
    tokenizer = train_tokenizer(texts, 400)
    config = tiny_config("qwen2", len(tokenizer), tokenizer, hidden=hidden, layers=layers, heads=4)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "judge")
    tokenizer.save_pretrained(root / "judge")
    return root / "judge"


def endpoint_app(backend):
    """An OpenAI-compatible /v1/chat/completions answering from ``backend`` (top log-probabilities of A and B)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    lock = asyncio.Lock()

    async def complete(request):
        body = await request.json()
        async with lock:  # one model, one request at a time
            a, b = backend.answer_logprobs([body["messages"][0]["content"]], ["A", "B"])[0]
        tops = [{"token": "A", "logprob": a}, {"token": "B", "logprob": b}]
        return JSONResponse({"choices": [{"message": {"role": "assistant", "content": "A" if a >= b else "B"},
                                          "logprobs": {"content": [{"token": "A", "logprob": a,
                                                                    "top_logprobs": tops}]}}]})  # fmt: skip

    return Starlette(routes=[Route("/v1/chat/completions", complete, methods=["POST"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="A smoke run: 8 pairs, 1 repeat, a 2-layer model.")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.repeats, args.hidden, args.layers = 8, 1, 32, 2

    from rewardlab.judges.aggregate import calls_per_group
    from rewardlab.judges.backends import CachedBackend, EndpointBackend, LocalBackend
    from rewardlab.judges.judge import Judge
    from tests.servers import AppServer

    root = Path(tempfile.mkdtemp(prefix="bench-judge-"))
    model = build_chat_model(root, args.hidden, args.layers)
    local = LocalBackend(str(model), batch_size=16)
    words = ["the", "sky", "is", "blue", "green", "red", "tea", "coffee"]
    triples = [(f"Name a colour ({i}).", " ".join(words[i % 7 :] + words[: i % 7]), " ".join(words[(i + 3) % 7 :]))
               for i in range(args.pairs)]  # fmt: skip
    times: dict[str, list[float]] = {}
    with AppServer(endpoint_app(LocalBackend(str(model), batch_size=1))) as server:
        endpoint = EndpointBackend(server.url + "/v1", "judge", concurrency=8)
        for r in range(args.repeats):
            for name, backend in (("local", local), ("endpoint", endpoint)):
                cache = CachedBackend(backend, root / f"{name}-{r}.sqlite")
                for label, judge in ((f"{name}", Judge(backend)), (f"{name}, cache cold", Judge(cache)),
                                     (f"{name}, cache warm", Judge(cache))):  # fmt: skip
                    start = time.perf_counter()
                    judge.prefer_many(triples)
                    times.setdefault(label, []).append(time.perf_counter() - start)
        endpoint.close()
    print(f"Pairwise verdicts (both orders: 2 calls a pair), {args.pairs} pairs, median of {args.repeats}; a "
          f"{args.layers}-layer width-{args.hidden} chat model on this machine's CPU\n")  # fmt: skip
    print("| judge | pairs/s | vs. no cache |")
    print("|---|---:|---:|")
    for label, t in times.items():
        base = statistics.median(times[label.split(",")[0]])
        print(f"| {label} | {args.pairs / statistics.median(t):.1f} | {base / statistics.median(t):.2f}× |")
    print("\nJudge calls per group of G completions (both orders):\n")
    print("| schedule | G = 4 | G = 8 | G = 16 |")
    print("|---|---:|---:|---:|")
    for kind, rounds in (("all", 2), ("round_robin", 2), ("reference", 2), ("swiss", 3)):
        cells = " | ".join(str(calls_per_group(g, kind, rounds=rounds)) for g in (4, 8, 16))  # type: ignore[arg-type]
        print(f"| {kind}{f' ({rounds} rounds)' if kind in ('round_robin', 'swiss') else ''} | {cells} |")


if __name__ == "__main__":
    main()
