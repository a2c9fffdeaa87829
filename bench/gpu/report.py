"""results.json → results.md: one table per part, each cell with its status (and why, when it did not run)."""

from __future__ import annotations

from typing import Any

# Per part: (column header, key in the cell's record, format). A dotted key reads a nested record.
COLUMNS = {
    "train": [("cell", "cell", "s"), ("seq", "seq", "d"), ("pairs/step", "batch", "d"),
              ("pairs/s", "pairs_per_s", ".2f"), ("tokens/s", "tokens_per_s", ",.0f"),
              ("computed tok/pair", "computed_tokens_per_pair", ",.0f"),
              ("padding", "padding_fraction", ".1%"), ("MFU", "mfu", ".3f"), ("peak GiB", "cuda_peak_mib", "gib")],
    "exact": [("cell", "cell", "s"), ("max abs diff", "max_abs_diff", ".2e"),
              ("rel. to spread", "max_rel_diff", ".2e"), ("tolerance", "tolerance", "s"), ("within", "within", "s")],
    "serve": [("cell", "cell", "s"), ("items/s (rewardlab)", "items_per_s", ",.1f"),
              ("items/s (plain / one-by-one)", "items_per_s_plain", ",.1f"), ("ratio", "ratio", ".2f"),
              ("p50 ms", "rewardlab.p50_ms", ",.0f"), ("p99 ms", "rewardlab.p99_ms", ",.0f"),
              ("one-by-one p50 ms", "one_by_one.p50_ms", ",.0f"), ("one-by-one p99 ms", "one_by_one.p99_ms", ",.0f"),
              ("max abs diff", "max_abs_diff", ".1e")],
    "vision": [("cell", "cell", "s"), ("image px", "image_px", "d"), ("s/step once", "s_once", ".3f"),
               ("s/step twice", "s_twice", ".3f"), ("speed-up", "speedup", ".2f"), ("pairs/s", "pairs_per_s", ".1f"),
               ("peak GiB once", "cuda_peak_mib", "gib"), ("peak GiB twice", "cuda_peak_mib_twice", "gib"),
               ("max abs diff", "max_abs_diff", ".1e")],
}  # fmt: skip
NOTES = {
    "train": "pairs/s and tokens/s over the timed steps; tokens/s counts the pairs' real tokens, `computed tok/pair` "
    "what the model ran (a shared prompt once); MFU = 6 (LoRA: 4) x non-embedding weights x computed tokens/s over "
    "the bf16 GEMM peak measured in this run.",
    "exact": "Prompt sharing (one block per pair / group) against one row per response, on this device.",
    "serve": "rank16: Scorer.rank of 16 responses to one long prompt (bf16), the prompt once vs once per response; "
    "serve: `rewardlab serve` vs one forward per request (bench/bench_serve.py), same model and load.",
    "vision": "bench/bench_vision.py's comparison: train steps with each pair's image encoded once vs once per row.",
}


def _get(cell: dict[str, Any], key: str) -> Any:
    value: Any = cell
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if spec == "gib":
        return f"{value / 1024:.1f}"
    if spec == "s" or isinstance(value, bool):
        return str(value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def part_table(name: str, part: dict[str, Any]) -> list[str]:
    columns = COLUMNS[name]
    head = [c[0] for c in columns] + ["status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in part.get("cells", []):
        status = cell["status"]
        if status != "ok":
            status += ": " + str(cell.get("reason") or cell.get("error", ""))[:160].replace("|", "/")
        row = [_fmt(_get(cell, key), spec) for _, key, spec in columns] + [status]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items() if v)
    lines = ["# rewardlab GPU benchmark", "", f"Device: {results.get('device')}; Python {results.get('python')}; "
             f"{versions}. Settings: {results.get('settings')}."]  # fmt: skip
    for name, part in results.get("parts", {}).items():
        lines += ["", f"## {name}: {part['status']} ({part.get('seconds', 0)} s)", "", NOTES[name]]
        info = {k: v for k, v in part.get("info", {}).items() if k != "what"}
        if info:
            lines.append(f"Settings: {info}.")
        if part.get("reason"):
            lines.append(f"Reason: {part['reason']}.")
        lines += [""] + part_table(name, part)
    return "\n".join(lines) + "\n"
