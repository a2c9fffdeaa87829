"""Evaluating attribute heads: the metric functions on hand-built arrays, `rewardlab eval` on a tiny attribute model
(rated rows, ranked groups with ratings, weights), what is skipped and said, and bench/bench_attributes.py --quick."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rewardlab.cli import main
from rewardlab.data.synthetic import make_pairs
from rewardlab.evaluation.metrics import attribute_metrics, spearman
from rewardlab.recipes.evaluate import SetScores, attribute_results, combined_accuracy
from tests.test_attributes import ATTRIBUTES, rated_rows, train_heads_and_plain
from tests.tiny import pair_rows, write_jsonl

SQRT10 = math.sqrt(10)


# ---------------------------------------------------------------------------------------------- metric functions


def test_attribute_metrics_match_hand_computed_values():
    """predicted [.1, .4, .5, .9], ratings [0, .5, .5, 1], lengths [10, 40, 20, 30]:
    Pearson = .4 / sqrt(.3275 · .5); Spearman: ranks [1, 2, 3, 4] vs [1, 2.5, 2.5, 4] → 4.5 / sqrt(5 · 4.5) = 3/√10;
    MSE = (.01 + .01 + 0 + .01) / 4; the constant (mean .5) = (.25 + 0 + 0 + .25) / 4; rating vs length:
    Pearson 10 / sqrt(.5 · 500) = 2/√10, Spearman 3 / sqrt(4.5 · 5) = 2/√10."""
    m = attribute_metrics([0.1, 0.4, 0.5, 0.9], [0.0, 0.5, 0.5, 1.0], [10, 40, 20, 30])
    assert m["n"] == 4
    assert m["pearson"] == pytest.approx(0.4 / math.sqrt(0.3275 * 0.5), abs=1e-12)
    assert m["spearman"] == pytest.approx(3 / SQRT10, abs=1e-12)
    assert m["mse"] == pytest.approx(0.0075, abs=1e-12)
    assert m["constant_mse"] == pytest.approx(0.125, abs=1e-12)
    assert m["length_pearson"] == pytest.approx(2 / SQRT10, abs=1e-12)
    assert m["length_spearman"] == pytest.approx(2 / SQRT10, abs=1e-12)
    # the prediction vs length: dp = [-.375, -.075, .025, .425], dL = [-15, 15, -5, 5] → 6.5 / sqrt(.3275 · 500)
    assert m["prediction_length_pearson"] == pytest.approx(6.5 / math.sqrt(0.3275 * 500), abs=1e-12)


def test_attribute_metrics_edge_cases():
    perfect = attribute_metrics([0.2, 0.4, 0.8], [0.2, 0.4, 0.8], [3, 2, 1])
    assert perfect["pearson"] == pytest.approx(1) and perfect["mse"] == 0 and perfect["length_pearson"] < 0
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1) and spearman([1, 2, 4], [1, 5, 50]) == 1
    flat = attribute_metrics([0.5, 0.5], [0.0, 1.0], [1, 2])  # a constant prediction has no correlation
    assert math.isnan(flat["pearson"]) and flat["mse"] == 0.25 and flat["constant_mse"] == 0.25
    empty = attribute_metrics([], [], [])
    assert empty["n"] == 0 and all(math.isnan(v) for k, v in empty.items() if k != "n")
    with pytest.raises(ValueError, match="same length"):
        attribute_metrics([0.1], [0.1, 0.2], [1, 2])
    with pytest.raises(ValueError, match="ratings contains NaN"):
        attribute_metrics([0.1], [float("nan")], [1])


def hand_scores() -> SetScores:
    """One pair (responses 0 > 1) and three rated responses (2, 3, 4; response 4's `quality` unknown)."""
    return SetScores(
        chosen=[1.0], rejected=[2.0], chosen_len=[1], rejected_len=[1], subsets=[None], group_scores=[],
        pair_index=[(0, 1)], response_scores=[1.0, 2.0, 0.0, 0.0, 0.0], response_chars=[5, 6, 10, 20, 30],
        response_attributes=[{"quality": 0.9}, {"quality": 0.1}, {"quality": 0.2}, {"quality": 0.4},
                             {"quality": 0.3}],
        response_ratings=[None, None, {"quality": 1, "tone": 3}, {"quality": 3, "tone": 1}, {"quality": None}],
    )  # fmt: skip


def test_attribute_results_scale_by_the_models_range_and_say_what_was_left_out():
    got, notes = attribute_results(hand_scores(), {"quality": [0, 4], "words": [0, 40]})
    assert list(got) == ["quality"] and got["quality"]["n"] == 2  # the null rating is left out
    assert got["quality"] == attribute_metrics([0.2, 0.4], [0.25, 0.75], [10, 20])
    assert notes == ["not in the eval data's ratings: words (the model's heads: quality, words)",
                     "ratings without a head in the model, ignored: tone"]  # fmt: skip
    assert attribute_results(hand_scores(), None) == (
        {}, ["attributes skipped: the model has no attribute heads (3 rated responses)"])  # fmt: skip


def test_combined_accuracy_weighs_score_and_attributes():
    scores = hand_scores()  # the score alone misranks the pair (1 < 2); quality 0.9 vs 0.1 puts it right
    assert combined_accuracy(scores, {"reward": 1}, scores.response_scores) == 0.0
    assert combined_accuracy(scores, {"reward": 1, "quality": 2}, scores.response_scores) == 1.0  # 2.8 > 2.2
    assert combined_accuracy(scores, {"reward": 1, "quality": 1.25}, scores.response_scores) == 0.5  # a tie
    with pytest.raises(ValueError, match="unknown weight 'verbosity'"):
        combined_accuracy(scores, {"verbosity": 1}, scores.response_scores)


# ---------------------------------------------------------------------------------------------- rewardlab eval


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny attribute model (quality, words) and a plain one, each trained 6 steps, and the eval files."""
    root = tmp_path_factory.mktemp("attributes-eval")
    train_heads_and_plain(root)
    groups = []
    for p in make_pairs(10, seed=31):
        groups.append({"prompt": p.prompt, "responses": [p.chosen, p.rejected], "ranks": [1, 2],
                       "ratings": [{"quality": 4, "words": min(len(p.chosen.split()), 40)},
                                   {"quality": 0, "words": min(len(p.rejected.split()), 40)}]})  # fmt: skip
    files = {
        "rated": write_jsonl(root / "rated.jsonl", rated_rows(8, seed=30)),
        "groups": write_jsonl(root / "groups.jsonl", groups),
        "pairs": write_jsonl(root / "pairs.jsonl", pair_rows(make_pairs(12, seed=32))),
        "quality_only": write_jsonl(root / "quality.jsonl", [
            {"prompt": r["prompt"], "response": r["response"], "ratings": {"quality": r["ratings"]["quality"]}}
            for r in rated_rows(4, seed=33)]),
    }  # fmt: skip
    return root, files


def eval_cli(root: Path, name: str, model: str, sets: list[Path], *args: str) -> tuple[int, list[dict], dict]:
    cfg = {"model_dirs": [str(root / model)], "eval_sets": [{"path": str(p)} for p in sets],
           "output_dir": str(root / name), "plots": False}  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc = main(["eval", "--config", str(path), *args])
    if rc:
        return rc, [], {}
    rows = list(csv.DictReader((root / name / "evaluation_results.csv").open()))
    return rc, rows, json.loads((root / name / "evaluation_results.json").read_text())


def test_eval_reports_each_attribute_against_the_held_out_ratings(models, capsys):
    from rewardlab.evaluation.metrics import preference_accuracy
    from rewardlab.models.scorer import Scorer, combine_attributes

    root, files = models
    rc, rows, data = eval_cli(root, "out", "heads", [files["rated"], files["groups"]], "--weights",
                              "reward=1,quality=2")  # fmt: skip
    assert rc == 0
    assert [(r["eval_set"], r["status"], r["n_rated"]) for r in rows] == [
        ("rated", "ok", "16"),
        ("groups", "ok", "20"),
    ]
    assert rows[0]["n_pairs"] == "" and rows[1]["n_pairs"] == "10"  # rated rows give no pair
    # Recomputed here from the Scorer: the same numbers.
    scorer = Scorer.from_pretrained(str(root / "heads" / "model"))
    rated = [json.loads(line) for line in files["rated"].open()]
    _, attributes = scorer.score_with_attributes([r["prompt"] for r in rated], [r["response"] for r in rated])
    for name, (low, high) in ATTRIBUTES.items():
        expected = attribute_metrics([a[name] for a in attributes], [(r["ratings"][name] - low) / (high - low)
                                     for r in rated], [len(r["response"]) for r in rated])  # fmt: skip
        assert data["rows"][0]["attributes"][name] == pytest.approx(expected, abs=1e-6)
        assert float(rows[0][f"{name}_pearson"]) == pytest.approx(expected["pearson"], abs=1e-6)
        assert float(rows[0][f"{name}_constant_mse"]) == pytest.approx(expected["constant_mse"], abs=1e-9)
    groups = [json.loads(line) for line in files["groups"].open()]
    scores, attributes = scorer.score_with_attributes([g["prompt"] for g in groups for _ in range(2)],
                                                      [r for g in groups for r in g["responses"]])  # fmt: skip
    combined = [combine_attributes(s, a, {"reward": 1, "quality": 2}) for s, a in zip(scores, attributes)]
    expected = preference_accuracy(combined[0::2], combined[1::2])["accuracy"]
    assert float(rows[1]["combined_accuracy"]) == pytest.approx(expected)
    assert float(rows[1]["accuracy"]) == preference_accuracy(scores[0::2], scores[1::2])["accuracy"]
    assert rows[0]["combined_accuracy"] == "" and rows[0]["note"] == "" and rows[1]["note"] == ""
    out = capsys.readouterr().out
    assert "attribute heads vs held-out ratings" in out and "weighted accuracy" in out
    from rewardlab.evaluation.html_report import render_html_report

    html = render_html_report(root / "out").read_text(encoding="utf-8")
    assert "Attribute heads vs held-out ratings" in html and "weighted accuracy" in html


def test_a_model_without_heads_evaluates_the_pairs_and_says_attributes_were_skipped(models, capsys):
    root, files = models
    rc, rows, _ = eval_cli(root, "plain-out", "plain", [files["groups"], files["rated"]])
    assert rc == 0 and [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[0]["n_pairs"] == "10" and rows[0]["accuracy"] != ""
    assert rows[0]["note"] == "attributes skipped: the model has no attribute heads (20 rated responses)"
    assert rows[1]["note"] == "attributes skipped: the model has no attribute heads (16 rated responses)"
    assert "quality_pearson" not in rows[0]
    assert "note: plain/final on rated: attributes skipped" in capsys.readouterr().out


def test_attributes_missing_from_the_data_and_unknown_weights_are_said_not_crashed(models, capsys):
    root, files = models
    rc, rows, data = eval_cli(root, "partial", "heads", [files["quality_only"], files["pairs"]], "--weights",
                              "reward=1,verbosity=1")  # fmt: skip
    assert rc == 0 and [r["status"] for r in rows] == ["ok", "ok"]
    assert list(data["rows"][0]["attributes"]) == ["quality"] and rows[0]["quality_n"] == "8"
    assert "words_pearson" not in rows[0]  # no row evaluated it: no column
    assert rows[0]["note"] == "not in the eval data's ratings: words (the model's heads: quality, words)"
    assert rows[1]["note"].startswith("weights skipped: unknown weight 'verbosity'") and "quality" in rows[1]["note"]
    assert rows[1]["combined_accuracy"] == ""
    err = capsys.readouterr()
    assert "Traceback" not in err.err
    assert main(["eval", "--config", str(root / "partial.yaml"), "--weights", "reward"]) == 2
    assert "is not NAME=NUMBER" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- the bench


def test_the_attributes_bench_quick_run_reports_every_fold_metric(tmp_path):
    """bench_attributes.py --quick: a tiny model on generated groups, one fold; the table and JSON agree."""
    script = Path(__file__).resolve().parents[1] / "bench" / "bench_attributes.py"
    out = tmp_path / "a.json"
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(script), "--quick", "--out", str(out), "--work", str(tmp_path / "w")],
                          capture_output=True, text=True, env={**os.environ, **offline}, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text(encoding="utf-8"))
    (fold,) = res["per_fold"].values()
    assert fold["n_responses"] == 16 and fold["n_pairs"] == 8  # 2 of the 10 passages: 8 groups of 2
    assert fold["longer_wins"] + fold["shorter_wins"] == pytest.approx(1.0)
    assert fold["system_wins"] == 1.0  # in the generated groups the chosen response is always rated higher
    assert fold["overall/system_pearson"] == pytest.approx(1.0)  # and its ratings depend on the position alone
    for name in ("correctness", "selection", "overall"):
        assert -1 <= fold[f"{name}/pearson"] <= 1 and fold[f"{name}/constant_mse"] >= 0
    assert "| correctness: Pearson r, length only (signed) |" in proc.stdout
    assert "| baseline: longer wins |" in proc.stdout
