"""Attribute heads (``model.attributes``): rated responses read and checked, one regression head per attribute
trained beside the preference head, an export whose ``logits[:, 0]`` is the score and ``logits[:, 1:]`` the
attributes, and the attributes wherever scores go."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from rewardlab.data.synthetic import make_pairs
from tests.tiny import make_tiny, pair_rows, write_jsonl

PROMPT = "Name a colour of the sky."
RESPONSES = ["Blue.", "The sky is often blue, and red at sunset.", "Seven.", "blue blue blue blue"]
ATTRIBUTES = {"quality": [0, 4], "words": [0, 40]}


def rated_rows(n: int, seed: int) -> list[dict]:
    """Rated responses: ``quality`` 4 for a generated pair's chosen response and 0 for its rejected one, ``words``
    its word count (capped at 40)."""
    rows = []
    for p in make_pairs(n, seed=seed):
        for response, quality in ((p.chosen, 4), (p.rejected, 0)):
            rows.append({"prompt": p.prompt, "response": response,
                         "ratings": {"quality": quality, "words": min(len(response.split()), 40)}})  # fmt: skip
    return rows


def train_config(root, model, name, *, rated=True, pairs=True, groups=False, **extra) -> dict:
    data: dict = {"eval": str(write_jsonl(root / "eval.jsonl", pair_rows(make_pairs(16, seed=5)))), "max_length": 64}
    if groups:  # ranked groups carrying their responses' ratings, in one file
        rows = []
        for p in make_pairs(24, seed=4):
            rows.append({"prompt": p.prompt, "responses": [p.chosen, p.rejected], "ranks": [1, 2],
                         "ratings": [{"quality": 4, "words": min(len(p.chosen.split()), 40)},
                                     {"quality": 0, "words": min(len(p.rejected.split()), 40)}]})  # fmt: skip
        data["train"] = str(write_jsonl(root / f"{name}-groups.jsonl", rows))
    elif pairs:
        data["train"] = str(write_jsonl(root / f"{name}-pairs.jsonl", pair_rows(make_pairs(24, seed=4))))
        if rated:
            data["rated"] = str(write_jsonl(root / f"{name}-rated.jsonl", rated_rows(12, seed=6)))
    else:
        data["train"] = str(write_jsonl(root / f"{name}-rated.jsonl", rated_rows(12, seed=6)))
    cfg = {
        "output_dir": str(root / name), "seed": 1, "data": data,
        "model": {"name_or_path": str(model), "attributes": ATTRIBUTES},
        "training": {"per_device_train_batch_size": 4, "max_steps": 6, "logging_steps": 1, "learning_rate": 2e-3,
                     "save_strategy": "no", "eval_strategy": "no"},
    }  # fmt: skip
    for key, value in extra.items():
        section, _, field = key.partition(".")
        cfg.setdefault(section, {})[field] = value
    return cfg


def run(root, cfg, rc=0, *args) -> list[dict]:
    from rewardlab.cli import main

    path = root / f"{cfg['output_dir'].rsplit('/', 1)[-1]}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), *args]) == rc
    if rc:
        return []
    return [json.loads(line) for line in (root / cfg["output_dir"].rsplit("/", 1)[-1] / "metrics.jsonl").open()]


def train_heads_and_plain(root) -> tuple:
    """A tiny Qwen2 trained 6 steps twice, with attribute heads (quality, words) and without: the two exports."""
    base = make_tiny(root / "qwen2", "qwen2")
    run(root, train_config(root, base, "heads"))
    plain = train_config(root, base, "plain", rated=False)
    del plain["model"]["attributes"]
    run(root, plain)
    return root / "heads" / "model", root / "plain" / "model"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("attributes") / "qwen2", "qwen2")


@pytest.fixture(scope="module", params=["qwen2", "bert"])
def trained(request, base, tmp_path_factory):
    """Pairs in ``data.train`` and rated responses in ``data.rated``, 6 steps: (export directory, metrics log)."""
    root = tmp_path_factory.mktemp("attributes-run")
    model = base if request.param == "qwen2" else make_tiny(root / "bert", "bert")
    log = run(root, train_config(root, model, "joint"))
    return root / "joint" / "model", log


def test_the_export_has_the_score_then_one_logit_per_attribute_named_in_id2label(trained):
    from transformers import AutoModelForSequenceClassification

    from rewardlab.models.bundle import RewardBundle
    from rewardlab.models.scorer import Scorer

    export, log = trained
    steps = [r for r in log if "loss" in r]
    assert len(steps) == 6 and all(math.isfinite(r["loss"]) for r in steps)
    assert all(math.isfinite(r["attribute_mse"]) for r in steps if "attribute_mse" in r)
    assert any("attribute_mse" in r for r in steps) and any("accuracy" in r for r in steps)
    config = json.loads((export / "config.json").read_text())
    assert config["id2label"] == {"0": "reward", "1": "quality", "2": "words"}
    meta = json.loads((export / "rewardlab.json").read_text())
    assert meta["labels"] == ["reward", "quality", "words"] and meta["attributes"] == ATTRIBUTES
    card = (export / "README.md").read_text()
    assert "attribute `quality`" in card and "[0, 40]" in card
    hf = AutoModelForSequenceClassification.from_pretrained(export).eval()
    assert hf.config.num_labels == 3
    bundle = RewardBundle.load(export)
    scorer = Scorer.from_pretrained(str(export))
    scores = scorer.score(PROMPT, RESPONSES)
    same, attributes = scorer.score_with_attributes(PROMPT, RESPONSES)
    assert same == pytest.approx(scores, abs=1e-6) and scorer.attribute_names == ["quality", "words"]
    for item, score, attrs in zip(scorer.encode(PROMPT, RESPONSES), scores, attributes):
        row = {"input_ids": torch.tensor([item.encoded.input_ids])}
        if item.encoded.token_type_ids is not None:
            row["token_type_ids"] = torch.tensor([item.encoded.token_type_ids])
        with torch.no_grad():
            logits = hf(**row).logits[0]
            ours = bundle.model(**row, attention_mask=torch.ones_like(row["input_ids"]), return_attributes=True)[0]
        assert logits[0].item() == pytest.approx(score, abs=1e-5)
        assert logits.tolist() == pytest.approx(ours.tolist(), abs=1e-5)
        assert logits[1:].tolist() == pytest.approx([attrs["quality"], attrs["words"]], abs=1e-5)


def test_rated_responses_alone_train_the_attribute_heads_and_leave_the_preference_loss_out(base, tmp_path):
    """A batch of rated responses only (no pair) has loss = attribute_weight × MSE; with weight 0 the heads do not
    move, so the rated rows' MSE is exactly the same at every step."""
    log = run(tmp_path, train_config(tmp_path, base, "rated-only", pairs=False))
    steps = [r for r in log if "loss" in r]
    assert all(r["loss"] == pytest.approx(r["attribute_mse"], rel=1e-3) for r in steps)
    assert "accuracy" not in steps[0]
    assert steps[-1]["attribute_mse"] < steps[0]["attribute_mse"]  # it learns at lr 2e-3


def test_ranked_groups_with_ratings_train_both_heads_as_pairs_and_as_groups(base, tmp_path):
    for name, extra in (("groups-as-pairs", {}), ("groups-listwise", {"data.ranked_as": "groups",
                                                                       "loss.name": "plackett_luce"})):  # fmt: skip
        steps = [r for r in run(tmp_path, train_config(tmp_path, base, name, groups=True, **extra)) if "loss" in r]
        assert len(steps) == 6 and all(math.isfinite(r["loss"]) for r in steps)
        assert any("attribute_mse" in r for r in steps)


def test_the_collator_puts_rated_rows_after_the_pairs_with_their_targets():
    from rewardlab.data.collator import GroupCollator, PairCollator

    pair = {"chosen_input_ids": [5, 6, 2], "rejected_input_ids": [5, 2], "margin": 0.5}
    rated = {"input_ids": [[7, 8, 9, 2]], "ranks": [1], "targets": [[0.25, float("nan")]]}
    batch = PairCollator(pad_token_id=0)([pair, rated])
    assert batch["input_ids"].tolist() == [[5, 6, 2, 0], [5, 2, 0, 0], [7, 8, 9, 2]]
    assert batch["margin"].tolist() == [0.5]
    targets = batch["attribute_targets"]
    assert targets.shape == (3, 2) and torch.isnan(targets[:2]).all() and targets[2, 0].item() == 0.25
    assert torch.isnan(targets[2, 1])
    only = PairCollator(pad_token_id=0)([rated])
    assert only["margin"].numel() == 0 and only["input_ids"].tolist() == [[7, 8, 9, 2]]
    shared = PairCollator(pad_token_id=0, share_prompts=True)([pair, rated])
    assert shared["score_positions"].shape == (3, 2) and shared["row_lengths"].tolist() == [3, 2, 4]
    group = {"input_ids": [[5, 6], [5, 7]], "ranks": [1, 2]}
    batch = GroupCollator(pad_token_id=0)([group, rated])
    assert batch["group_sizes"].tolist() == [2, 1] and batch["attribute_targets"].shape == (3, 2)
    assert torch.isnan(batch["attribute_targets"][:2]).all() and batch["attribute_targets"][2, 0].item() == 0.25


def test_weights_combine_the_score_and_the_attributes_as_documented():
    from rewardlab.models.scorer import combine_attributes

    assert combine_attributes(2.0, {"quality": 0.5, "words": 0.25}, {"reward": 1, "words": -2}) == 1.5
    assert combine_attributes(2.0, {"quality": 0.5}, {"quality": 4}) == 2.0
    with pytest.raises(ValueError, match="unknown weight 'verbosity'.*reward, quality"):
        combine_attributes(2.0, {"quality": 0.5}, {"verbosity": 1})


def test_ratings_are_scaled_by_their_range_into_the_heads_targets():
    from rewardlab.recipes.train import scaled_ratings

    got = scaled_ratings({"quality": 3.0, "words": None}, {"quality": (0, 4), "words": (0, 40)})
    assert got[0] == 0.75 and math.isnan(got[1])


@pytest.mark.parametrize(
    ("row", "field", "says"),
    [
        ({"prompt": "p", "response": "r", "ratings": {"quality": 5, "words": 3}}, "ratings.quality", "outside"),
        ({"prompt": "p", "response": "r", "ratings": {"quality": 2}}, "ratings.words", "no rating for 'words'"),
        ({"prompt": "p", "response": "r", "ratings": {"quality": "good", "words": 3}}, "ratings.quality",
         "finite number"),
        ({"prompt": "p", "response": "r", "ratings": [1, 2]}, "ratings", "object of attribute ratings"),
    ],
)  # fmt: skip
def test_bad_ratings_name_file_row_and_field_and_exit_2(base, tmp_path, capsys, row, field, says):
    good = rated_rows(2, seed=1)
    cfg = train_config(tmp_path, base, "bad", pairs=False)
    write_jsonl(tmp_path / "bad-rated.jsonl", [*good, row])
    cfg["data"]["train"] = str(tmp_path / "bad-rated.jsonl")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    from rewardlab.cli import main

    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"bad-rated.jsonl:{len(good) + 1}:{field}" in err and says in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_helpsteer_columns_read_as_one_rating_per_column(tmp_path):
    from rewardlab.config.schema import DataSource
    from rewardlab.data.readers import read_records

    rows = [{"prompt": "p", "response": "a", "helpfulness": 3, "verbosity": 1},
            {"prompt": "p", "response": "b", "helpfulness": 4, "verbosity": None}]  # fmt: skip
    path = write_jsonl(tmp_path / "hs.jsonl", rows)
    source = DataSource(path=str(path), columns={"ratings": ["helpfulness", "verbosity"]})
    records, report = read_records(source, {"helpfulness": (0, 4), "verbosity": (0, 4)})
    assert [r.ratings for r in records] == [({"helpfulness": 3.0, "verbosity": 1.0},),
                                            ({"helpfulness": 4.0, "verbosity": None},)]  # fmt: skip
    assert report.counts["rated_responses"] == 2 and report.counts["ratings_missing"] == 1
    csv = tmp_path / "hs.csv"
    csv.write_text("prompt,response,helpfulness,verbosity\np,a,3,1\np,b,4,\n")
    records, _ = read_records(DataSource(path=str(csv), columns={"ratings": ["helpfulness", "verbosity"]}))
    assert records[1].ratings == ({"helpfulness": 4.0, "verbosity": None},)


def test_settings_that_cannot_train_attributes_exit_2(base, tmp_path, capsys):
    cases = [
        ({"model.attributes": {"reward": [0, 1]}}, "not a usable name"),
        ({"model.attributes": {"quality": [4, 0]}}, "finite min < max"),
        ({"model.ensemble": {"members": 3}}, "do not combine"),
    ]
    for i, (extra, says) in enumerate(cases):
        cfg = train_config(tmp_path, base, f"bad{i}")
        for key, value in extra.items():
            section, _, field = key.partition(".")
            cfg[section][field] = value
        run(tmp_path, cfg, 2)
        assert says in capsys.readouterr().err
    no_ratings = train_config(tmp_path, base, "plain", rated=False)
    run(tmp_path, no_ratings, 2)
    assert "has no ratings" in capsys.readouterr().err
    rated_only = train_config(tmp_path, base, "unasked", pairs=False)
    del rated_only["model"]["attributes"]
    run(tmp_path, rated_only, 2)
    assert "set model.attributes" in capsys.readouterr().err


def test_inspect_summarizes_the_ratings_of_rated_files_and_rated_groups(tmp_path, capsys):
    from rewardlab.cli import main

    rows = [{"prompt": "p", "response": "a", "ratings": {"quality": 1, "words": 3}},
            {"prompt": "p", "response": "b", "ratings": {"quality": 3, "words": None}}]  # fmt: skip
    path = write_jsonl(tmp_path / "rated.jsonl", rows)
    assert main(["inspect", str(path), "--json", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["kind"] == "rated" and report["reader_counts"] == {"rated_responses": 2}
    assert report["ratings"]["quality"]["mean"] == 2 and report["ratings"]["quality"]["missing"] == 0
    assert report["ratings"]["words"]["count"] == 1 and report["ratings"]["words"]["missing"] == 1
    out = capsys.readouterr().out
    assert "rated responses (one row per response)" in out and "[quality=3, words=?] b" in out


def test_a_run_reports_its_attribute_heads_on_the_held_out_rated_responses(base, tmp_path):
    cfg = train_config(tmp_path, base, "held-out", groups=True)
    cfg["data"].pop("eval")
    cfg["data"]["eval_fraction"] = 0.25
    run(tmp_path, cfg)
    results = json.loads((tmp_path / "held-out" / "results.json").read_text())
    held = results["attributes"]
    assert set(held) == {"quality", "words"}
    assert held["quality"]["n"] == 2 * 6  # 6 of 24 groups held out, two rated responses each
    assert held["quality"]["mse"] >= 0 and -1 <= held["words"]["length_pearson"] <= 1
