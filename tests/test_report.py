"""Plots and the self-contained HTML report: every plot writes a real PNG (degenerate inputs included), the page
shows every row, the error, the best row and every plot, and a real headless Chromium renders it cleanly."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import pytest

from rewardlab.errors import DataError
from rewardlab.evaluation import plots
from rewardlab.evaluation.html_report import render_html_report
from rewardlab.evaluation.metrics import calibration

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NO_DATA_SIZE = (660, 330)  # plots._no_data: 6 x 3 inches at 110 dpi
CHROMIUM = Path("/usr/bin/chromium")
DATA_IMG = '<img src="data:image/png;base64,'
NAN = float("nan")


def assert_png(path: Path) -> tuple[int, int] | None:
    """A real, non-trivial PNG; returns its (width, height) when Pillow is there."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    if importlib.util.find_spec("PIL") is None:
        assert len(data) > 1000
        return None
    from PIL import Image

    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.size[0] > 100 and img.size[1] > 100
        return img.size


def margins_of(n: int, shift: float) -> list[float]:
    return [shift + math.sin(i * 1.7) * 2 for i in range(n)]


GROUPS = [
    {"prompt": "Summarise the story of the $5 lighthouse keeper who never slept " * 2,
     "responses": ["A keeper guards a lighthouse.", "x" * 300, "Something about boats?"],
     "ranks": [1, 2, 3], "scores": [1.5, 0.2, -0.7]},
    {"prompt": [{"role": "user", "content": "Which is <b>better</b>?"}],
     "responses": [[{"role": "assistant", "content": "the second"}], [{"role": "assistant", "content": "first"}]],
     "ranks": [2, 1], "scores": [0.9, 0.1]},
    {"prompt": "tie and a nan", "responses": ["a", "b", "c"], "ranks": [1, 1, 2], "scores": [0.3, NAN, -1.0]},
]  # fmt: skip

# (function name, args): typical inputs, then degenerate ones (empty, one value, NaN, constant).
PLOT_CASES = {
    "accuracy_by_step": (plots.plot_accuracy_by_step, {"alpha": [(20, 0.7), (10, 0.6)], "beta": [(10, 0.55)]}),
    "score_histogram": (plots.plot_score_histogram, [0.5, 1.2, 2.0, 0.1] * 10, [-0.3, 0.2, 0.9, -1.0] * 10),
    "margin_histogram": (plots.plot_margin_histogram, margins_of(80, 0.8)),
    "reliability": (plots.plot_reliability, calibration(margins_of(80, 0.8))["reliability"]),
    "score_vs_length": (plots.plot_score_vs_length, [0.1 * i for i in range(30)], [5 + 3 * i for i in range(30)]),
    "score_bars": (plots.plot_score_bars, GROUPS),
    "accuracy_by_step_single": (plots.plot_accuracy_by_step, {"m": [(0, 0.5)]}),
    "score_histogram_single": (plots.plot_score_histogram, [1.0], [1.0]),
    "score_histogram_nan": (plots.plot_score_histogram, [NAN, 1.0, 2.0], [NAN, None, 0.5]),
    "margin_histogram_single": (plots.plot_margin_histogram, [0.0]),
    "reliability_one_bin": (plots.plot_reliability, calibration([3.0])["reliability"]),
    "score_vs_length_single": (plots.plot_score_vs_length, [1.0], [7]),
    "score_vs_length_constant": (plots.plot_score_vs_length, [1.0, 2.0, NAN], [7, 7, 9]),
    "score_bars_single": (
        plots.plot_score_bars,
        [{"prompt": "p", "responses": ["only"], "ranks": [1], "scores": [2]}],
    ),
}
NO_DATA_CASES = {
    "accuracy_by_step_empty": (plots.plot_accuracy_by_step, {}),
    "accuracy_by_step_nan": (plots.plot_accuracy_by_step, {"m": [(10, NAN)], "n": []}),
    "score_histogram_empty": (plots.plot_score_histogram, [], []),
    "margin_histogram_nan": (plots.plot_margin_histogram, [NAN, NAN]),
    "reliability_empty_bins": (plots.plot_reliability, calibration([])["reliability"]),
    "reliability_no_bins": (plots.plot_reliability, []),
    "score_vs_length_empty": (plots.plot_score_vs_length, [], []),
    "score_bars_empty": (plots.plot_score_bars, []),
    "score_bars_all_nan": (
        plots.plot_score_bars,
        [{"prompt": "p", "responses": ["a"], "ranks": [1], "scores": [NAN]}],
    ),
}


@pytest.mark.parametrize("case", sorted(PLOT_CASES))
def test_plot_writes_png(case: str, tmp_path: Path):
    fn, *args = PLOT_CASES[case]
    out = fn(*args, tmp_path / "sub" / f"{case}.png", f"title {case}")
    assert out == tmp_path / "sub" / f"{case}.png"
    size = assert_png(out)
    assert size is None or size != NO_DATA_SIZE, "real data must not fall back to the 'no data' figure"


@pytest.mark.parametrize("case", sorted(NO_DATA_CASES))
def test_plot_without_data_says_so(case: str, tmp_path: Path):
    fn, *args = NO_DATA_CASES[case]
    out = fn(*args, tmp_path / f"{case}.png", "nothing")
    assert assert_png(out) in (None, NO_DATA_SIZE)


def test_score_bars_shows_at_most_max_groups(tmp_path: Path):
    one = plots.plot_score_bars(GROUPS * 4, tmp_path / "one.png", "t", max_groups=1)
    many = plots.plot_score_bars(GROUPS * 4, tmp_path / "many.png", "t", max_groups=8)
    size_one, size_many = assert_png(one), assert_png(many)
    if size_one is not None:
        assert size_many[1] > size_one[1] and size_many[0] > size_one[0]  # 4 rows x 2 panels vs one panel


def test_learning_curve_still_works(tmp_path: Path):
    lines = [{"step": s, "loss": 1 / s} for s in range(1, 6)] + [{"step": 5, "eval_loss": 0.3, "eval_accuracy": 0.8}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    assert_png(plots.plot_learning_curve(tmp_path / "metrics.jsonl", tmp_path / "learning_curve.png"))


def test_learning_curve_without_any_logged_loss_says_so(tmp_path: Path):
    import warnings

    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 2, "train_runtime": 1.0}) + "\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "No artists with labels" legend warning
        out = plots.plot_learning_curve(tmp_path / "metrics.jsonl", tmp_path / "learning_curve.png")
    assert_png(out)


# ---------------------------------------------------------------------------------------------------------------------
# Synthetic run directories
# ---------------------------------------------------------------------------------------------------------------------

ERROR_MESSAGE = 'cannot load <model.safetensors> & "config.json"'


def eval_rows() -> list[dict]:
    """2 models x 2 checkpoints x 2 eval sets ("pairs" with subsets, "ranked" ranking-only); one error row."""
    rows = []
    for model, base in (("alpha-rm", 0.6), ("beta-rm", 0.7)):
        for step in (10, 20):
            common = {"model": model, "checkpoint": f"checkpoint-{step}", "step": step, "status": "ok",
                      "path": f"/runs/{model}/checkpoint-{step}", "seconds": 1.25}  # fmt: skip
            acc = base + step / 200
            rows.append({**common, "eval_set": "pairs", "n_pairs": 40, "accuracy": acc, "ties": 0,
                         "margin_mean": acc - 0.4, "margin_std": 1.1, "ece": 0.05, "score_mean": 0.1, "score_std": 1.0,
                         "score_length_corr": 0.2, "accuracy_chosen_shorter": acc - 0.1, "n_chosen_shorter": 12,
                         "n_groups": None, "kendall_tau": None, "error": None})  # fmt: skip
            rows.append({**common, "eval_set": "ranked", "n_groups": 3, "kendall_tau": acc - 0.3,
                         "spearman_rho": acc - 0.25, "top1_accuracy": 2 / 3})  # fmt: skip
    rows[2] = {k: rows[2][k] for k in ("model", "checkpoint", "step", "eval_set", "path")}  # alpha-rm/20 on pairs
    rows[2].update(status="error", error=ERROR_MESSAGE)
    return rows


def subsets_detail(acc: float) -> dict:
    return {"subsets": {"helpful": {"accuracy": acc + 0.1, "n": 20}, "harmless": {"accuracy": acc - 0.1, "n": 20}},
            "weighted_accuracy": acc, "macro_accuracy": acc, "n": 40}  # fmt: skip


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval_out")
    rows = eval_rows()
    best = {"pairs": 6, "ranked": 7}  # beta-rm/checkpoint-20 on both
    details = []
    for r in rows:
        d = {k: r[k] for k in ("model", "checkpoint", "step", "eval_set")}
        if r["status"] == "ok" and r["eval_set"] == "pairs":
            d["subsets"] = subsets_detail(r["accuracy"])
            d["reliability"] = calibration(margins_of(40, 0.5))["reliability"]
        details.append(d)
    series = {"alpha-rm": [(10, 0.65)], "beta-rm": [(10, 0.75), (20, 0.8)]}
    margins = margins_of(40, 0.6)
    names = [
        plots.plot_accuracy_by_step(series, out / "accuracy_by_step_pairs.png", "pairs").name,
        plots.plot_margin_histogram(margins, out / "margins_pairs.png", "pairs").name,
        plots.plot_reliability(calibration(margins)["reliability"], out / "reliability_pairs.png", "pairs").name,
        plots.plot_score_bars(GROUPS, out / "score_bars_ranked.png", "ranked").name,
    ]
    payload = {"created": "2025-01-02T03:04:05+00:00", "config": {"models": ["runs/*"], "batch_size": 8},
               "rows": rows, "details": details, "best": best, "plots": names + ["missing_plot.png"]}  # fmt: skip
    (out / "evaluation_results.json").write_text(json.dumps(payload), encoding="utf-8")
    render_html_report(out)
    return out


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train_run")
    logs = [{"step": s, "loss": 0.7 / s} for s in range(1, 11)]
    (out / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in logs), encoding="utf-8")
    plots.plot_learning_curve(out / "metrics.jsonl", out / "learning_curve.png")
    results = {"metrics": {"eval_accuracy": 0.8766, "eval_ties": 0, "eval_n": 300},
               "counts": {"train": {"seen": 1200, "truncated": 3, "dropped": 1},
                          "records": {"data/train<1>.jsonl": {"rows": 1201, "records": 1200, "skipped_empty": 1}}},
               "global_step": 150}  # fmt: skip
    (out / "results.json").write_text(json.dumps(results), encoding="utf-8")
    render_html_report(out)
    return out


# ---------------------------------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------------------------------


def test_eval_report_shows_rows_error_best_and_plots(eval_dir: Path):
    page = (eval_dir / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and '<meta charset="utf-8">' in page
    assert re.search(r"<title>[^<]+</title>", page)
    for row in eval_rows():
        assert f"<td>{row['model']}</td><td>{row['checkpoint']}</td>" in page
    assert page.count('<tr class="error">') == 1
    assert "error: cannot load &lt;model.safetensors&gt; &amp; &#34;config.json&#34;" in page  # escaped by Jinja2
    assert ERROR_MESSAGE not in page  # never unescaped
    assert page.count(DATA_IMG) == 4  # the 4 existing PNGs; missing_plot.png is skipped
    best = re.findall(r'<tr class="best">(.*?)</tr>', page)
    assert len(best) == 2 and all("<td>beta-rm</td><td>checkpoint-20</td>" in b and "★" in b for b in best)
    assert "<h2>Eval set: pairs</h2>" in page and "<h2>Eval set: ranked</h2>" in page
    assert "Other plots" not in page  # every plot sits under its eval set
    assert "2025-01-02T03:04:05+00:00" in page and "<script" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch


def test_eval_report_subset_table(eval_dir: Path):
    page = (eval_dir / "report.html").read_text(encoding="utf-8")
    assert page.count("<h3>Accuracy per subset</h3>") == 1  # only "pairs" has subsets
    table = page.split("<h3>Accuracy per subset</h3>")[1].split("</table>")[0]
    assert "<td>helpful</td>" in table and "<td>harmless</td>" in table
    assert len(re.findall(r"<th[ >]", table)) == 1 + 3  # subset + the 3 ok rows on "pairs"
    assert ">0.750 <" in table and ">0.850 <" in table and ">0.900 <" in table  # helpful: acc + 0.1


def test_eval_report_hides_columns_a_set_does_not_have(eval_dir: Path):
    page = (eval_dir / "report.html").read_text(encoding="utf-8")
    pairs = page.split("<h2>Eval set: pairs</h2>")[1].split("<h2>")[0]
    ranked = page.split("<h2>Eval set: ranked</h2>")[1].split("<h2>")[0]
    assert "Kendall τ</th>" not in pairs and "accuracy</th>" in pairs and "ECE</th>" in pairs
    assert "Kendall τ</th>" in ranked and "ECE</th>" not in ranked and ">accuracy</th>" not in ranked


def test_train_report(train_dir: Path):
    page = (train_dir / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<title>" in page
    assert page.count(DATA_IMG) == 1
    assert "0.8766" in page and "150" in page and "data/train&lt;1&gt;.jsonl" in page and "skipped_empty=1" in page
    assert "0.700 → 0.070" in page  # first and last train loss
    assert [p.name for p in train_dir.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_eval_results_win_over_train_results(eval_dir: Path, tmp_path: Path):
    (tmp_path / "evaluation_results.json").write_text(json.dumps({"rows": []}), encoding="utf-8")
    (tmp_path / "results.json").write_text(json.dumps({"metrics": {}}), encoding="utf-8")
    page = render_html_report(tmp_path).read_text(encoding="utf-8")
    assert "<h1>Evaluation report</h1>" in page and "No results" in page


def test_empty_dir_raises(tmp_path: Path):
    with pytest.raises(
        DataError, match=r"no evaluation_results.json, results.json or bench.json; run `rewardlab eval`"
    ):
        render_html_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize(("name", "text"), [("evaluation_results.json", '{"rows": [}'), ("results.json", "[1, 2]"),
                                            ("evaluation_results.json", '{"rows": {"a": 1}}')])  # fmt: skip
def test_corrupt_json_raises_naming_the_file(tmp_path: Path, name: str, text: str):
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(str(tmp_path / name))):
        render_html_report(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing half-written


# ---------------------------------------------------------------------------------------------------------------------
# A real browser
# ---------------------------------------------------------------------------------------------------------------------

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]  # fmt: skip


@pytest.mark.slow
def test_report_renders_in_chromium(eval_dir: Path, train_dir: Path, tmp_path: Path):
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install rewardlab[collect])")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS)
        try:
            for run_dir in (eval_dir, train_dir):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
                page.route(
                    "**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort()
                )
                page.goto((run_dir / "report.html").as_uri(), wait_until="load")
                widths = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
                shot = tmp_path / f"{run_dir.name}.png"
                page.screenshot(path=str(shot), full_page=True)
                assert errors == []
                assert len(widths) == (4 if run_dir == eval_dir else 1) and all(w > 0 for w in widths)
                size = assert_png(shot)
                assert size is None or size[1] > 400
                page.close()
        finally:
            browser.close()
