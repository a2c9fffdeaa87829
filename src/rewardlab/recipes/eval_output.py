"""What `rewardlab eval` shows a person: a progress bar, a table with the best row marked, PNG plots."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class ProgressHandle:
    """``advance(n)`` after each scored batch; ``describe(text)`` when the sweep moves to another checkpoint."""

    def __init__(self, progress: Any, task: Any):
        self._progress, self._task = progress, task

    def advance(self, n: int) -> None:
        self._progress.advance(self._task, n)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextlib.contextmanager
def progress_bar(total: int) -> Iterator[ProgressHandle]:
    """A rich progress bar over every scored response of every checkpoint, batch by batch."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from rewardlab.recipes.console import stderr_console

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr_console()) as progress:
        yield ProgressHandle(progress, progress.add_task("scoring", total=total))


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_table(rows: list[dict[str, Any]], best: dict[str, int]) -> None:
    from rich.table import Table

    from rewardlab.recipes.console import stdout_console

    table = Table(title="evaluation results (★ = best per eval set)")
    for col in ("", "model", "checkpoint", "eval set", "pairs", "accuracy", "margin", "ECE", "len corr", "τ", "top-1"):
        table.add_column(col, justify="right" if col not in ("model", "checkpoint", "eval set") else "left")
    best_idx = set(best.values())
    for i, r in enumerate(rows):
        if r["status"] != "ok":
            table.add_row(
                "✗",
                r["model"],
                r["checkpoint"],
                r["eval_set"],
                "-",
                f"error: {r.get('error', '')[:40]}",
                "",
                "",
                "",
                "",
                "",
                style="red",
            )
            continue
        table.add_row(
            "★" if i in best_idx else "", r["model"], r["checkpoint"], r["eval_set"], _fmt(r.get("n_pairs")),
            _fmt(r.get("accuracy")), _fmt(r.get("margin_mean"), 3), _fmt(r.get("ece")),
            _fmt(r.get("score_length_corr"), 3), _fmt(r.get("kendall_tau"), 3), _fmt(r.get("top1_accuracy"), 3),
            style="bold green" if i in best_idx else None,
        )  # fmt: skip
    stdout_console().print(table)
    print_attribute_table(rows)


def print_attribute_table(rows: list[dict[str, Any]]) -> None:
    """Per row and attribute head: the head against the held-out ratings, beside length and a constant; then the
    rows' notes (what was skipped). Nothing when no row has either."""
    from rich.table import Table

    from rewardlab.recipes.console import stdout_console

    console = stdout_console()
    with_attributes = [r for r in rows if r["status"] == "ok" and r.get("attributes")]
    if with_attributes:
        table = Table(title="attribute heads vs held-out ratings (0–1 scale; length in characters)")
        header = ("model", "checkpoint", "eval set", "attribute", "n", "Pearson", "Spearman", "MSE", "const. MSE",
                  "rating~len r", "pred~len r")  # fmt: skip
        for col in header:
            table.add_column(col, justify="left" if col in header[:4] else "right")
        for r in with_attributes:
            for name, m in r["attributes"].items():
                table.add_row(r["model"], r["checkpoint"], r["eval_set"], name, _fmt(m["n"]), _fmt(m["pearson"], 3),
                              _fmt(m["spearman"], 3), _fmt(m["mse"]), _fmt(m["constant_mse"]),
                              _fmt(m["length_pearson"], 3), _fmt(m["prediction_length_pearson"], 3))  # fmt: skip
        console.print(table)
    for r in rows:
        if r.get("combined_accuracy") is not None:
            console.print(f"{r['model']}/{r['checkpoint']} on {r['eval_set']}: weighted accuracy "
                          f"{r['combined_accuracy']:.4f} (score alone {_fmt(r.get('accuracy'))})")  # fmt: skip
        if r.get("note"):
            console.print(f"note: {r['model']}/{r['checkpoint']} on {r['eval_set']}: {r['note']}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "set"


def make_plots(out: Path, rows: list[dict[str, Any]], best: dict[str, int], samples: dict[int, Any]) -> list[str]:
    """Per eval set: accuracy across checkpoint steps (every model), and for the best row the score and
    margin histograms, the reliability diagram, score vs length, and score bars of ranked groups."""
    from rewardlab.evaluation import plots

    written: list[str] = []
    for eval_set in sorted({r["eval_set"] for r in rows}):
        slug = _slug(eval_set)
        series: dict[str, list[tuple[int, float]]] = {}
        for r in rows:
            if r["eval_set"] == eval_set and r["status"] == "ok" and r.get("step") is not None and "accuracy" in r:
                series.setdefault(r["model"], []).append((r["step"], r["accuracy"]))
        if any(len(v) > 0 for v in series.values()):
            written.append(plots.plot_accuracy_by_step(series, out / f"accuracy_by_step_{slug}.png", eval_set).name)
        if eval_set not in best or samples.get(best[eval_set]) is None:
            continue
        row, sample = rows[best[eval_set]], samples[best[eval_set]]
        title = f"{eval_set} — {row['model']}/{row['checkpoint']}"
        if sample["chosen"]:
            margins = [c - r for c, r in zip(sample["chosen"], sample["rejected"])]
            written.append(
                plots.plot_score_histogram(
                    sample["chosen"], sample["rejected"], out / f"scores_{slug}.png", title
                ).name
            )
            written.append(plots.plot_margin_histogram(margins, out / f"margins_{slug}.png", title).name)
            from rewardlab.evaluation.metrics import calibration

            table = calibration(margins)["reliability"]
            written.append(plots.plot_reliability(table, out / f"reliability_{slug}.png", title).name)
            written.append(plots.plot_score_vs_length(
                sample["chosen"] + sample["rejected"], sample["chosen_length"] + sample["rejected_length"],
                out / f"score_vs_length_{slug}.png", title).name)  # fmt: skip
        if sample["groups"]:
            written.append(plots.plot_score_bars(sample["groups"], out / f"score_bars_{slug}.png", title).name)
    return written
