"""One self-contained HTML page per run directory, for a person who would rather look than read.

``render_html_report(run_dir)`` writes ``run_dir/report.html`` from what ``rewardlab eval``
(``evaluation_results.json`` + PNG plots) or ``rewardlab train`` (``results.json``, ``metrics.jsonl``,
``learning_curve.png``; for ``rewardlab demo`` runs also ``demo_summary.json`` and its plots) left there.
Images are embedded as base64 data URIs and the CSS is inline: the page loads nothing, runs no script (its
Content-Security-Policy forbids both), and can be mailed or attached as is.
The page is rendered from Jinja2 templates shipped with the package (``templates/report.html``, its building blocks
in ``report_blocks.html`` and ``report.css``, on the ``base.html`` layout the labeling UI shares); this module only
prepares the blocks. Autoescaping escapes every piece of text from the run (model names, error messages, subsets).
"""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path
from typing import Any

from rewardlab.data.files import atomic_write_text
from rewardlab.errors import DataError
from rewardlab.evaluation.plots import read_jsonl

EVAL_FILE = "evaluation_results.json"
TRAIN_FILE = "results.json"
BENCH_FILE = "bench.json"  # `rewardlab bench` OUT (also OUTPUT_DIR/bench/ of an eval config's bench: section)
REPORT_FILE = "report.html"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDE_PNG_PX = 1000  # wider plots span the whole plot grid instead of one of its two columns
NO_SUBSET = "(none)"  # the name metrics.subset_accuracy gives to pairs without a subset

# Plot file name prefix (as written by `rewardlab eval`) -> caption; the rest of the name is the eval set.
PLOT_CAPTIONS = {
    "accuracy_by_step": "Accuracy across checkpoint steps, one line per model (dashed: chance).",
    "score_vs_length": "Score vs response length: a strong correlation means the model may reward length.",
    "score_bars": "Scores of ranked answers, best human rank on top (dark bar: the model's top pick).",
    "scores": "Scores of chosen (green) and rejected (red) responses: the less overlap, the better.",
    "margins": "Margins chosen − rejected: mass right of 0 is pairs the model gets right.",
    "reliability": "Reliability: bars on the dashed diagonal mean the confidence σ(|margin|) can be trusted.",
}

# The page layout, styles and every piece of markup: templates/report.html, report_blocks.html, report.css.


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------


def render_html_report(run_dir: str | Path) -> Path:
    """Write ``run_dir/report.html`` for an eval output directory, a training run directory or a ``rewardlab bench``
    output directory; return its path.

    ``evaluation_results.json`` wins when several result files are present (an eval's benchmarks, in ``bench/``,
    get their own section). Raises ``DataError`` when none is there, or when one is not valid JSON / not shaped as
    the commands write it (the message names the file).
    """
    run_dir = Path(run_dir)
    if (run_dir / EVAL_FILE).is_file():
        page = _eval_page(run_dir, _load_json(run_dir / EVAL_FILE))
    elif (run_dir / TRAIN_FILE).is_file():
        page = _train_page(run_dir, _load_json(run_dir / TRAIN_FILE))
    elif (run_dir / BENCH_FILE).is_file():
        page = _page(f"rewardlab bench — {run_dir.name}", _bench_blocks(run_dir / BENCH_FILE))
    else:
        raise DataError(f"{run_dir}: no {EVAL_FILE}, {TRAIN_FILE} or {BENCH_FILE}; run `rewardlab eval`, `rewardlab "
                        "train` or `rewardlab bench` first")  # fmt: skip
    return atomic_write_text(run_dir / REPORT_FILE, page)


BENCH_BASELINES = (("longer_chars", "longer (chars)"), ("shorter_chars", "shorter (chars)"),
                   ("longer_tokens", "longer (tokens)"), ("shorter_tokens", "shorter (tokens)"),
                   ("text_only", "text-only"))  # fmt: skip


def _bench_blocks(path: Path) -> list[dict[str, Any]]:
    """A section per suite: every model's numbers with the baselines on the same items beside them; a baseline that
    reaches the model's number is marked (the model may be doing no better than the rule)."""
    data = _load_json(path)
    results = [r for r in data.get("results") or [] if isinstance(r, dict)]
    blocks: list[dict[str, Any]] = [_h("h2", "Benchmarks"), _note(
        "Each suite's official metric beside the same metric with a rule in place of the model: the longer or the "
        "shorter response wins (ties a coin toss) and, for image suites, the same RM with the images blanked "
        "(text-only). A baseline at or above the model's number is shown in bold.")]  # fmt: skip
    for suite in dict.fromkeys(str(r.get("suite")) for r in results):
        rows = [(str(r.get("model")), row) for r in results if str(r.get("suite")) == suite
                for row in r.get("rows") or [] if isinstance(row, dict)
                and row.get("level") != "ties_part"]  # fmt: skip
        shown = [
            (key, label) for key, label in BENCH_BASELINES if any(_num(row.get(key)) is not None for _, row in rows)
        ]
        header = [("model", False), ("level", False), ("name", False), ("metric", False), ("value", True), ("n", True)]
        table_rows = []
        for model, row in rows:
            value = _num(row.get("value"))
            cells = [
                _cell(model),
                _cell(row.get("level")),
                _cell(row.get("name")),
                _cell(row.get("metric")),
                _cell(_fmt(value), num=True, bold=row.get("level") == "overall"),
                _cell(row.get("n"), num=True),
            ]
            for key, _ in shown:
                base = _num(row.get(key))
                cells.append(
                    _cell(_fmt(base), num=True, bold=base is not None and value is not None and base >= value)
                )
            table_rows.append(_row(cells))
        blocks += [_h("h3", suite), _table(header + [(label, True) for _, label in shown], table_rows)]
    if not results:
        blocks.append(_note(f"{path.name} holds no results."))
    return blocks


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg}, line {exc.lineno}); re-run the command that wrote it",
                        source=str(path)) from exc  # fmt: skip
    except UnicodeDecodeError as exc:
        raise DataError("not UTF-8 text; re-run the command that wrote it", source=str(path)) from exc
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON object, found {type(data).__name__}", source=str(path))
    return data


# ---------------------------------------------------------------------------------------------------------------------
# Small HTML builders
# ---------------------------------------------------------------------------------------------------------------------


def _num(value: Any) -> float | None:
    """A finite number, else None (JSON nulls, NaN written as strings, booleans, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: Any, digits: int = 3) -> str:
    x = _num(value)
    if x is None:
        return "–"
    return str(int(x)) if isinstance(value, int) else f"{x:.{digits}f}"


def _page(title: str, blocks: list[dict[str, Any]]) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("rewardlab", "templates"), autoescape=select_autoescape(["html"]))
    return env.get_template("report.html").render(title=title, blocks=[b for b in blocks if b]) + "\n"


def _h(kind: str, text: str) -> dict[str, Any]:
    return {"kind": kind, "text": text}


def _note(text: str) -> dict[str, Any]:
    return {"kind": "note", "text": text}


def _cards(items: list[tuple[str, str, str]]) -> dict[str, Any]:
    """(value, label, extra css class) -> a row of big-number cards."""
    return {"kind": "cards", "items": [{"value": v, "label": k, "cls": cls} for v, k, cls in items]}


def _table(header: list[tuple[str, bool]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``header``: (label, is numeric); ``rows``: ``{"cells": [...], "cls": ...}`` (see :func:`_cell`)."""
    return {"kind": "table", "header": [{"label": h, "num": num} for h, num in header], "rows": rows}


def _row(cells: list[dict[str, Any]], cls: str = "") -> dict[str, Any]:
    return {"cells": cells, "cls": cls}


def _cell(text: Any, *, num: bool = False, **extra: Any) -> dict[str, Any]:
    """A table cell: ``text``, right-aligned when ``num``; extras: ``bar`` (0..100, a small bar in front), ``sub``
    (muted text after; ``sub2`` on its own line), ``style``, ``cls``, ``colspan``, ``title``, ``bold``."""
    return {"text": "" if text is None else str(text), "num": num, **extra}


def _kv_table(items: dict[str, Any]) -> dict[str, Any]:
    rows = [_row([_cell(k), _cell(_fmt(v, 4) if _num(v) is not None else v, num=True)]) for k, v in items.items()]
    return _table([("metric", False), ("value", True)], rows)


def _bar_cell(value: Any) -> dict[str, Any]:
    """A number with a small bar (0..1) in front of it."""
    x = _num(value)
    if x is None:
        return _cell("–", num=True)
    return _cell(f"{x:.3f}", num=True, bar=max(0.0, min(1.0, x)) * 100)


def _heat_cell(acc: Any, n: Any) -> dict[str, Any]:
    """Accuracy cell tinted from red (≤ 0.5, chance) to green (1.0), with the pair count beside it."""
    x = _num(acc)
    if x is None:
        return _cell("–", num=True)
    hue = 120 * max(0.0, min(1.0, (x - 0.5) / 0.5))
    count = f"n={_fmt(n)}" if _num(n) is not None else None
    return _cell(f"{x:.3f}", num=True, style=f"background:hsl({hue:.0f},65%,86%)", sub=count)


def _image(path: Path, caption: str) -> dict[str, Any]:
    """A figure with the PNG inline; a wide PNG (a grid of panels) takes a whole row of the plot grid."""
    raw = path.read_bytes()
    wide = int.from_bytes(raw[16:20], "big") > WIDE_PNG_PX  # IHDR width, right after the 8-byte signature
    return {"data": base64.b64encode(raw).decode("ascii"), "caption": caption, "name": path.name, "wide": wide}


def _png_in(run_dir: Path, name: Any) -> Path | None:
    """``run_dir/name`` when it is a PNG file inside ``run_dir`` (a listed name never reaches outside it)."""
    if not isinstance(name, str) or not name.lower().endswith(".png"):
        return None
    path = (run_dir / name).resolve()
    if not path.is_relative_to(run_dir.resolve()) or not path.is_file():
        return None
    with path.open("rb") as f:
        return path if f.read(8) == PNG_SIGNATURE else None


def _config_block(config: Any) -> dict[str, Any] | None:
    if not config:
        return None
    return {"kind": "config", "text": json.dumps(config, indent=2, ensure_ascii=False, default=str)}


def _plot_grid(figures: list[dict[str, Any]]) -> dict[str, Any] | None:
    return {"kind": "plots", "figures": figures} if figures else None


# ---------------------------------------------------------------------------------------------------------------------
# Evaluation page
# ---------------------------------------------------------------------------------------------------------------------


def _pm(mean_key: str, std_key: str):
    def cell(row: dict) -> dict[str, Any]:
        mean, std = _num(row.get(mean_key)), _num(row.get(std_key))
        extra = f"± {std:.3f}" if std is not None and mean is not None else None
        return _cell(_fmt(mean), num=True, sub=extra, sub2=True)

    return cell


def _plain(key: str, digits: int = 3):
    return lambda row: _cell(_fmt(row.get(key), digits), num=True)


def _shorter(row: dict) -> dict[str, Any]:
    acc, n = _num(row.get("accuracy_chosen_shorter")), row.get("n_chosen_shorter")
    extra = f"n={_fmt(n)}" if _num(n) is not None and acc is not None else None
    return _cell(_fmt(acc), num=True, sub=extra, sub2=True)


# Results table columns: (row key, header, renderer(row) -> "<td>"). A column empty in every ok row of a set is
# hidden, so a pairwise set shows no ranking columns and a ranking-only set no pair columns.
COLUMNS = [
    ("n_pairs", "pairs", _plain("n_pairs")),
    ("accuracy", "accuracy", lambda row: _bar_cell(row.get("accuracy"))),
    ("ties", "ties", _plain("ties")),
    ("margin_mean", "margin mean ± std", _pm("margin_mean", "margin_std")),
    ("ece", "ECE", _plain("ece")),
    ("score_mean", "score mean ± std", _pm("score_mean", "score_std")),
    ("score_length_corr", "length corr. r", _plain("score_length_corr")),
    ("accuracy_chosen_shorter", "acc. when chosen shorter", _shorter),
    ("n_groups", "groups", _plain("n_groups")),
    ("kendall_tau", "Kendall τ", _plain("kendall_tau")),
    ("spearman_rho", "Spearman ρ", _plain("spearman_rho")),
    ("top1_accuracy", "top-1", lambda row: _bar_cell(row.get("top1_accuracy"))),
    ("n_rated", "rated responses", _plain("n_rated")),
    ("combined_accuracy", "weighted accuracy", lambda row: _bar_cell(row.get("combined_accuracy"))),
    ("seconds", "seconds", _plain("seconds", 1)),
]


def _rows_of(data: dict, path: Path) -> list[dict]:
    rows = data.get("rows", [])
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise DataError("'rows' must be a list of objects; re-run `rewardlab eval`", source=str(path))
    return rows


def _best_indices(data: dict) -> set[int]:
    """Row indices in ``data["best"]`` (eval set -> row index)."""
    best = data.get("best")
    if not isinstance(best, dict):
        return set()
    return {i for i in best.values() if isinstance(i, int) and not isinstance(i, bool)}


def _eval_page(run_dir: Path, data: dict) -> str:
    rows = _rows_of(data, run_dir / EVAL_FILE)
    details = [d for d in data.get("details") or [] if isinstance(d, dict)]
    best = _best_indices(data)
    eval_sets = list(dict.fromkeys(str(r.get("eval_set", "?")) for r in rows))
    plots = _group_plots(run_dir, data.get("plots") or [], eval_sets)
    body: list[Any] = [*_eval_header(run_dir, data, rows, eval_sets), _best_cards(rows, best)]
    for eval_set in eval_sets:
        members = [(i, r) for i, r in enumerate(rows) if str(r.get("eval_set", "?")) == eval_set]
        body.append(_h("h2", f"Eval set: {eval_set}"))
        body += _results_table(members, best)
        body += _subset_table([d for d in details if str(d.get("eval_set", "?")) == eval_set])
        body += _attribute_table([r for _, r in members if r.get("status") == "ok"])
        body.append(_plot_grid(plots.pop(eval_set, [])))
    leftover = [fig for figs in plots.values() for fig in figs]
    if leftover:
        body += [_h("h2", "Other plots"), _plot_grid(leftover)]
    if not rows:
        body.append(_note("No results: no model directory or eval set was found."))
    if (run_dir / "bench" / BENCH_FILE).is_file():
        body += _bench_blocks(run_dir / "bench" / BENCH_FILE)
    body.append(_config_block(data.get("config")))
    return _page(f"rewardlab eval — {run_dir.name}", body)


def _eval_header(run_dir: Path, data: dict, rows: list[dict], eval_sets: list[str]) -> list[dict[str, Any]]:
    models = {str(r.get("model")) for r in rows}
    checkpoints = {(str(r.get("model")), str(r.get("checkpoint"))) for r in rows}
    failed = sum(r.get("status") != "ok" for r in rows)
    cards = [
        (str(len(models)), "models", ""),
        (str(len(checkpoints)), "checkpoints", ""),
        (str(len(eval_sets)), "eval sets", ""),
        (str(failed), "failed evaluations", "bad" if failed else ""),
    ]
    created = data.get("created") or "unknown time"
    title = {"kind": "title", "text": "Evaluation report", "sub": f"{run_dir.resolve().name} · created {created}"}
    return [title, _cards(cards)]


def _best_cards(rows: list[dict], best: set[int]) -> dict[str, Any] | None:
    items = []
    for i in sorted(best):
        if 0 <= i < len(rows):
            r = rows[i]
            key, label = ("accuracy", "accuracy") if _num(r.get("accuracy")) is not None else ("kendall_tau", "τ")
            where = f"best {label} on {r.get('eval_set')}: {r.get('model')} / {r.get('checkpoint')}"
            items.append((_fmt(r.get(key)), where, "best"))
    return _cards(items) if items else None


def _results_table(members: list[tuple[int, dict]], best: set[int]) -> list[dict[str, Any]]:
    ok = [r for _, r in members if r.get("status") == "ok"]
    columns = [c for c in COLUMNS if any(_num(r.get(c[0])) is not None for r in ok)]
    if all(not r.get("ties") for r in ok):  # ties only tell something when there are some
        columns = [c for c in columns if c[0] != "ties"]
    header = [("", False), ("model", False), ("checkpoint", False), ("step", True)] + [(c[1], True) for c in columns]
    rows = []
    for i, r in members:
        lead = [_cell(r.get("model")), _cell(r.get("checkpoint")), _cell(_fmt(r.get("step")), num=True)]
        if r.get("status") != "ok":
            message = f"error: {r.get('error') or 'failed (no message)'}"
            rows.append(_row([_cell("✗"), *lead, _cell(message, cls="msg", colspan=max(1, len(columns)))], "error"))
            continue
        mark = _cell("★", title="best on this eval set") if i in best else _cell("")
        rows.append(_row([mark, *lead, *(render(r) for _, _, render in columns)], "best" if i in best else ""))
    note = _note("★ best on this eval set (accuracy; Kendall τ for ranking-only sets). Red rows could not be "
                 "evaluated. Accuracy 0.5 is chance.")  # fmt: skip
    return [_table(header, rows), note]


ATTRIBUTE_METRICS = [("n", "n"), ("pearson", "Pearson r"), ("spearman", "Spearman ρ"), ("mse", "MSE"),
                     ("constant_mse", "constant's MSE"), ("length_pearson", "rating ~ length r"),
                     ("prediction_length_pearson", "head ~ length r")]  # fmt: skip


def _attribute_table(rows: list[dict]) -> list[dict[str, Any]]:
    """Attribute heads against the held-out ratings: one row per model/checkpoint and attribute; the rows' notes."""
    body = []
    for r in rows:
        attributes = r.get("attributes") if isinstance(r.get("attributes"), dict) else {}
        for name, m in attributes.items():
            if isinstance(m, dict):
                cells = [_cell(r.get("model")), _cell(r.get("checkpoint")), _cell(name)]
                body.append(_row(cells + [_cell(_fmt(m.get(key)), num=True) for key, _ in ATTRIBUTE_METRICS]))
    notes = [f"{r.get('model')} / {r.get('checkpoint')}: {r['note']}" for r in rows if r.get("note")]
    out: list[dict[str, Any]] = []
    if body:
        header = [("model", False), ("checkpoint", False), ("attribute", False)]
        out += [_h("h3", "Attribute heads vs held-out ratings"),
                _table(header + [(label, True) for _, label in ATTRIBUTE_METRICS], body),
                _note("Ratings scaled to 0–1 by the model's range. The constant predicts this set's mean rating; a "
                      "length-only predictor reaches |rating ~ length r|. Length in characters.")]  # fmt: skip
    return out + [_note(text) for text in notes]


def _subset_table(details: list[dict]) -> list[dict[str, Any]]:
    """Per-subset accuracy: one row per subset, one column per model/checkpoint; hidden when no pair has one."""
    with_subsets = [d for d in details if isinstance(d.get("subsets"), dict)
                    and isinstance(d["subsets"].get("subsets"), dict) and d["subsets"]["subsets"]]  # fmt: skip
    names = list(dict.fromkeys(name for d in with_subsets for name in d["subsets"]["subsets"]))
    if not names or names == [NO_SUBSET]:
        return []
    header = [("subset", False)] + [(f"{d.get('model')} / {d.get('checkpoint')}", True) for d in with_subsets]
    rows = []
    for name in names:
        cells = [_cell(name)]
        for d in with_subsets:
            s = d["subsets"]["subsets"].get(name)
            cells.append(_heat_cell(s.get("accuracy"), s.get("n")) if isinstance(s, dict) else _cell("–", num=True))
        rows.append(_row(cells))
    weighted = [_heat_cell(d["subsets"].get("weighted_accuracy"), d["subsets"].get("n")) for d in with_subsets]
    rows.append(_row([_cell("all pairs (weighted)", bold=True), *weighted]))
    return [_h("h3", "Accuracy per subset"), _table(header, rows)]


def _group_plots(run_dir: Path, names: list[Any], eval_sets: list[str]) -> dict[str, list[dict[str, Any]]]:
    """eval set -> the figures of its plots; plots whose name matches no set go under ``""``."""
    suffixes = {_slug(s): s for s in eval_sets}
    grouped: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        path = _png_in(run_dir, name)
        if path is None:
            continue
        prefix = next((p for p in PLOT_CAPTIONS if path.stem.startswith(p + "_")), None)
        rest = path.stem[len(prefix) + 1 :] if prefix else path.stem
        eval_set = suffixes.get(rest, "")
        caption = PLOT_CAPTIONS[prefix] if prefix else path.stem.replace("_", " ")
        grouped.setdefault(eval_set, []).append(_image(path, caption))
    return grouped


def _slug(text: str) -> str:
    """How `rewardlab eval` names a set in plot file names; a mismatch only moves a plot to "Other plots"."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "set"


# ---------------------------------------------------------------------------------------------------------------------
# Training page
# ---------------------------------------------------------------------------------------------------------------------


def _train_page(run_dir: Path, data: dict) -> str:
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    counts = data.get("counts") if isinstance(data.get("counts"), dict) else {}
    try:
        logs = read_jsonl(run_dir / "metrics.jsonl")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"not valid JSON lines ({exc}); re-run `rewardlab train`", source=str(run_dir / "metrics.jsonl")
        ) from exc
    losses = [_num(r.get("loss")) for r in logs if isinstance(r, dict)]
    losses = [x for x in losses if x is not None]
    cards = [(_fmt(data.get("global_step")), "optimizer steps", "")]
    if _num(metrics.get("eval_accuracy")) is not None:
        cards.append((_fmt(metrics["eval_accuracy"]), "final eval accuracy", "best"))
    if losses:
        cards.append((f"{losses[0]:.3f} → {losses[-1]:.3f}", f"train loss, first → last of {len(losses)} logs", ""))
    body: list[Any] = [{"kind": "title", "text": "Training report", "sub": run_dir.resolve().name}, _cards(cards),
                       _h("h2", "Final evaluation"),
                       _kv_table(metrics) if metrics else _note("No eval set was configured."),
                       _h("h2", "Data"), *_counts_tables(counts), _h("h2", "Learning curve")]  # fmt: skip
    curve = _png_in(run_dir, "learning_curve.png")
    body.append(_plot_grid([_image(curve, "Train loss (and eval loss / accuracy when logged) by step.")])
                if curve else _note("learning_curve.png is missing."))  # fmt: skip
    if (run_dir / "demo_summary.json").is_file():
        body += _demo_section(run_dir, _load_json(run_dir / "demo_summary.json"))
    return _page(f"rewardlab train — {run_dir.name}", body)


def _demo_section(run_dir: Path, summary: dict) -> list[Any]:
    """``rewardlab demo`` runs: held-out accuracy against the target, per flaw (text) or changed attribute
    (vision), and the held-out score plots the vision demo leaves."""
    parts: list[Any] = [_h("h2", "Demo")]
    accuracy, target = _num(summary.get("accuracy")), _num(summary.get("target"))
    if accuracy is not None:
        verdict = "" if target is None else f" (target {target:g}: {'met' if accuracy >= target else 'missed'})"
        seconds = _num(summary.get("seconds"))
        met = target is None or accuracy >= target
        parts.append(_cards([(f"{accuracy:.3f}", "held-out accuracy" + verdict, "best" if met else ""),
                             *([(f"{seconds:.0f} s", "demo time", "")] if seconds is not None else [])]))  # fmt: skip
    for key, label in (("by_attribute", "changed attribute"), ("by_flaw", "flaw")):
        per = summary.get(key)
        if isinstance(per, dict) and per:
            counts = summary.get("eval_pairs_by_attribute") or {}
            rows = [_row([_cell(name), _heat_cell(acc, counts.get(name))]) for name, acc in per.items()]
            parts.append(_table([(label, False), ("held-out accuracy", True)], rows))
    captions = {"eval_scores.png": "Held-out scores of the right and the wrong description.",
                "eval_margins.png": "Held-out margins (right − wrong); above 0 the right one wins."}  # fmt: skip
    figures = [_image(path, caption) for name, caption in captions.items() if (path := _png_in(run_dir, name))]
    parts.append(_plot_grid(figures))
    return parts


def _counts_tables(counts: dict) -> list[Any]:
    """Records read per source, then encoded / truncated / dropped per split; any other count as key-value."""
    parts: list[Any] = []
    records = counts.get("records")
    if isinstance(records, dict) and records:
        rows = []
        for source, c in records.items():
            c = c if isinstance(c, dict) else {}
            other = ", ".join(f"{k}={v}" for k, v in c.items() if k not in ("rows", "records")) or "–"
            rows.append(_row([_cell(source), _cell(_fmt(c.get("rows")), num=True),
                              _cell(_fmt(c.get("records")), num=True), _cell(other)]))  # fmt: skip
        parts.append(_table([("source", False), ("rows", True), ("records", True), ("other counts", False)], rows))
    splits = {k: v for k, v in counts.items() if k != "records" and isinstance(v, dict)}
    if splits:
        keys = list(dict.fromkeys(k for v in splits.values() for k in v))
        labels = {"seen": "encoded"}
        rows = [_row([_cell(split), *(_cell(_fmt(v.get(k)), num=True) for k in keys)]) for split, v in splits.items()]
        parts += [_h("h3", "Encoding"), _table([("split", False)] + [(labels.get(k, k), True) for k in keys], rows)]
    scalars = {k: v for k, v in counts.items() if not isinstance(v, dict)}
    if scalars:
        parts.append(_kv_table(scalars))
    return parts or [_note("No counts were recorded.")]
