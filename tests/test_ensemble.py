"""Ensembles of reward heads (``model.ensemble``): one backbone, K heads, the mean as the reward, the members'
spread as its uncertainty — in training, in the export (plain transformers reads the mean as ``logits[:, 0]``) and
in the Scorer."""

from __future__ import annotations

import json
import statistics

import pytest
import torch

from tests.test_shared_prefix import train_losses
from tests.tiny import make_tiny

PROMPT = "Name a colour of the sky."
RESPONSES = ["Blue.", "The sky is often blue, and red at sunset.", "Seven.", "blue blue blue blue"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("ensemble") / "qwen2", "qwen2")


@pytest.fixture(scope="module", params=["qwen2", "bert"])
def trained(request, base, tmp_path_factory):
    """A 3-head bootstrapped ensemble trained 6 steps, decoder (``score`` head at the last token) and encoder
    (the model's own [CLS] classifier): (export directory, per-step losses)."""
    root = tmp_path_factory.mktemp("ensemble-run")
    model = base if request.param == "qwen2" else make_tiny(root / "bert", "bert")
    losses, _ = train_losses(root, model, "ens", **{"model.ensemble.members": 3})
    return root / "ens" / "model", losses


def test_the_export_is_a_plain_sequence_classifier_whose_first_logit_is_the_members_mean(trained):
    from transformers import AutoModelForSequenceClassification

    from rewardlab.models.scorer import Scorer

    export, losses = trained
    assert len(losses) == 6 and all(l == l for l in losses)  # noqa: E741 (no NaN)
    config = json.loads((export / "config.json").read_text())
    assert config["id2label"] == {"0": "reward", "1": "member_1", "2": "member_2", "3": "member_3"}
    assert json.loads((export / "rewardlab.json").read_text())["labels"] == ["reward", "member_1", "member_2",
                                                                           "member_3"]  # fmt: skip
    hf = AutoModelForSequenceClassification.from_pretrained(export).eval()
    assert hf.config.num_labels == 4
    scorer = Scorer.from_pretrained(str(export))
    scores, spread = scorer.score_with_uncertainty(PROMPT, RESPONSES)
    assert scorer.score(PROMPT, RESPONSES) == pytest.approx(scores, abs=1e-6)
    for item, score, std in zip(scorer.encode(PROMPT, RESPONSES), scores, spread):
        row = {"input_ids": torch.tensor([item.encoded.input_ids])}
        if item.encoded.token_type_ids is not None:
            row["token_type_ids"] = torch.tensor([item.encoded.token_type_ids])
        with torch.no_grad():
            logits = hf(**row).logits[0]
        assert logits[0].item() == pytest.approx(score, abs=1e-5)  # the saved row 0 is the members' mean
        assert logits[1:].mean().item() == pytest.approx(score, abs=1e-5)
        assert statistics.pstdev(logits[1:].tolist()) == pytest.approx(std, abs=1e-5)
    assert min(spread) > 0  # heads started apart and saw different bootstrap weights


def test_a_one_member_ensemble_is_the_plain_reward_model_exactly(base, tmp_path):
    from safetensors.torch import load_file

    plain, _ = train_losses(tmp_path, base, "plain")
    one, _ = train_losses(tmp_path, base, "one", **{"model.ensemble.members": 1})
    assert one == plain
    a, b = (
        load_file(tmp_path / "plain" / "model" / "model.safetensors"),
        load_file(tmp_path / "one" / "model" / "model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    from rewardlab.models.scorer import Scorer

    scores, spread = Scorer.from_pretrained(str(tmp_path / "one" / "model")).score_with_uncertainty(PROMPT, RESPONSES)
    assert spread == [None] * len(RESPONSES)


def test_bootstrap_weights_make_identical_heads_differ(base):
    """Heads that start equal stay equal on the plain loss and move apart under their own Poisson(1) weights."""
    from transformers import AutoModelForSequenceClassification, TrainingArguments

    from rewardlab.config.schema import LossConfig
    from rewardlab.models.export_meta import ExportMeta
    from rewardlab.models.reward_model import RewardModel
    from rewardlab.training.trainer import RewardTrainer

    hf = AutoModelForSequenceClassification.from_pretrained(base, num_labels=4, ignore_mismatched_sizes=True)
    with torch.no_grad():
        hf.score.weight[1:] = hf.score.weight[1]  # three identical members
    model = RewardModel(hf, "last", members=3).train()
    args = TrainingArguments("unused", use_cpu=True, report_to=[], seed=7)
    batch = {  # two pairs: rows 0-1 chosen, rows 2-3 rejected
        "input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12], [5, 6, 7, 13], [9, 10, 14, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]]),
        "margin": torch.zeros(2),
    }
    grads = {}
    for bootstrap in (False, True):
        trainer = RewardTrainer(model=model, args=args, loss_config=LossConfig(), export_meta=ExportMeta(),
                                bootstrap=bootstrap)  # fmt: skip
        model.zero_grad()
        trainer.compute_loss(model, dict(batch)).backward()
        grads[bootstrap] = hf.score.weight.grad[1:].clone()
    assert torch.equal(grads[False][0], grads[False][1]) and torch.equal(grads[False][1], grads[False][2])
    assert not torch.allclose(grads[True][0], grads[True][1]) or not torch.allclose(grads[True][1], grads[True][2])
    weights = trainer._bootstrap_weights(batch, 3, torch.device("cpu"))
    assert weights.shape == (3, 2) and (weights >= 0).all() and torch.equal(weights, weights.round())


def test_ensemble_settings_are_checked(base, tmp_path, capsys):
    assert train_losses(tmp_path, base, "zero", rc=2, **{"model.ensemble.members": 0}) is None
    assert "members" in capsys.readouterr().err


def test_score_compare_rank_print_the_uncertainty(trained, tmp_path, capsys):
    from rewardlab.cli import main
    from rewardlab.models.scorer import Scorer

    export, _ = trained
    scores, spread = Scorer.from_pretrained(str(export)).score_with_uncertainty(PROMPT, RESPONSES)
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"prompt": PROMPT, "response": r}) + "\n" for r in RESPONSES))
    assert main(["score", "--model", str(export), "--input", str(rows), "--output", str(tmp_path / "out.jsonl")]) == 0
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["uncertainty"] for r in out] == pytest.approx(spread, abs=1e-6)
    capsys.readouterr()
    assert main(["compare", "--model", str(export), "--prompt", PROMPT, "--a", RESPONSES[0], "--b", RESPONSES[1]]) == 0
    c = json.loads(capsys.readouterr().out)
    from rewardlab.serving.schemas import CompareResponse

    # The CLI prints what /v1/compare answers (an ensemble: every field but an attribute model's).
    assert list(c) == [
        k for k in CompareResponse.model_fields if not k.startswith(("attributes_", "combined_", "p_a_", "orders_"))
    ]
    assert c["uncertainty_a"] == pytest.approx(spread[0], abs=1e-6) and 0 <= c["agreement"] <= 1
    argv = ["rank", "--model", str(export), "--prompt", PROMPT, *[x for r in RESPONSES for x in ("--response", r)]]
    assert main(argv) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert {r["index"]: r["uncertainty"] for r in ranked} == pytest.approx(dict(enumerate(spread)), abs=1e-6)


def test_the_server_returns_uncertainties(trained):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from rewardlab.models.scorer import Scorer
    from tests.servers import ThreadServer

    export, _ = trained
    scorer = Scorer.from_pretrained(str(export))
    scores, spread = scorer.score_with_uncertainty(PROMPT, RESPONSES)
    with ThreadServer(scorer) as server:
        body = {"items": [{"prompt": PROMPT, "response": r} for r in RESPONSES]}
        r = httpx.post(f"{server.url}/v1/score", json=body, timeout=120).json()
        assert r["scores"] == pytest.approx(scores, abs=1e-5) and r["uncertainties"] == pytest.approx(spread, abs=1e-5)
        body = {"query": [PROMPT + x for x in RESPONSES], "prompts": [PROMPT] * len(RESPONSES)}
        r = httpx.post(f"{server.url}/get_reward", json=body, timeout=120).json()
        assert r["extra_logs"]["rewardlab_uncertainty"] == pytest.approx(spread, abs=1e-5)
        r = httpx.post(f"{server.url}/v1/compare", json={"prompt": PROMPT, "a": RESPONSES[0], "b": RESPONSES[2]},
                       timeout=120).json()  # fmt: skip
        assert r["uncertainty_b"] == pytest.approx(spread[2], abs=1e-5) and r["agreement"] is not None


def test_uncertainty_metrics_exact():
    from rewardlab.evaluation.metrics import uncertainty_metrics

    # Misranked pairs carry the largest spreads: selective accuracy rises as coverage falls, AUROC 1.
    # The baseline ranks by −|margin|: 3, 2, −2 (stable order), 1, −1 — misranked pairs have the smaller |margin|
    # less clearly (4 of 6 wrong-vs-right comparisons, a tie counting half).
    assert uncertainty_metrics([1, -1, 2, -2, 3], [0.1, 0.9, 0.2, 0.8, 0.3]) == pytest.approx({
        "selective_accuracy_50": 1.0, "selective_accuracy_80": 0.75, "uncertainty_auroc": 1.0,
        "margin_selective_accuracy_50": 2 / 3, "margin_selective_accuracy_80": 0.75,
        "margin_auroc": 4 / 6})  # fmt: skip
    assert uncertainty_metrics([1, -1, 2, -2, 3], [0.9, 0.1, 0.8, 0.2, 0.7])["uncertainty_auroc"] == 0.0
    # A tie (margin 0) counts half in accuracy and stays out of the AUROC; tied spreads count half.
    out = uncertainty_metrics([1, -1, 2, 0, 3], [0.5, 0.5, 0.1, 0.2, 0.3])
    assert {k: v for k, v in out.items() if not k.startswith("margin")} == pytest.approx(
        {"selective_accuracy_50": 2.5 / 3, "selective_accuracy_80": 3.5 / 4, "uncertainty_auroc": 2.5 / 3}
    )
    assert uncertainty_metrics([1, 2], [0.1, 0.2])["uncertainty_auroc"] is None  # nothing misranked


def test_eval_reports_selective_accuracy_and_auroc_for_an_ensemble(trained, tmp_path):
    import csv

    from rewardlab.config.schema import EvalConfig
    from rewardlab.data.synthetic import make_pairs
    from rewardlab.recipes.evaluate import run_eval
    from tests.tiny import pair_rows, write_jsonl

    export, _ = trained
    data = write_jsonl(tmp_path / "eval.jsonl", pair_rows(make_pairs(40, seed=9)))
    run_eval(EvalConfig(model_dirs=[str(export)], eval_sets=[str(data)], output_dir=str(tmp_path / "ev"), plots=False))
    (row,) = csv.DictReader((tmp_path / "ev" / "evaluation_results.csv").open())
    for key in ("selective_accuracy_50", "selective_accuracy_80"):
        assert 0 <= float(row[key]) <= 1
    for key in ("uncertainty_auroc", "margin_auroc"):
        assert row[key] == "" or 0 <= float(row[key]) <= 1
    assert 0 <= float(row["margin_selective_accuracy_50"]) <= 1


@pytest.fixture(scope="module")
def qwen_ensemble(base, tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble-rl")
    train_losses(root, base, "ens", **{"model.ensemble.members": 4})
    return root / "ens" / "model"


def test_the_rl_uncertainty_penalty_is_mean_minus_lambda_std_per_sample(qwen_ensemble, base, tmp_path):
    from rewardlab.config.schema import RewardSource
    from rewardlab.errors import ConfigError
    from rewardlab.models.scorer import Scorer
    from rewardlab.rl.sources import build_rewards

    funcs, weights = build_rewards([RewardSource(type="model", path=str(qwen_ensemble), weight=2.0,
                                                 uncertainty_penalty=0.5)])  # fmt: skip
    assert [f.__name__ for f in funcs] == ["model", "model_uncertainty"] and weights == [2.0, -1.0]
    prompts, completions = [PROMPT] * len(RESPONSES), list(RESPONSES)
    total = [sum(w * v for w, v in zip(weights, values))
             for values in zip(*(f(prompts=prompts, completions=completions) for f in funcs))]  # fmt: skip
    scores, spread = Scorer.from_pretrained(str(qwen_ensemble)).score_with_uncertainty(prompts, completions)
    assert total == pytest.approx([2.0 * (s - 0.5 * u) for s, u in zip(scores, spread)], abs=1e-5)
    # A penalty needs an ensemble (a plain RM has no spread) and a model loaded in the run.
    plain, _ = train_losses(tmp_path, base, "plain")
    with pytest.raises(ConfigError, match="needs an ensemble reward model"):
        build_rewards([RewardSource(type="model", path=str(tmp_path / "plain" / "model"), uncertainty_penalty=1)])
    with pytest.raises(ValueError, match="a rule has no uncertainty"):
        RewardSource(type="rule", rule="length", uncertainty_penalty=1)
    with pytest.raises(ValueError, match="give the server's base URL"):
        RewardSource(type="remote", url="http://127.0.0.1:1/get_reward", uncertainty_penalty=1)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        RewardSource(type="model", path="x", uncertainty_penalty=-1)


def test_a_served_ensemble_gives_the_remote_reward_the_same_penalty(qwen_ensemble, base, tmp_path):
    """`remote` + uncertainty_penalty: the client reads /v1/score's uncertainties, and the penalized reward equals
    the local one; a served single head is refused before the run, as is a server that is not rewardlab's."""
    pytest.importorskip("fastapi")
    from rewardlab.config.schema import RewardSource, RLConfig
    from rewardlab.errors import ConfigError
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.rl import check_remote_rewards
    from rewardlab.rl.sources import build_rewards
    from rewardlab.serving.client import RewardClient
    from tests.servers import ThreadServer

    scorer = Scorer.from_pretrained(str(qwen_ensemble))
    prompts, completions = [PROMPT] * len(RESPONSES), list(RESPONSES)
    scores, spread = scorer.score_with_uncertainty(prompts, completions)
    with ThreadServer(scorer) as server:
        source = RewardSource(type="remote", url=server.url, name="rm", weight=2.0, uncertainty_penalty=0.5)
        check_remote_rewards(RLConfig.model_construct(rewards=[source]))  # an ensemble: accepted
        funcs, weights = build_rewards([source])
        assert [f.__name__ for f in funcs] == ["rm", "rm_uncertainty"] and weights == [2.0, -1.0]
        values = [f(prompts=prompts, completions=completions) for f in funcs]
        assert values[1] == pytest.approx(spread, abs=1e-5)
        total = [sum(w * v for w, v in zip(weights, row)) for row in zip(*values)]
        assert total == pytest.approx([2.0 * (s - 0.5 * u) for s, u in zip(scores, spread)], abs=1e-5)
        funcs[0].client.close()
        with RewardClient(f"{server.url}/get_reward") as client:  # OpenRLHF's contract carries them in extra_logs
            assert client.score_with_uncertainty(prompts, completions)[1] == pytest.approx(spread, abs=1e-5)
    plain, _ = train_losses(tmp_path, base, "plain")
    with ThreadServer(Scorer.from_pretrained(str(tmp_path / "plain" / "model"))) as server:
        source = RewardSource(type="remote", url=server.url, uncertainty_penalty=1.0)
        with pytest.raises(ConfigError, match="the server's model has one head"):
            check_remote_rewards(RLConfig.model_construct(rewards=[source]))
        with RewardClient(server.url) as client:
            assert client.score_with_uncertainty(prompts, completions)[1] is None


@pytest.mark.slow
def test_a_two_step_grpo_run_logs_the_ensemble_reward_and_its_penalty_apart(qwen_ensemble, tmp_path):
    from rewardlab.cli import main
    from tests.test_rl import make_policy, metrics, rl_config
    from tests.tiny import write_jsonl

    make_policy(tmp_path)
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Describe tea in {n} words."} for n in range(2, 14)])
    rewards = [{"type": "model", "path": str(qwen_ensemble), "name": "rm", "uncertainty_penalty": 2.0}]
    assert main(["rl", "--config", str(rl_config(tmp_path, "run", rewards=rewards))]) == 0
    train = [r for r in metrics(tmp_path / "run") if "rewards/rm/mean" in r]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["rewards/rm_uncertainty/mean"] > 0
        assert r["reward"] == pytest.approx(r["rewards/rm/mean"] - 2.0 * r["rewards/rm_uncertainty/mean"], abs=1e-4)


def test_select_writes_the_items_the_ensemble_disagrees_on_most(qwen_ensemble, tmp_path, capsys):
    from rewardlab.cli import main
    from rewardlab.data.synthetic import make_pairs
    from rewardlab.models.scorer import Scorer
    from tests.tiny import pair_rows, write_jsonl

    pairs = make_pairs(12, seed=4)
    pool = write_jsonl(tmp_path / "pool.jsonl", [{**r, "id": f"p{i}"} for i, r in enumerate(pair_rows(pairs))])
    out = tmp_path / "picked.jsonl"
    assert main(["select", "--model", str(qwen_ensemble), "--data", str(pool), "--top", "5", "--out", str(out)]) == 0
    assert "selected 5 of 12 items by ensemble_spread" in capsys.readouterr().err
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    scorer = Scorer.from_pretrained(str(qwen_ensemble))
    spreads = []
    for p in pairs:
        rows = scorer.score_items(scorer.encode(p.prompt, [p.chosen, p.rejected]), members=True)
        spreads.append(statistics.pstdev([a - b for a, b in zip(rows[0][1:], rows[1][1:])]))
    order = sorted(range(12), key=lambda i: -spreads[i])[:5]
    assert [r["row"] for r in picked] == [i + 1 for i in order]
    assert [r["id"] for r in picked] == [f"p{i}" for i in order]
    assert [r["uncertainty"] for r in picked] == pytest.approx([spreads[i] for i in order], abs=1e-6)
    assert picked[0]["responses"] == [pairs[order[0]].chosen, pairs[order[0]].rejected]
    # --criterion margin: the ensemble's mean margin closest to a coin flip first, as a single head would rank.
    assert main(["select", "--model", str(qwen_ensemble), "--data", str(pool), "--top", "5", "--out", str(out),
                 "--criterion", "margin"]) == 0  # fmt: skip
    chosen, rejected = scorer.score_pairs(pairs)
    closeness = [-abs(c - r) for c, r in zip(chosen, rejected)]
    by_margin = sorted(range(12), key=lambda i: -closeness[i])[:5]
    picked = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["row"] for r in picked] == [i + 1 for i in by_margin] and picked[0]["criterion"] == "margin"
    assert [r["uncertainty"] for r in picked] == pytest.approx([closeness[i] for i in by_margin], abs=1e-5)
    # Candidates without ranks (as `generate` writes them): a group's most disputed pair decides.
    candidates = [{"prompt": PROMPT, "responses": RESPONSES}, {"prompt": "Hi", "responses": ["Hello.", "Hey."]}]
    groups = write_jsonl(tmp_path / "cands.jsonl", candidates)
    assert main(["select", "--model", str(qwen_ensemble), "--data", str(groups), "--top", "9", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
    # Bad input: exit 2, one message.
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": "x", "responses": ["only one"]}) + "\n")
    assert main(["select", "--model", str(qwen_ensemble), "--data", str(tmp_path / "bad.jsonl"), "--top", "1",
                 "--out", str(out)]) == 2  # fmt: skip
    assert "bad.jsonl:1:responses: needs a list of at least 2 responses" in capsys.readouterr().err


def test_label_serves_the_items_the_ensemble_is_least_sure_about_first(qwen_ensemble, tmp_path, capsys):
    from rewardlab.cli import main
    from rewardlab.data.synthetic import make_pairs
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.label import load_items, uncertain_first
    from tests.tiny import pair_rows, write_jsonl

    pairs = make_pairs(8, seed=6)
    data = write_jsonl(tmp_path / "pool.jsonl", pair_rows(pairs))
    store = load_items(str(tmp_path / "l.sqlite"), str(data), order=uncertain_first(str(data), str(qwen_ensemble)))
    scorer = Scorer.from_pretrained(str(qwen_ensemble))
    spreads = []
    for p in pairs:
        rows = scorer.score_items(scorer.encode(p.prompt, [p.chosen, p.rejected]), members=True)
        spreads.append(statistics.pstdev([a - b for a, b in zip(rows[0][1:], rows[1][1:])]))
    order = sorted(range(len(pairs)), key=lambda i: -spreads[i])
    assert [it.prompt for it in store.all_items()] == [pairs[i].prompt for i in order]
    assert store.next_item("ann", 1).prompt == pairs[order[0]].prompt
    store.close()
    assert main(["label", str(data), "--db", str(tmp_path / "m.sqlite"), "--order", "uncertain"]) == 2
    assert "--order uncertain needs the reward model" in capsys.readouterr().err


def test_an_ensemble_with_lora_exports_merged_and_reloads_its_checkpoint_adapter(base, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from rewardlab.models.scorer import Scorer

    train_losses(tmp_path, base, "lora", **{"model.ensemble.members": 2, "model.lora.r": 4,
                                            "training.save_strategy": "steps", "training.save_steps": 6})  # fmt: skip
    export, checkpoint = tmp_path / "lora" / "model", tmp_path / "lora" / "checkpoint-6"
    assert (checkpoint / "adapter_config.json").is_file()  # checkpoints keep the adapter
    merged = Scorer.from_pretrained(str(export))
    scores, spread = merged.score_with_uncertainty(PROMPT, RESPONSES)
    adapter_scores, adapter_spread = Scorer.from_pretrained(str(checkpoint)).score_with_uncertainty(PROMPT, RESPONSES)
    assert adapter_scores == pytest.approx(scores, abs=1e-4) and adapter_spread == pytest.approx(spread, abs=1e-4)
    hf = AutoModelForSequenceClassification.from_pretrained(export).eval()
    for item, score in zip(merged.encode(PROMPT, RESPONSES), scores):
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([item.encoded.input_ids])).logits[0]
        assert logits[0].item() == pytest.approx(score, abs=1e-5) and logits.shape == (3,)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["heads", "lora"])
def test_overopt_demo_runs_three_arms_against_a_logged_gold_reward(kind, tmp_path, capsys):
    """`rewardlab demo --overopt` at a tiny size: the proxy RMs train on gold-labelled pairs with the asked share of
    flipped labels; each arm's RL logs the gold rule at every step but trains on the proxy alone (gold weight 0:
    the single arm's summed reward is exactly its proxy's), the penalized arm logs its uncertainty and trains on
    mean − λ·std; plot, report and summary written. With `ensemble_kind=lora` the ensemble proxy is LoRA members
    (base + adapters export) and RL penalizes their spread the same way."""
    from rewardlab.cli import main

    out = tmp_path / "oo"
    args = ["demo", "--overopt", "--output-dir", str(out), "warmup_steps=10", "n_pairs=48", "rl_steps=3",
            "n_prompts=32", "n_eval=16", "members=3", "penalty=2.0", "label_noise=0.25",
            f"ensemble_kind={kind}"]  # fmt: skip
    assert main(args) == 0
    proxy = out / "rm-ensemble" / "model"
    if kind == "lora":  # the base and one adapter per member, no merged model at the top
        assert json.loads((proxy / "rewardlab.json").read_text())["ensemble_kind"] == "lora"
        assert sorted(p.name for p in (proxy / "members").iterdir()) == ["member_1", "member_2", "member_3"]
    else:  # one model whose logits are the mean and the 3 heads
        assert json.loads((proxy / "config.json").read_text())["id2label"]["3"] == "member_3"
    assert ("3 LoRA members" if kind == "lora" else "3 heads") in (out / "report.md").read_text()
    assert "ensemble − λ·std" in capsys.readouterr().out
    summary = json.loads((out / "demo_summary.json").read_text())
    assert set(summary["arms"]) == {"single", "ensemble", "penalized"}
    pairs = [json.loads(x) for x in (out / "gold_pairs.jsonl").read_text().splitlines()]
    flipped = sum(gold(p, "chosen") < gold(p, "rejected") for p in pairs) / 48
    assert len(pairs) == 48 and summary["labels_flipped"] == pytest.approx(flipped)
    rows = {arm: [json.loads(x) for x in (out / "rl" / arm / "metrics.jsonl").read_text().splitlines()
                  if "rewards/gold/mean" in x] for arm in summary["arms"]}  # fmt: skip
    for arm, logged in rows.items():
        assert [r["step"] for r in logged] == [1, 2, 3], arm
        assert summary["arms"][arm]["curves"]["gold"] == [r["rewards/gold/mean"] for r in logged]
    for r in rows["single"]:
        assert r["reward"] == pytest.approx(r["rewards/proxy/mean"], abs=1e-5)
    for r in rows["penalized"]:
        assert r["rewards/proxy_uncertainty/mean"] > 0
        assert r["reward"] == pytest.approx(r["rewards/proxy/mean"] - 2.0 * r["rewards/proxy_uncertainty/mean"],
                                            abs=1e-4)  # fmt: skip
    assert (out / "overoptimization.png").stat().st_size > 10_000
    assert "| ensemble mean |" in (out / "report.md").read_text()


def gold(pair: dict, key: str) -> float:
    from rewardlab.rl.rules import count_words, word_count_reward

    return word_count_reward(pair["target_words"], count_words(pair[key]))


# -- LoRA ensembles (model.ensemble.kind: lora): K adapters and heads on one frozen base --------------------------
LORA = {"model.ensemble.members": 3, "model.ensemble.kind": "lora", "model.lora.r": 4}


def lora_bundle(model, tmp_path, **ensemble):
    """A freshly initialised (seeded) 3-member LoRA ensemble on ``model``, as `train` builds it (no LoRA dropout, so
    that two training-mode forwards agree)."""
    from rewardlab.config.schema import TrainConfig
    from rewardlab.models.bundle import RewardBundle

    cfg = TrainConfig.model_validate({
        "output_dir": str(tmp_path / "unused"), "data": {"train": "unused.jsonl", "max_length": 64},
        "model": {"name_or_path": str(model), "lora": {"r": 4, "dropout": 0.0},
                  "ensemble": {"members": 3, "kind": "lora", **ensemble}},
    })  # fmt: skip
    return RewardBundle.for_training(cfg)


def member_state(backbone, name):
    """One member's adapter and head, under the names its saved adapter file uses."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(backbone, adapter_name=name).items()}


def perturb(backbone, seed=3):
    """Random LoRA B matrices (zero at initialisation): every member then changes the base's features."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)


@pytest.fixture(scope="module")
def lora_run(base, tmp_path_factory):
    """A 3-member bootstrapped LoRA ensemble trained 6 steps (checkpoint at step 6): (run directory, losses)."""
    root = tmp_path_factory.mktemp("lora-ensemble")
    losses, _ = train_losses(root, base, "lora", **LORA, **{"training.save_strategy": "steps",
                                                             "training.save_steps": 6})  # fmt: skip
    return root / "lora", losses


def test_a_lora_ensemble_trains_every_member_apart_and_exports_base_plus_adapters(lora_run, base, tmp_path):
    from safetensors.torch import load_file

    from rewardlab.models.reward_model import member_names
    from rewardlab.models.scorer import Scorer

    run, losses = lora_run
    export = run / "model"
    assert len(losses) == 6 and all(l == l for l in losses)  # noqa: E741 (no NaN)
    assert not (export / "config.json").exists()  # no single classifier: plain loaders fail instead of misreading
    assert (export / "base" / "config.json").is_file() and (export / "base" / "model.safetensors").is_file()
    meta = json.loads((export / "rewardlab.json").read_text())
    assert meta["ensemble_kind"] == "lora" and meta["labels"] == ["reward", "member_1", "member_2", "member_3"]
    assert not (run / "checkpoint-6" / "base").exists()  # checkpoints name their base, as adapter checkpoints do
    assert json.loads((run / "checkpoint-6" / "rewardlab.json").read_text())["adapter"]["base_model"] == str(base)
    # Each member starts from its own head and LoRA A matrices, and every one of its tensors was trained.
    initial = lora_bundle(base, tmp_path).model.backbone
    start = {name: member_state(initial, name) for name in member_names(3)}
    heads = [next(v for k, v in start[name].items() if k.endswith("score.weight")) for name in member_names(3)]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])
    for name in member_names(3):
        saved = load_file(export / "members" / name / "adapter_model.safetensors")
        assert saved.keys() == start[name].keys() and any(k.endswith("score.weight") for k in saved)
        assert [k for k in saved if torch.equal(saved[k], start[name][k])] == []
    # The members score differently; the reward is their mean.
    scorer = Scorer.from_pretrained(str(export))
    for row in scorer.score_items(scorer.encode(PROMPT, RESPONSES), members=True):
        assert len(set(row[1:])) == 3 and row[0] == pytest.approx(statistics.mean(row[1:]), abs=1e-6)
    assert min(scorer.score_with_uncertainty(PROMPT, RESPONSES)[1]) > 0


def test_each_lora_member_gets_exactly_its_own_gradient(base, tmp_path):
    """Without bootstrap the loss is the members' mean loss, so member k's adapter and head get 1/K of the gradient
    of its own loss computed alone (its adapter active, no other member in the graph)."""
    from transformers import TrainingArguments

    from rewardlab.config.schema import LossConfig
    from rewardlab.models.export_meta import ExportMeta
    from rewardlab.models.reward_model import RewardModel, member_names
    from rewardlab.training.losses import bradley_terry_loss
    from rewardlab.training.trainer import RewardTrainer

    model = lora_bundle(base, tmp_path, bootstrap=False).model.train()
    perturb(model.backbone)
    batch = {  # two pairs, no padding: rows 0-1 chosen, rows 2-3 rejected
        "input_ids": torch.tensor([[5, 6, 7, 8], [9, 10, 11, 12], [5, 6, 7, 13], [9, 10, 14, 15]]),
        "attention_mask": torch.ones(4, 4, dtype=torch.long), "margin": torch.zeros(2),
    }  # fmt: skip
    args = TrainingArguments(str(tmp_path / "unused"), use_cpu=True, report_to=[], seed=7)
    trainer = RewardTrainer(model=model, args=args, loss_config=LossConfig(), export_meta=ExportMeta())
    model.zero_grad()
    trainer.compute_loss(model, dict(batch)).backward()
    params = dict(model.backbone.named_parameters())
    ensemble = {n: p.grad.clone() for n, p in params.items() if p.requires_grad}
    assert all(g.abs().sum() > 0 for g in ensemble.values())  # every adapter matrix and every head
    single = RewardModel(model.backbone, "last")  # whichever adapter is active
    for name in member_names(3):
        model.zero_grad()
        model.backbone.set_adapter(name)
        scores = single(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        bradley_terry_loss(scores[:2], scores[2:]).backward()
        mine = [n for n in ensemble if f".{name}." in n]
        assert len(mine) > 2
        for n in mine:
            torch.testing.assert_close(ensemble[n], params[n].grad / 3, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["qwen2", "bert"])
def test_a_saved_lora_ensemble_loads_and_scores_as_the_live_model(family, base, tmp_path):
    """Export (base + adapters) and checkpoint (adapters on the named base) reload into the same mean and spread,
    and the model card's peft snippet computes them too."""
    from rewardlab.models.checkpoint import write_model_files
    from rewardlab.models.scorer import Scorer

    model = base if family == "qwen2" else make_tiny(tmp_path / "bert", "bert")
    bundle = lora_bundle(model, tmp_path)
    perturb(bundle.model.backbone)
    live = Scorer(bundle).score_with_uncertainty(PROMPT, RESPONSES)
    bundle.save(tmp_path / "export")
    (tmp_path / "checkpoint").mkdir()
    write_model_files(bundle.model, bundle.tokenizer, tmp_path / "checkpoint", bundle.meta, merge_lora=False)
    for directory in ("export", "checkpoint"):
        scorer = Scorer.from_pretrained(str(tmp_path / directory))
        scores, spread = scorer.score_with_uncertainty(PROMPT, RESPONSES)
        assert scores == pytest.approx(live[0], abs=1e-5) and spread == pytest.approx(live[1], abs=1e-5)
        scorer.share_prompts = False  # the decoder's shared-prompt rows give the same scores as a row each
        assert scorer.score_with_uncertainty(PROMPT, RESPONSES)[0] == pytest.approx(live[0], abs=1e-5)
        card = (tmp_path / directory / "README.md").read_text()
        snippet = card.split("```python\n")[1].split("```")[0].replace("<this directory>", str(tmp_path / directory))
        for response, score, std in zip(RESPONSES, *live):
            names = {"prompt": PROMPT, "response": response}
            exec(snippet, names)  # noqa: S102 (our own model card)
            assert names["reward"] == pytest.approx(score, abs=1e-5)
            assert names["uncertainty"] == pytest.approx(std, abs=1e-5)
    assert "library_name: peft" in card and "logits[:, 0]` of an ensemble of heads does not exist" in card


def test_a_lora_ensemble_checkpoint_resumes_into_a_fresh_model_and_eval_finds_both(lora_run, base, tmp_path):
    from rewardlab.config.schema import EvalConfig
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.evaluate import run_eval
    from rewardlab.training.weights import load_backbone_weights
    from tests.tiny import pair_rows, write_jsonl

    run, _ = lora_run
    exported = Scorer.from_pretrained(str(run / "model")).score_with_uncertainty(PROMPT, RESPONSES)
    bundle = lora_bundle(base, tmp_path)
    load_backbone_weights(bundle.model.backbone, str(run / "checkpoint-6"))  # what resume and load_best_model do
    resumed = Scorer(bundle).score_with_uncertainty(PROMPT, RESPONSES)
    assert resumed[0] == pytest.approx(exported[0], abs=1e-5) and resumed[1] == pytest.approx(exported[1], abs=1e-5)
    from rewardlab.data.synthetic import make_pairs

    data = write_jsonl(tmp_path / "eval.jsonl", pair_rows(make_pairs(12, seed=9)))
    run_eval(EvalConfig(model_dirs=[str(run)], eval_sets=[str(data)], output_dir=str(tmp_path / "ev"), plots=False))
    import csv

    rows = list(csv.DictReader((tmp_path / "ev" / "evaluation_results.csv").open()))
    assert [r["checkpoint"] for r in rows] == ["final (= checkpoint-6)", "checkpoint-6"]
    assert [r["status"] for r in rows] == ["ok", "ok"] and rows[0]["accuracy"] == rows[1]["accuracy"]
    assert rows[0]["selective_accuracy_50"] != ""


def test_one_lora_member_trains_exactly_like_plain_lora(base, tmp_path):
    plain, _ = train_losses(tmp_path, base, "plain", **{"model.lora.r": 4})
    one, _ = train_losses(tmp_path, base, "one", **{**LORA, "model.ensemble.members": 1})
    assert one == plain


def test_lora_ensemble_settings_are_checked(base, tmp_path, capsys):
    lora = {"model.ensemble.kind": "lora", "model.lora.r": 4}
    assert train_losses(tmp_path, base, "gc", rc=2, **lora, **{"training.gradient_checkpointing": True}) is None
    err = capsys.readouterr().err
    assert "training.gradient_checkpointing cannot train model.ensemble.kind=lora" in err and "wrong gradients" in err
    assert train_losses(tmp_path, base, "nolora", rc=2, **{"model.ensemble.kind": "lora"}) is None
    assert "add model.lora" in capsys.readouterr().err
    assert train_losses(tmp_path, base, "merge", rc=2, **lora, **{"model.lora.merge_on_export": True}) is None
    assert "cannot merge into one model" in capsys.readouterr().err
    assert not (tmp_path / "gc").exists() and not (tmp_path / "nolora").exists()


def test_overopt_demo_and_select_refuse_bad_input(base, tmp_path, capsys):
    """Bad settings exit 2 with one message, before anything is written: N ranges, an unknown ensemble kind, another
    demo at once, a spread criterion on a single-head model."""
    from rewardlab.cli import main
    from rewardlab.data.synthetic import make_pairs
    from tests.tiny import pair_rows, write_jsonl

    out = tmp_path / "oo"
    assert main(["demo", "--overopt", "--output-dir", str(out), "min_words=9", "max_words=3"]) == 2
    assert "min_words=9 is above max_words=3" in capsys.readouterr().err and not out.exists()
    assert main(["demo", "--overopt", "--output-dir", str(out), "ensemble_kind=forest"]) == 2
    err = capsys.readouterr().err
    assert "ensemble_kind" in err and "Traceback" not in err and not out.exists()
    assert main(["demo", "--overopt", "--rl", "--output-dir", str(out)]) == 2
    assert "choose one demo" in capsys.readouterr().err and not out.exists()
    assert main(["demo", "--overopt", "--output-dir", str(out), "label_noise=0.7"]) == 2
    assert "label_noise" in capsys.readouterr().err and not out.exists()
    train_losses(tmp_path, base, "plain")
    pool = write_jsonl(tmp_path / "pool.jsonl", pair_rows(make_pairs(4, seed=4)))
    picked = tmp_path / "picked.jsonl"
    assert main(["select", "--model", str(tmp_path / "plain" / "model"), "--data", str(pool), "--top", "2",
                 "--out", str(picked), "--criterion", "spread"]) == 2  # fmt: skip
    assert "--criterion spread needs an ensemble" in capsys.readouterr().err and not picked.exists()
