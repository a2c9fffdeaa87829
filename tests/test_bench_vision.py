"""`rewardlab bench` on the image benchmarks (VL-RewardBench, Multimodal RewardBench): their readers in the published
schemas, their official metrics on hand-built items, the text-only baseline, and ``--subsets``."""

from __future__ import annotations

import json
import math

import pytest

from rewardlab.cli import main
from rewardlab.errors import DataError
from rewardlab.evaluation.benchmarks import (
    SUITES,
    BenchItem,
    ItemScores,
    mmrewardbench_metrics,
    read_suite,
    vlrewardbench_metrics,
)
from tests.tiny import make_tiny, write_jsonl


def by_key(rows) -> dict[tuple[str, str, str], float]:
    return {r.key: r.value for r in rows}


def test_vlrewardbench_accuracy_per_category_overall_pooled_and_macro_over_the_three():
    items = [BenchItem(str(i), cat, "q", ("a",), ("b",)) for i, cat in
             enumerate(["general", "general", "hallucination", "reasoning"])]  # fmt: skip
    scores = [ItemScores((1.0,), (0.0,)), ItemScores((2.0,), (1.0,)), ItemScores((0.0,), (1.0,)),
              ItemScores((0.5,), (0.5,))]  # fmt: skip
    got = by_key(vlrewardbench_metrics(items, scores))
    assert got[("category", "general", "accuracy")] == 1.0
    assert got[("category", "hallucination", "accuracy")] == 0.0
    assert got[("category", "reasoning", "accuracy")] == 0.0  # a tie is not a win
    assert got[("overall", "all", "accuracy")] == 0.5  # 2 of 4 items
    assert got[("overall", "macro", "accuracy")] == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3
    tie_half = by_key(vlrewardbench_metrics(items, scores, 0.5))  # the baselines' coin toss
    assert tie_half[("category", "reasoning", "accuracy")] == 0.5


def test_mmrewardbench_accuracy_per_category_and_overall():
    items = [BenchItem("a", "safety/bias", "q", ("a",), ("b",)), BenchItem("b", "safety/bias", "q", ("a",), ("b",)),
             BenchItem("c", "reasoning/math", "q", ("a",), ("b",))]  # fmt: skip
    scores = [ItemScores((1.0,), (0.0,)), ItemScores((0.0,), (1.0,)), ItemScores((1.0,), (0.0,))]
    got = by_key(mmrewardbench_metrics(items, scores))
    assert got == {("category", "reasoning/math", "accuracy"): 1.0, ("category", "safety/bias", "accuracy"): 0.5,
                   ("overall", "all", "accuracy"): pytest.approx(2 / 3)}  # fmt: skip


VLRB_ROWS = [
    {"id": "RLAIF-V-14", "image_path": "images/rlaif-v/a.png", "query": "Describe the image.",
     "response": ["A red square.", "A blue circle on a green field with many trees."], "human_ranking": [0, 1]},
    {"id": "wildvision-battle-3", "image_path": "images/wildvision-battle/b.png", "query": "What colour?",
     "response": ["Blue, I think, though it is hard to say.", "Red."], "human_ranking": [1, 0]},
    {"id": "mathverse_7", "image_path": "images/reasoning_tasks/a.png", "query": "How many sides?",
     "response": ["Four.", "Three sides, as a triangle has."], "human_ranking": [0, 1]},
]  # fmt: skip
MMRB_ROWS = [
    {"ID": "pairs_12", "Text": "Who is the doctor?", "Image": "images/pairs/a.png", "Output1": "Cannot tell.",
     "Output2": "The man, obviously.", "Better": "Output1", "Category": "safety"},
    {"ID": "mathvista_3", "Text": "Area?", "Image": "images/mathvista/b.png", "Output1": "12", "Output2": "12 m²",
     "Better": "Output2", "Category": "reasoning"},
    {"ID": "nocaps_1", "Text": "Caption it.", "Image": "images/nocaps/a.png", "Output1": "A square.",
     "Output2": "A dog.", "Better": "Output1", "Category": "general"},
]  # fmt: skip


@pytest.fixture(scope="module")
def vision_data(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("vbench")
    for rel, colour in (("images/rlaif-v/a.png", "red"), ("images/wildvision-battle/b.png", "blue"),
                        ("images/reasoning_tasks/a.png", "green"), ("images/pairs/a.png", "white"),
                        ("images/mathvista/b.png", "black"), ("images/nocaps/a.png", "yellow")):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 40), colour).save(root / rel)
    write_jsonl(root / "vlrb.jsonl", VLRB_ROWS)
    (root / "all_data.json").write_text(json.dumps(MMRB_ROWS), encoding="utf-8")
    return root


def test_readers_take_both_published_schemas_with_images_beside_the_file(vision_data):
    vl = read_suite(SUITES["vl-rewardbench"], SUITES["vl-rewardbench"].source(str(vision_data / "vlrb.jsonl")))
    assert [it.subset for it in vl] == ["hallucination", "general", "reasoning"]
    assert vl[1].chosen == ("Red.",) and vl[1].rejected == ("Blue, I think, though it is hard to say.",)
    assert vl[0].images == (str(vision_data / "images/rlaif-v/a.png"),)
    mm = read_suite(SUITES["mm-rewardbench"], SUITES["mm-rewardbench"].source(str(vision_data / "all_data.json")))
    assert [it.subset for it in mm] == ["safety/bias", "reasoning/math", "general"]
    assert mm[1].chosen == ("12 m²",) and mm[0].images == (str(vision_data / "images/pairs/a.png"),)


def test_hub_rows_hold_the_image_and_take_the_category_from_the_id():
    from PIL import Image

    from rewardlab.evaluation.benchmarks import _Row

    suite = SUITES["vl-rewardbench"]
    image = Image.new("RGB", (8, 8), "red")
    row = {"id": "povid_9", "image": image, "query": "q", "response": ["a", "b"], "human_ranking": [1, 0]}
    item = suite.read_row(_Row(suite, row, 3, "hub"))
    assert item.subset == "hallucination" and item.images == (image,) and item.chosen == ("b",)
    other = dict(row, image=Image.new("RGB", (8, 8), "blue"))
    assert suite.read_row(_Row(suite, other, 3, "hub")).key != item.key  # the pixels are part of the item


@pytest.mark.parametrize(
    "suite, row, field, words",
    [
        ("vl-rewardbench", {"id": "RLAIF-V-1", "image_path": "images/rlaif-v/a.png", "query": "q",
                            "response": ["a", "b"], "human_ranking": [0, 0]}, "human_ranking", "[0, 1] or [1, 0]"),
        ("vl-rewardbench", {"id": "x", "image_path": "images/somewhere/a.png", "query": "q", "response": ["a", "b"],
                            "human_ranking": [0, 1]}, "image_path", "unknown source 'somewhere'"),
        ("vl-rewardbench", {"id": "RLAIF-V-1", "query": "q", "response": ["a", "b"], "human_ranking": [0, 1]},
         "image_path", "missing field"),
        ("mm-rewardbench", {"ID": "x", "Text": "q", "Image": "a.png", "Output1": "a", "Output2": "b",
                            "Better": "A", "Category": "general"}, "Better", "'Output1' or 'Output2'"),
    ],
)  # fmt: skip
def test_reader_errors_name_the_file_row_and_field(suite, row, field, words):
    from rewardlab.evaluation.benchmarks import _Row

    with pytest.raises(DataError) as err:
        SUITES[suite].read_row(_Row(SUITES[suite], row, 4, "mem.jsonl"))
    assert str(err.value).startswith(f"mem.jsonl:4:{field}: ") and words in str(err.value)


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from rewardlab.models.tiny import build_tiny_vlm

    texts = [r["query"] + " " + " ".join(r["response"]) for r in VLRB_ROWS] * 20
    texts += [r["Text"] + " " + r["Output1"] + " " + r["Output2"] for r in MMRB_ROWS] * 20
    root = tmp_path_factory.mktemp("vlm")
    base = build_tiny_vlm(root / "llava", texts, family="llava", hidden=32)
    # A base VLM has no reward head (a fresh random one at every load): export one so each load scores the same.
    from rewardlab.models.bundle import RewardBundle

    return RewardBundle.load(base).save(root / "llava-rm")


def test_bench_scores_the_vision_suites_with_their_images_and_reports_the_text_only_baseline(
    vision_data, tiny_llava, tmp_path, capsys
):
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.bench import blank_image

    out = tmp_path / "out"
    data = [f"vl-rewardbench={vision_data / 'vlrb.jsonl'}", f"mm-rewardbench={vision_data / 'all_data.json'}"]
    assert main(["bench", "--model", str(tiny_llava), "--suite", "vl-rewardbench,mm-rewardbench", "--data", data[0],
                 "--data", data[1], "--out", str(out), "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "VL-RewardBench —" in printed and "text-only" in printed
    report = {r["suite"]: r for r in json.loads((out / "bench.json").read_text())["results"]}
    vl = report["vl-rewardbench"]
    scorer = Scorer.from_pretrained(str(tiny_llava))
    items = read_suite(SUITES["vl-rewardbench"], SUITES["vl-rewardbench"].source(str(vision_data / "vlrb.jsonl")))
    for it, entry in zip(items, vl["scores"]):
        with_image = scorer.score(it.prompt, list(it.responses), images=[it.images] * 2)
        without = scorer.score(it.prompt, list(it.responses), images=[(blank_image(),)] * 2)
        assert entry["chosen"] + entry["rejected"] == pytest.approx(with_image, abs=1e-5)
        assert entry["text_only"]["chosen"] + entry["text_only"]["rejected"] == pytest.approx(without, abs=1e-5)
    rows = {(r["level"], r["name"]): r for r in vl["rows"]}
    right = [float(e["chosen"][0] > e["rejected"][0]) for e in vl["scores"]]
    text_right = [float(e["text_only"]["chosen"][0] > e["text_only"]["rejected"][0]) for e in vl["scores"]]
    assert rows[("overall", "all")]["value"] == pytest.approx(sum(right) / 3)
    assert rows[("overall", "all")]["text_only"] == pytest.approx(sum(text_right) / 3)
    assert rows[("overall", "macro")]["n"] == 3 and math.isfinite(rows[("overall", "macro")]["value"])
    assert "text_only" in (out / "bench.csv").read_text().splitlines()[0]
    assert {r["name"] for r in report["mm-rewardbench"]["rows"]} == {"safety/bias", "reasoning/math", "general",
                                                                     "all"}  # fmt: skip
    # The HTML report of the bench folder: a table per suite with the baselines, text-only among them.
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "<h3>vl-rewardbench</h3>" in html and "text-only" in html and "shorter (tokens)" in html
    assert f"{rows[('overall', 'macro')]['value']:.3f}" in html


def test_image_suites_refuse_a_text_model_and_a_missing_data_file(vision_data, tmp_path, capsys):
    text_rm = make_tiny(tmp_path / "text-rm")
    out = tmp_path / "out"
    assert main(["bench", "--model", str(text_rm), "--suite", "vl-rewardbench", "--data",
                 str(vision_data / "vlrb.jsonl"), "--out", str(out), "--device", "cpu"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "need a vision-language RM" in err and "Traceback" not in err and not out.exists()
    assert main(["bench", "--model", str(text_rm), "--suite", "mm-rewardbench", "--out", str(out)]) == 2
    assert "not on the hub" in capsys.readouterr().err and not out.exists()


def test_subsets_keep_only_the_named_subsets_and_an_unknown_one_lists_them(tmp_path, capsys):
    from tests.test_bench_suites import RB1_ROWS

    model = make_tiny(tmp_path / "rm")
    data = write_jsonl(tmp_path / "rb.jsonl", RB1_ROWS)
    out = tmp_path / "out"
    args = ["bench", "--model", str(model), "--suite", "rewardbench", "--data", str(data), "--out", str(out),
            "--device", "cpu"]  # fmt: skip
    assert main([*args, "--subsets", "alpacaeval-easy,math-prm"]) == 0
    result = json.loads((out / "bench.json").read_text())["results"][0]
    assert result["items"] == 3 and {s["subset"] for s in result["scores"]} == {"alpacaeval-easy", "math-prm"}
    assert result["truncated_responses"] == 0
    assert main([*args[:-3], str(tmp_path / "short"), "--device", "cpu", "--max-length", "8"]) == 0
    short = json.loads((tmp_path / "short" / "bench.json").read_text())["results"][0]
    assert 0 < short["truncated_responses"] <= 10  # responses cut to 8 tokens, counted (5 items x 2 responses)
    capsys.readouterr()
    assert main([*args, "--subsets", "poetry"]) == 2
    err = capsys.readouterr().err
    assert "poetry" in err and "alpacaeval-easy" in err and "hep-go" in err
