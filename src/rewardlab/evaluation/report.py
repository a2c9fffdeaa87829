"""Human-readable run reports (Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rewardlab.data.files import atomic_write_text
from rewardlab.evaluation.plots import read_jsonl


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_train_report(
    run_dir: Path, metrics: dict[str, Any], counts: dict[str, Any], *, export_id: str | None = None
) -> Path:
    """``report.md``: final metrics (of the export ``export_id``), data counts (incl. truncation), the learning
    curve."""
    rows = read_jsonl(run_dir / "metrics.jsonl")
    train_losses = [r["loss"] for r in rows if "loss" in r]
    lines = ["# Training report", "", f"Run directory: `{run_dir.name}`", ""]
    if export_id:
        lines += [f"Model: `model/` (export id `{export_id}`)", ""]
    lines += ["## Final evaluation", ""]
    if metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]
    else:
        lines.append("No eval set was configured.")
    if train_losses:
        lines += [
            "",
            f"Train loss: first {train_losses[0]:.4f}, last {train_losses[-1]:.4f} ({len(train_losses)} logs).",
        ]
    lines += ["", "## Data", "", "| source | rows | records | other counts |", "|---|---|---|---|"]
    for source, c in counts.get("records", {}).items():
        other = ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("rows", "records")) or "-"
        lines.append(f"| `{Path(source).name}` | {c['rows']} | {c['records']} | {other} |")
    for split in ("train", "eval"):
        if split in counts:
            s = counts[split]
            lines.append(f"\n{split}: {s['seen']} encoded, {s['truncated']} truncated, {s['dropped']} dropped.")
    lines += ["", "## Learning curve", "", "![learning curve](learning_curve.png)", ""]
    return atomic_write_text(run_dir / "report.md", "\n".join(lines))
