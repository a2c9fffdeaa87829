"""Scoring speed: ``Scorer.rank`` of N responses to one long prompt, the prompt computed once (shared-prefix rows,
the default) against once per response — same model, same inputs, same scores (checked), in one run.

    python bench/bench_scoring.py [--responses 16] [--prompt-words 230] [--repeats 5] [--hidden 256] [--layers 4]

The model is a Qwen2-style decoder built from a config (nothing downloaded); prompts are generated text of about
300 tokens, responses about 40. Prints seconds per rank call (median) for both and the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path


def time_rank(shared, plain, prompts: list[str], responses: list[str]) -> dict[str, float]:
    """Median seconds of ``rank(prompt, responses)`` for both scorers (the prompt computed once vs once per
    response), one call each per prompt, alternating which goes first; the first prompt only warms up. Also the
    largest score difference between the two over all calls, and the spread (max − min) of the plain scores."""
    times: dict[str, list[float]] = {"shared": [], "plain": []}
    diff, seen = 0.0, []
    for i, prompt in enumerate(prompts):
        scores = {}
        for name in ("shared", "plain") if i % 2 else ("plain", "shared"):
            scorer = shared if name == "shared" else plain
            start = time.perf_counter()
            ranked = scorer.rank(prompt, responses)  # returns floats: the device has finished
            if i:  # the first round warms up
                times[name].append(time.perf_counter() - start)
            scores[name] = [r.score for r in sorted(ranked, key=lambda r: r.index)]
        diff = max(diff, *(abs(a - b) for a, b in zip(scores["shared"], scores["plain"])))
        seen += scores["plain"]
    return {"shared_s": statistics.median(times["shared"]), "plain_s": statistics.median(times["plain"]),
            "max_abs_diff": diff, "score_spread": max(seen) - min(seen)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=16)
    parser.add_argument("--prompt-words", type=int, default=230)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    args = parser.parse_args()

    from rewardlab.data.synthetic import corpus, make_pairs
    from rewardlab.models.scorer import Scorer
    from rewardlab.models.tiny import build_tiny_model

    pairs = make_pairs(400, seed=3)
    words = " ".join(corpus(pairs)).split()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = build_tiny_model(Path(tmp) / "m", corpus(pairs), family="qwen2", vocab_size=2000, hidden=args.hidden,
                                layers=args.layers, heads=4)  # fmt: skip
        shared = Scorer.from_pretrained(str(path), device="cpu", max_length=2048, batch_size=args.responses)
        plain = Scorer.from_pretrained(str(path), device="cpu", max_length=2048, batch_size=args.responses)
        plain.share_prompts = False
        prompts = [" ".join(rng.choice(words) for _ in range(args.prompt_words)) for _ in range(args.repeats + 1)]
        responses = [p.chosen for p in pairs[: args.responses]]
        tokens = len(shared.transform.encode(prompts[0], responses[0]).input_ids)
        res = time_rank(shared, plain, prompts, responses)
    assert res["max_abs_diff"] < 1e-4, "shared and plain scores differ"
    a, b = res["shared_s"], res["plain_s"]
    print(f"rank of {args.responses} responses, prompt + response ~{tokens} tokens, Qwen2-style {args.layers} layers "
          f"x {args.hidden}, fp32 CPU, median of {args.repeats}:")  # fmt: skip
    print(f"  prompt once (shared): {a * 1000:.0f} ms   once per response: {b * 1000:.0f} ms   ratio {b / a:.2f}x")


if __name__ == "__main__":
    main()
