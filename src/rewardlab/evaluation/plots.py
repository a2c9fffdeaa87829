"""Plots (matplotlib, headless PNG). Every function writes one PNG and returns its path.

Degenerate inputs never crash a plot: NaN/None values are dropped, and a plot with nothing left to draw
becomes a figure that says "no data", so a report can always embed it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rewardlab.data.records import plain_text

CHANCE_STYLE = {"color": "grey", "linestyle": "--", "linewidth": 1}
SNIPPET_CHARS = 40


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib.pyplot on the headless Agg backend (imported lazily: ``import rewardlab`` stays cheap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out_path: str | Path, *, outside_legend: bool = False) -> Path:
    plt = _pyplot()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # A legend placed beside the axes only stays in the picture with a tight bounding box.
    fig.savefig(out_path, **({"bbox_inches": "tight"} if outside_legend else {}))
    plt.close(fig)
    return out_path


def _no_data(out_path: str | Path, title: str, reason: str = "no data") -> Path:
    """A small figure that says why there is nothing to plot."""
    fig, ax = _pyplot().subplots(figsize=(6, 3), dpi=110)
    ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=14, color="grey", transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title)
    return _save(fig, out_path)


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values if _is_finite(v)]


def _text(value: Any) -> str:
    """Plain text of a prompt or response: a string, or chat messages (the last message's content)."""
    if isinstance(value, list | tuple) and value and all(isinstance(m, dict) for m in value):
        return plain_text(list(value), turns="last", part_sep=" ")
    if isinstance(value, list | tuple) and value:
        return str(value[-1])
    return "" if value is None else str(value)


def _snippet(value: Any, limit: int = SNIPPET_CHARS) -> str:
    """One line, at most ``limit`` characters, "…" when cut; "$" is escaped so mathtext never kicks in."""
    text = " ".join(_text(value).split()).replace("$", r"\$")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------


def _step_panels(out_path: str | Path, title: str, panels: list, empty: str, decorate: Any = None) -> Path:
    """Panels stacked over a shared step axis, one per ``(name, [(label, points, style), ...])``; lines and panels
    without points are left out, legends sit beside the panels so they never hide a point. ``decorate(ax, name)``
    adds a panel's own touches. ``empty`` says why nothing was drawn when no panel has a point."""
    panels = [(name, [line for line in lines if line[1]]) for name, lines in panels]
    panels = [(name, lines) for name, lines in panels if lines]
    if not panels:
        return _no_data(out_path, title, empty)
    plt = _pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), dpi=110, sharex=True, squeeze=False)
    for ax, (name, lines) in zip(axes[:, 0], panels):
        for label, points, style in lines:
            ax.plot(*zip(*points), label=label, **style)
        if decorate is not None:
            decorate(ax, name)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(title)
    return _save(fig, out_path, outside_legend=True)


def _series(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if _is_finite(r.get(key))]


def plot_learning_curve(metrics_path: str | Path, out_path: str | Path) -> Path:
    """Everything training logs against the step: loss (train, eval), preference accuracy (train, eval) and the
    mean margin (train, eval), one panel each."""
    rows = read_jsonl(metrics_path)
    train, evals = {"color": "tab:blue"}, {"color": "tab:orange", "marker": "o"}
    panels = [
        (name, [(f"train {name}", _series(rows, train_key), train), (f"eval {name}", _series(rows, eval_key), evals)])
        for name, train_key, eval_key in (
            ("loss", "loss", "eval_loss"),
            ("preference accuracy", "accuracy", "eval_accuracy"),
            ("mean margin", "margin", "eval_margin_mean"),
        )
    ]

    def chance(ax: Any, name: str) -> None:
        if name == "preference accuracy":
            ax.set_ylim(0, 1.02)
            ax.axhline(0.5, **CHANCE_STYLE)

    why = "no loss logged yet (fewer steps than training.logging_steps?)"
    return _step_panels(out_path, "learning curve", panels, why, decorate=chance)


def plot_reward_curve(metrics_path: str | Path, out_path: str | Path) -> Path:
    """An RL run: the summed reward (train, and eval when logged) on top, each source's mean reward below, and the
    KL to the reference policy when it was computed."""
    rows = read_jsonl(metrics_path)
    sources = sorted({k.split("/")[1] for r in rows for k in r if k.startswith("rewards/") and k.endswith("/mean")})
    panels = [
        ("reward", [("train", _series(rows, "reward"), {}), ("eval", _series(rows, "eval_reward"), {"marker": "o"})]),
        ("reward by source", [(name, _series(rows, f"rewards/{name}/mean"), {}) for name in sources]),
        ("KL to reference", [("train", _series(rows, "kl"), {})]),
    ]
    why = "no reward logged yet (fewer steps than training.logging_steps?)"
    return _step_panels(out_path, "reward curve", panels, why)


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------------


def plot_accuracy_by_step(series: dict[str, list[tuple[int, float]]], out_path: str | Path, title: str) -> Path:
    """Accuracy across checkpoint steps, one line per model; ``series`` maps model -> [(step, accuracy)]."""
    from matplotlib.ticker import MaxNLocator

    cleaned = {
        model: sorted((int(s), float(a)) for s, a in points if _is_finite(s) and _is_finite(a))
        for model, points in series.items()
    }
    cleaned = {model: points for model, points in cleaned.items() if points}
    if not cleaned:
        return _no_data(out_path, title)
    # Runs of very different lengths (40 and 500 steps) share one axis only as a fraction of each run.
    last = {model: max(points[-1][0], 1) for model, points in cleaned.items()}
    relative = max(last.values()) > 2 * min(last.values())
    fig, ax = _pyplot().subplots(figsize=(7, 4), dpi=110)
    for model, points in sorted(cleaned.items()):
        steps, accs = zip(*points)
        xs = [s / last[model] for s in steps] if relative else steps
        ax.plot(xs, accs, "o-", label=_snippet(model, 30) + (f" ({last[model]} steps)" if relative else ""))
    ax.axhline(0.5, label="chance (0.5)", **CHANCE_STYLE)
    ax.set_ylim(0, 1.02)
    if not relative:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("fraction of the run (checkpoint step / last step)" if relative else "checkpoint step")
    ax.set_ylabel("preference accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)
    ax.set_title(f"accuracy by step — {title}")
    return _save(fig, out_path, outside_legend=True)


def plot_score_histogram(chosen: list[float], rejected: list[float], out_path: str | Path, title: str) -> Path:
    """Overlaid histograms of the scores of chosen and rejected responses (shared bins), means dashed."""
    import numpy as np

    c, r = _finite(chosen), _finite(rejected)
    if not c and not r:
        return _no_data(out_path, title)
    edges = np.histogram_bin_edges(c + r, bins=min(40, max(5, int(math.sqrt(len(c) + len(r))))))
    fig, ax = _pyplot().subplots(figsize=(7, 4), dpi=110)
    for values, name, color in ((c, "chosen", "tab:green"), (r, "rejected", "tab:red")):
        if values:
            mean = sum(values) / len(values)
            ax.hist(values, bins=edges, alpha=0.5, color=color, label=f"{name} (n={len(values)}, mean {mean:.2f})")
            ax.axvline(mean, color=color, linestyle="--", linewidth=1)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # headroom for the legend
    ax.set_xlabel("score")
    ax.set_ylabel("responses")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"scores — {title}")
    return _save(fig, out_path)


def plot_margin_histogram(margins: list[float], out_path: str | Path, title: str) -> Path:
    """Histogram of margins (chosen − rejected); a line at 0 and the share of positive margins in the legend."""
    m = _finite(margins)
    if not m:
        return _no_data(out_path, title)
    positive = sum(v > 0 for v in m) / len(m)
    fig, ax = _pyplot().subplots(figsize=(7, 4), dpi=110)
    ax.hist(m, bins=min(40, max(5, int(math.sqrt(len(m))))), color="tab:blue", alpha=0.75,
            label=f"margins (n={len(m)}): {positive:.1%} > 0")  # fmt: skip
    ax.axvline(0, color="black", linewidth=1.2, label="0 (chosen = rejected)")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # headroom for the legend
    ax.set_xlabel("margin = score(chosen) − score(rejected)")
    ax.set_ylabel("pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"margins — {title}")
    return _save(fig, out_path)


def plot_reliability(table: list[dict], out_path: str | Path, title: str) -> Path:
    """Reliability diagram from ``calibration(...)["reliability"]``: accuracy per confidence bin (bars), the
    diagonal of perfect calibration, and the pair count of each bin written above its bar."""
    bins = [b for b in table if _is_finite(b.get("lo")) and _is_finite(b.get("hi"))]
    if not any((b.get("count") or 0) > 0 and _is_finite(b.get("accuracy")) for b in bins):
        return _no_data(out_path, title)
    fig, ax = _pyplot().subplots(figsize=(6, 4.5), dpi=110)
    for i, b in enumerate(bins):
        lo, hi, count = float(b["lo"]), float(b["hi"]), int(b.get("count") or 0)
        acc = float(b["accuracy"]) if count and _is_finite(b.get("accuracy")) else 0.0
        ax.bar((lo + hi) / 2, acc, width=(hi - lo) * 0.95, color="tab:blue", alpha=0.75, edgecolor="tab:blue",
               label="accuracy per bin" if i == 0 else None)  # fmt: skip
        if count and _is_finite(b.get("confidence")):
            ax.plot((lo + hi) / 2, float(b["confidence"]), "_", color="tab:orange", markersize=12, markeredgewidth=2,
                    label="mean confidence" if i == 0 else None)  # fmt: skip
        ax.annotate(f"n={count}", ((lo + hi) / 2, acc), xytext=(0, 3), textcoords="offset points", ha="center",
                    fontsize=7, color="black" if count else "grey")  # fmt: skip
    ax.plot([0.5, 1.0], [0.5, 1.0], label="perfect calibration", **CHANCE_STYLE)
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence σ(|margin|)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"reliability — {title}")
    return _save(fig, out_path)


def plot_score_vs_length(scores: list[float], lengths: list[int], out_path: str | Path, title: str) -> Path:
    """Scatter of score against response length (tokens); the Pearson r in the legend."""
    points = [(float(n), float(s)) for s, n in zip(scores, lengths) if _is_finite(s) and _is_finite(n)]
    if not points:
        return _no_data(out_path, title)
    import numpy as np

    from rewardlab.evaluation.metrics import pearson

    x, y = [p[0] for p in points], [p[1] for p in points]
    r = pearson(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    fig, ax = _pyplot().subplots(figsize=(7, 4), dpi=110)
    r_text = f"Pearson r = {r:.3f}" if math.isfinite(r) else "Pearson r undefined"
    ax.scatter(x, y, s=10, alpha=0.4, color="tab:purple", label=f"{len(points)} responses; {r_text}")
    ax.set_xlabel("response length (tokens)")
    ax.set_ylabel("score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"score vs length — {title}")
    return _save(fig, out_path)


def _ranked_answers(group: dict) -> list[tuple[int, str, float]]:
    """(rank, snippet, score) of one group's answers with a finite score, best human rank first (stable)."""
    answers = zip(group.get("ranks") or [], group.get("responses") or [], group.get("scores") or [])
    kept = [(int(rank), _snippet(resp, SNIPPET_CHARS - 6), float(s)) for rank, resp, s in answers
            if _is_finite(rank) and _is_finite(s)]  # fmt: skip
    return sorted(kept, key=lambda a: a[0])


def plot_score_bars(groups: list[dict], out_path: str | Path, title: str, max_groups: int = 8) -> Path:
    """Ranked groups: one panel per group (the first ``max_groups``), one bar per answer labelled "#rank snippet",
    bar length = score, answers in human-rank order (best on top). The answer the model scores highest is drawn
    dark, so a panel whose dark bar is not on top is a group where the model's pick disagrees with the humans."""
    shown = [(g, _ranked_answers(g)) for g in groups[: max(0, max_groups)]]
    shown = [(g, a) for g, a in shown if a]
    if not shown:
        return _no_data(out_path, title)
    plt = _pyplot()
    ncols = 1 if len(shown) == 1 else 2
    nrows = math.ceil(len(shown) / ncols)
    tallest = max(len(a) for _, a in shown)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, nrows * (0.35 * tallest + 1.3)), dpi=110,
                             squeeze=False)  # fmt: skip
    for ax, (group, answers) in zip(axes.flat, shown):
        scores = [a[2] for a in answers]
        top = scores.index(max(scores))
        colors = ["tab:blue" if i == top else "lightsteelblue" for i in range(len(answers))]
        ax.barh(range(len(answers)), scores, color=colors)
        ax.set_yticks(range(len(answers)), [f"#{rank} {snippet}" for rank, snippet, _ in answers], fontsize=8)
        ax.invert_yaxis()  # human rank 1 on top
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel("score", fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(_snippet(group.get("prompt"), SNIPPET_CHARS), fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(shown) :]:
        ax.set_axis_off()
    fig.suptitle(f"scores of ranked answers — {title}\n(dark bar = the model's top-scored answer)", fontsize=10)
    return _save(fig, out_path)
