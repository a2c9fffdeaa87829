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
        times: dict[str, list[float]] = {"shared": [], "plain": []}
        for i, prompt in enumerate(prompts):
            for name, scorer in (("shared", shared), ("plain", plain)) if i % 2 else (("plain", plain),
                                                                                      ("shared", shared)):  # fmt: skip
                start = time.perf_counter()
                ranked = scorer.rank(prompt, responses)
                if i:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
                if name == "shared":
                    got = [r.score for r in sorted(ranked, key=lambda r: r.index)]
                else:
                    want = [r.score for r in sorted(ranked, key=lambda r: r.index)]
            assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4, "shared and plain scores differ"
    a, b = statistics.median(times["shared"]), statistics.median(times["plain"])
    print(f"rank of {args.responses} responses, prompt + response ~{tokens} tokens, Qwen2-style {args.layers} layers "
          f"x {args.hidden}, fp32 CPU, median of {args.repeats}:")  # fmt: skip
    print(f"  prompt once (shared): {a * 1000:.0f} ms   once per response: {b * 1000:.0f} ms   ratio {b / a:.2f}x")


if __name__ == "__main__":
    main()
