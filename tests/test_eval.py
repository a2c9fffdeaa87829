"""`rewardlab eval` over a run's final export and checkpoints (one corrupt), and `rewardlab rank`."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from rewardlab.cli import main
from rewardlab.config import build_config
from rewardlab.config.schema import EvalConfig, TrainConfig
from rewardlab.data.synthetic import make_pairs
from rewardlab.errors import DataError, ModelError
from rewardlab.evaluation.metrics import preference_accuracy
from rewardlab.models.scorer import Scorer
from rewardlab.recipes.evaluate import run_eval
from rewardlab.recipes.train import run_train
from tests.tiny import make_tiny, pair_rows, write_jsonl

EVAL_PAIRS = make_pairs(60, seed=21)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    make_tiny(root / "base")
    write_jsonl(root / "train.jsonl", pair_rows(make_pairs(160, seed=20)))
    write_jsonl(root / "eval.jsonl", [{**r, "subset": p.subset} for r, p in zip(pair_rows(EVAL_PAIRS), EVAL_PAIRS)])
    groups = [
        {"prompt": p.prompt, "responses": [p.chosen, p.rejected, "No comment."], "ranks": [1, 2, 2]}
        for p in make_pairs(12, seed=22)
    ]
    write_jsonl(root / "groups.jsonl", groups)
    cfg = build_config(TrainConfig, {
        "output_dir": str(root / "runs" / "tiny"),
        "data": {"train": str(root / "train.jsonl"), "eval": str(root / "eval.jsonl"), "max_length": 96},
        "model": {"name_or_path": str(root / "base")},
        "training": {"max_steps": 20, "save_strategy": "steps", "save_steps": 10, "eval_strategy": "no",
                     "learning_rate": 2e-3, "per_device_train_batch_size": 8},
    })  # fmt: skip
    result = run_train(cfg)
    # A corrupt checkpoint among good ones: weights truncated to garbage.
    bad = root / "runs" / "tiny" / "checkpoint-30"
    shutil.copytree(root / "runs" / "tiny" / "checkpoint-20", bad)
    (bad / "model.safetensors").write_bytes(b"not a safetensors file")
    return root, result


def eval_config(root, **kw) -> EvalConfig:
    data = {
        "model_dirs": [str(root / "runs" / "*")],
        "eval_sets": [{"path": str(root / "eval.jsonl"), "label": "heldout"}, {"path": str(root / "groups.jsonl")}],
        "output_dir": str(root / "eval_out"),
        "plots": False,
        **kw,
    }
    return build_config(EvalConfig, data)


def test_eval_sweep_writes_results_and_skips_the_corrupt_checkpoint(trained):
    root, train_result = trained
    result = run_eval(eval_config(root, per_sample_scores=True))
    out = root / "eval_out"
    rows = list(csv.DictReader((out / "evaluation_results.csv").open()))
    assert [(r["checkpoint"], r["eval_set"]) for r in rows] == [
        (c, s)
        for c in ("final (= checkpoint-20)", "checkpoint-10", "checkpoint-20", "checkpoint-30")
        for s in ("heldout", "groups")
    ]
    assert {r["status"] for r in rows if r["checkpoint"] == "checkpoint-30"} == {"error"}
    assert all(r["status"] == "ok" for r in rows if r["checkpoint"] != "checkpoint-30")
    assert "checkpoint-30" in rows[-1]["path"] and rows[-1]["error"]
    # The final export on the held-out set gives exactly the training run's final eval accuracy.
    # The run ended at step 20: the export is named as checkpoint-20's twin.
    final = next(r for r in result.rows if r["checkpoint"].startswith("final") and r["eval_set"] == "heldout")
    assert final["accuracy"] == pytest.approx(train_result.metrics["eval_accuracy"], abs=1e-12)
    assert final["n_pairs"] == 60 and final["step"] == 30  # the final export sits after the last checkpoint
    groups_row = next(r for r in result.rows if r["checkpoint"].startswith("final") and r["eval_set"] == "groups")
    assert groups_row["n_groups"] == 12 and groups_row["n_pairs"] == 24  # ties give no pair
    assert -1 <= groups_row["kendall_tau"] <= 1

    payload = json.loads((out / "evaluation_results.json").read_text())
    assert len(payload["rows"]) == 8 and set(payload["best"]) == {"heldout", "groups"}
    detail = payload["details"][0]
    assert set(detail["subsets"]["subsets"]) == {p.subset for p in EVAL_PAIRS}
    assert len(detail["reliability"]) == 10 and len(detail["scores"]["chosen"]) == 60
    logs = list((out / "logs").glob("eval_*.log"))
    assert len(logs) == 1 and "checkpoint-30" in logs[0].read_text()


def test_eval_scores_match_the_scorer_and_the_score_command(trained, tmp_path):
    """One scoring path: eval, the Scorer and `rewardlab score` give the same numbers."""
    root, _ = trained
    model = root / "runs" / "tiny" / "model"
    run_eval(
        eval_config(
            root,
            model_dirs=[str(model)],
            per_sample_scores=True,
            eval_sets=[str(root / "eval.jsonl")],
            output_dir=str(tmp_path / "e"),
        )
    )
    chosen = json.loads((tmp_path / "e" / "evaluation_results.json").read_text())["details"][0]["scores"]["chosen"]
    direct = Scorer.from_pretrained(str(model), device="cpu").score(
        [p.prompt for p in EVAL_PAIRS], [p.chosen for p in EVAL_PAIRS]
    )
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": p.prompt, "response": p.chosen} for p in EVAL_PAIRS])
    assert main(["score", "--model", str(model), "--input", str(inp), "--output", str(tmp_path / "s.jsonl")]) == 0
    cli = [json.loads(x)["score"] for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert chosen == pytest.approx(direct, abs=1e-6) and cli == pytest.approx(direct, abs=1e-6)
    assert preference_accuracy(chosen, chosen)["ties"] == 60


def test_eval_bad_inputs(trained, tmp_path, capsys):
    root, _ = trained
    with pytest.raises(ModelError, match="no directory matches"):
        run_eval(eval_config(root, model_dirs=[str(tmp_path / "nothing*")]))
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(ModelError, match="no model to evaluate"):
        run_eval(eval_config(root, model_dirs=[str(tmp_path / "empty_run")]))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="empty.jsonl"):
        run_eval(eval_config(root, eval_sets=[str(tmp_path / "empty.jsonl")]))
    cfg = tmp_path / "e.yaml"
    cfg.write_text(f"model_dirs: [{tmp_path / 'nothing'}]\neval_sets: [{root / 'eval.jsonl'}]\nchekpoint_pattern: x\n")
    assert main(["eval", "--config", str(cfg)]) == 2
    assert "chekpoint_pattern: unknown key; did you mean 'checkpoint_pattern'?" in capsys.readouterr().err
    assert not (tmp_path / "eval_results").exists()


def test_rank_command(trained, capsys, tmp_path):
    root, _ = trained
    p = EVAL_PAIRS[0]
    model = str(root / "runs" / "tiny" / "model")
    assert (
        main(
            [
                "rank",
                "--model",
                model,
                "--prompt",
                p.prompt,
                "--response",
                p.rejected,
                "--response",
                p.chosen,
                "--normalize",
            ]
        )
        == 0
    )
    ranked = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in ranked] == [1, 2] and sorted(r["index"] for r in ranked) == [0, 1]
    assert ranked[0]["score"] >= ranked[1]["score"] and "normalized_score" in ranked[0]
    scores = Scorer.from_pretrained(model, device="cpu").score(p.prompt, [p.rejected, p.chosen])
    assert ranked[0]["score"] == pytest.approx(max(scores), abs=1e-6)
    assert main(["rank", "--model", model, "--prompt", "p", "--response", "only one"]) == 2
    assert "at least 2 responses" in capsys.readouterr().err


def test_eval_on_the_shared_real_sets_writes_outputs_and_plots(trained, tmp_path, shared_data_dir):
    root, _ = trained
    out = tmp_path / "real"
    result = run_eval(eval_config(
        root, model_dirs=[str(root / "runs" / "tiny")], checkpoint_pattern="checkpoint-[12]0", plots=True,
        output_dir=str(out),
        eval_sets=[
            {"path": str(shared_data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"), "max_samples": 40,
             "label": "hh"},
            {"path": str(shared_data_dir / "hhh-alignment" / "hhh_alignment_rankings.jsonl"), "max_samples": 20,
             "label": "hhh"},
        ],
    ))  # fmt: skip
    assert len(result.rows) == 6 and all(r["status"] == "ok" for r in result.rows)
    hh = next(r for r in result.rows if r["eval_set"] == "hh")
    assert hh["n_pairs"] == 40 and 0 <= hh["accuracy"] <= 1 and 0 <= hh["ece"] <= 1
    hhh = next(r for r in result.rows if r["eval_set"] == "hhh")
    assert hhh["n_groups"] == 20 and -1 <= hhh["kendall_tau"] <= 1
    for name in ("evaluation_results.csv", "evaluation_results.json"):
        assert (out / name).stat().st_size > 0
    assert next((out / "logs").glob("eval_*.log")).stat().st_size > 0
    plots = json.loads((out / "evaluation_results.json").read_text())["plots"]
    expected = {
        "accuracy_by_step_hh.png",
        "scores_hh.png",
        "margins_hh.png",
        "reliability_hh.png",
        "score_vs_length_hh.png",
        "score_bars_hhh.png",
        "accuracy_by_step_hhh.png",
    }
    assert expected <= set(plots)
    for name in plots:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == len(plots)


def test_eval_scores_the_final_export_and_its_identical_checkpoint_once(trained, monkeypatch):
    root, _ = trained
    scored = []
    real_score = Scorer.score

    def counting_score(self, prompts, *args, **kwargs):
        scored.append(len(prompts))
        return real_score(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Scorer, "score", counting_score)
    result = run_eval(eval_config(root, output_dir=str(root / "eval_once")))
    # final and checkpoint-10 are scored on both sets; checkpoint-20 (the final export's weights) is not scored
    # again; checkpoint-30 does not load.
    assert scored == [120, 36, 120, 36]  # 60 pairs, 12 groups of 3
    by = {(r["checkpoint"], r["eval_set"]): r for r in result.rows}
    identity = ("model", "checkpoint", "step", "path", "seconds")
    for es in ("heldout", "groups"):
        final, twin = by[("final (= checkpoint-20)", es)], by[("checkpoint-20", es)]
        assert {k: v for k, v in twin.items() if k not in identity} == {
            k: v for k, v in final.items() if k not in identity
        }
        assert twin["path"].endswith("checkpoint-20") and twin["step"] == 20 and twin["seconds"] == 0.0
