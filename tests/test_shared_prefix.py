"""Scoring responses to one prompt with the prompt's tokens computed once (shared-prefix rows): the same scores as
one row per response, to 1e-5 in fp32, for every decoder family, padding side, pad == eos, truncation, chat
messages and groups of K = 2…6; and the rows' attention structure checked by hand."""

from __future__ import annotations

import os

import pytest
import torch

from rewardlab.data.collator import shared_prefix_batch
from rewardlab.data.synthetic import make_pairs
from rewardlab.models.scorer import Scorer
from tests.test_vision import scorer_for
from tests.tiny import make_tiny

PAIRS = make_pairs(12, seed=17)


def test_rows_mask_positions_and_score_positions_by_hand():
    b = shared_prefix_batch([[[5, 6, 7, 8], [5, 6, 9]], [[1, 2], [3]]], pad_token_id=0)
    # Group 0: common prefix [5, 6], tails [7, 8] and [9]. Group 1: no common prefix (tails [1, 2] and [3]).
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 2], [0, 1, 0, 0, 0]]
    assert b["score_positions"].tolist() == [[0, 3], [0, 4], [1, 1], [1, 2]]
    seen = b["attention_mask"][0, 0] == 0
    assert seen.tolist() == [
        [True, False, False, False, False],  # prefix: causal
        [True, True, False, False, False],
        [True, True, True, False, False],  # tail 1: prefix + itself
        [True, True, True, True, False],
        [True, True, False, False, True],  # tail 2: prefix + itself, never tail 1
    ]
    padded = b["attention_mask"][1, 0] == 0
    assert padded[3].tolist() == [False, False, False, True, False]  # padding sees itself only (no NaN rows)


def test_block_mask_rows_allow_exactly_what_the_dense_mask_allows():
    """FlexAttention path: every block back to back in one row, with block and segment ids (O(L)) instead of the
    (L, L) mask; the block mask built from them allows exactly the cells of the dense mask of that row (three-way
    groups, a group with no common prefix, and blocks side by side included)."""
    from torch.nn.attention.flex_attention import create_mask

    from rewardlab.models.reward_model import flex_shared_mask

    groups = [[[5, 6, 7], [5, 6, 8, 9]], [[1, 2], [1, 3]], [[4], [6]], [[3, 3, 1], [3, 3, 2], [3, 3, 2, 2]]]
    ids = shared_prefix_batch(groups, 0, pack_to=0, block_mask=True)
    dense = shared_prefix_batch(groups, 0, pack_to=10**6)  # one row, as the block-mask batch
    assert "attention_mask" not in ids and ids["input_ids"].shape == (1, 5 + 3 + 2 + 6)
    assert ids["block_ids"].tolist() == [[3] * 6 + [0] * 5 + [1] * 3 + [2] * 2]  # first fit, longest block first
    for key in ("input_ids", "position_ids", "score_positions"):
        assert torch.equal(ids[key], dense[key])
    flex = create_mask(flex_shared_mask(ids["block_ids"], ids["segment_ids"]).mask_mod, 1, None, 16, 16, "cpu")
    assert torch.equal(flex, dense["attention_mask"] == 0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("shared")
    return {
        "qwen2": make_tiny(root / "qwen2", "qwen2"),
        "llama": make_tiny(root / "llama", "llama"),
        "qwen2_pad_eos": make_tiny(root / "qwen2_pad_eos", "qwen2", pad_is_eos=True),
    }


@pytest.mark.parametrize("name", ["qwen2", "llama", "qwen2_pad_eos"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_shared_scores_equal_one_row_per_response(models, name, side):
    shared, plain = scorer_for(models[name], side), scorer_for(models[name], side)
    plain.share_prompts = False
    for k in range(2, 7):  # groups of K responses, and an identical pair inside one
        p = PAIRS[k]
        responses = [q.chosen for q in PAIRS[:k]]
        responses[-1] = responses[0]
        assert shared.score(p.prompt, responses) == pytest.approx(plain.score(p.prompt, responses), abs=1e-5)
    # Many prompts at once (score_pairs: chosen and rejected share their prompt), and chat messages.
    chosen, rejected = shared.score_pairs(PAIRS)
    plain_chosen, plain_rejected = plain.score_pairs(PAIRS)
    assert chosen == pytest.approx(plain_chosen, abs=1e-5) and rejected == pytest.approx(plain_rejected, abs=1e-5)
    chat = [{"role": "user", "content": PAIRS[0].prompt}]
    answers = [[{"role": "assistant", "content": q.chosen}] for q in PAIRS[:3]]
    assert shared.score([chat] * 3, answers) == pytest.approx(plain.score([chat] * 3, answers), abs=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_flex_attention_block_mask_scores_equal_one_row_per_response(models, side):
    """With ``attn_implementation=flex_attention`` shared rows go through a FlexAttention block mask (masked tiles
    skipped): the same scores as one row per response on the dense path, to 1e-5 in fp32."""
    flex, plain = scorer_for(models["qwen2"], side), scorer_for(models["qwen2"], side)
    plain.share_prompts = False
    flex.model.config._attn_implementation = "flex_attention"
    assert flex.bundle.block_mask and flex.share_prompts
    seen = []
    original = flex.model.forward

    def recording(*args, **kwargs):
        seen.append(set(kwargs))
        return original(*args, **kwargs)

    flex.model.forward = recording
    prompt = " ".join(p.prompt for p in PAIRS[:3])
    responses = [p.chosen for p in PAIRS[:5]]
    assert flex.score(prompt, responses) == pytest.approx(plain.score(prompt, responses), abs=1e-5)
    chosen, rejected = flex.score_pairs(PAIRS)
    plain_chosen, plain_rejected = plain.score_pairs(PAIRS)
    assert chosen == pytest.approx(plain_chosen, abs=1e-5) and rejected == pytest.approx(plain_rejected, abs=1e-5)
    assert all("block_ids" in keys and "attention_mask" not in keys for keys in seen)


def test_truncated_rows_still_score_the_same(models):
    """Over-long rows are cut from the prompt's start, so one prompt's rows may share nothing: still exact."""
    shared = scorer_for(models["qwen2"])
    shared.transform.max_length = 24
    plain = scorer_for(models["qwen2"])
    plain.transform.max_length = 24
    plain.share_prompts = False
    long_prompt = " ".join(p.prompt for p in PAIRS[:4])
    responses = [p.chosen for p in PAIRS[:5]]
    assert shared.score(long_prompt, responses) == pytest.approx(plain.score(long_prompt, responses), abs=1e-5)


def test_encoders_and_vision_models_keep_one_row_per_response(models, tmp_path):
    bert = Scorer.from_pretrained(str(make_tiny(tmp_path / "bert", "bert")), device="cpu")
    items = bert.encode("p", ["a", "b"])
    assert bert.share_prompts and not bert._can_share(items)  # bidirectional: a response would see the other
    scorer = scorer_for(models["qwen2"])
    assert scorer._can_share(scorer.encode("p", ["a", "b"]))
    scorer.model.config._attn_implementation = "flash_attention_2"  # no 4-D masks there: one row per response
    assert not scorer._can_share(scorer.encode("p", ["a", "b"]))


def test_fewer_tokens_are_computed(models, monkeypatch):
    """The point of it: one prompt with 8 responses computes the prompt once."""
    scorer = scorer_for(models["qwen2"])
    seen = []
    original = scorer.model.forward

    def counting(*args, **kwargs):
        seen.append(int(kwargs["input_ids"].numel()))
        return original(*args, **kwargs)

    monkeypatch.setattr(scorer.model, "forward", counting)
    prompt = " ".join(p.prompt for p in PAIRS[:3])
    responses = [p.chosen for p in PAIRS[:8]]
    scorer.score(prompt, responses)
    rows = [scorer.transform.encode(prompt, r).input_ids for r in responses]
    common = len(os.path.commonprefix(rows))
    assert common > 20  # the prompt's tokens
    assert sum(seen) == sum(len(r) for r in rows) - 7 * common  # computed once instead of eight times


def test_items_encoded_apart_share_their_prompt_when_scored_together(models, monkeypatch):
    """The server encodes each request apart and scores a batch of requests' items at once (as RL's G completions
    of one prompt arrive): items with the same prompt still share it, and score as they would alone."""
    scorer = scorer_for(models["qwen2"])
    prompt = " ".join(p.prompt for p in PAIRS[:3])
    first = scorer.encode(prompt, [PAIRS[0].chosen, PAIRS[1].chosen])
    second = scorer.encode([prompt, PAIRS[5].prompt], [PAIRS[2].chosen, PAIRS[5].chosen])
    rows = []
    original = scorer.model.forward

    def counting(*args, **kwargs):
        rows.append(tuple(kwargs["input_ids"].shape))
        return original(*args, **kwargs)

    monkeypatch.setattr(scorer.model, "forward", counting)
    together = scorer.score_items(first + second)
    scorer.share_prompts = False
    alone = scorer.score_items(first + second)
    assert together == pytest.approx(alone, abs=1e-5)
    # Shared: the lone answer in a row of its own, the three answers to `prompt` in one row; then the plain batch.
    assert [r[0] for r in rows] == [1, 1, 4]


# ---------------------------------------------------------------------------------------------- training


def test_packed_blocks_share_a_row_but_never_see_each_other():
    b = shared_prefix_batch([[[5, 6, 7], [5, 6, 8, 9]], [[1, 2], [1, 3]], [[4], [6]]], 0, pack_to=0)
    # Blocks: [5, 6, 7, 8, 9] (5 tokens), [1, 2, 3] (3), [4, 6] (no common prefix, 2).
    # Rows hold at most the longest block (5): [5 6 7 8 9] alone, then [1 2 3] + [4 6] side by side.
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9], [1, 2, 3, 4, 6]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 2, 3], [0, 1, 1, 0, 0]]
    assert b["score_positions"].tolist() == [[0, 2], [0, 4], [1, 1], [1, 2], [1, 3], [1, 4]]
    seen = (b["attention_mask"][1, 0] == 0).int().tolist()
    assert seen == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]


def test_pair_and_group_collators_read_chosen_first_with_plain_row_lengths():
    from rewardlab.data.collator import GroupCollator, PairCollator

    features = [{"chosen_input_ids": [5, 6, 7], "rejected_input_ids": [5, 6, 8, 9], "margin": 0.5},
                {"chosen_input_ids": [1, 2], "rejected_input_ids": [1, 3], "margin": 0.0}]  # fmt: skip
    plain = PairCollator(pad_token_id=0)(features)
    shared = PairCollator(pad_token_id=0, share_prompts=True)(features)
    rows = shared["input_ids"]
    # score_positions: chosen of pair 0, chosen of pair 1, rejected of pair 0, rejected of pair 1.
    last = [int(rows[r, c]) for r, c in shared["score_positions"].tolist()]
    assert last == [7, 2, 9, 3]
    assert shared["row_lengths"].tolist() == plain["attention_mask"].sum(-1).tolist() == [3, 2, 4, 2]
    assert shared["margin"].tolist() == [0.5, 0.0]
    groups = [{"input_ids": [[1, 2], [1, 3, 4]], "ranks": [2, 1]}, {"input_ids": [[7], [8], [9]], "ranks": [1, 2, 3]}]
    g = GroupCollator(pad_token_id=0, share_prompts=True)(groups)
    assert [int(g["input_ids"][r, c]) for r, c in g["score_positions"].tolist()] == [2, 4, 7, 8, 9]
    assert g["ranks"].tolist() == [2, 1, 1, 2, 3] and g["group_sizes"].tolist() == [2, 3]
    # Segment ids or images: one row per response, whatever the switch says.
    typed = [{**f, "chosen_token_type_ids": [0] * 3, "rejected_token_type_ids": [0] * 4} for f in features[:1]]
    assert "score_positions" not in PairCollator(pad_token_id=0, share_prompts=True)(typed)


def train_losses(root, model, name, *, ranked=False, rc=0, **overrides):
    """Train 6 steps with logging every step; return the per-step losses and the final eval metrics (None when
    the run is expected to end with exit code ``rc`` != 0)."""
    import json

    import yaml

    from rewardlab.cli import main
    from tests.tiny import pair_rows, write_jsonl

    pairs = make_pairs(48, seed=4)
    rows = pair_rows(pairs)
    if ranked:
        # Groups of K = 2, 3, 4 responses to one prompt, ranked in order.
        rows = [{"prompt": p.prompt, "responses": [pairs[(i + j) % len(pairs)].chosen for j in range(2 + i % 3)]}
                for i, p in enumerate(pairs)]  # fmt: skip
        for r in rows:
            r["ranks"] = list(range(1, len(r["responses"]) + 1))
    train = write_jsonl(root / f"{name}-train.jsonl", rows)
    evals = write_jsonl(root / f"{name}-eval.jsonl", pair_rows(make_pairs(16, seed=5)))
    cfg = {
        "output_dir": str(root / name), "seed": 1,
        "data": {"train": str(train), "eval": str(evals), "max_length": 64,
                 **({"ranked_as": "groups"} if ranked else {})},
        "model": {"name_or_path": str(model)},
        "loss": {"name": "plackett_luce"} if ranked else {},
        "training": {"per_device_train_batch_size": 4, "max_steps": 6, "logging_steps": 1, "learning_rate": 2e-3,
                     "save_strategy": "no", "eval_strategy": "no"},
    }  # fmt: skip
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", "--config", str(path), *[f"{k}={v}" for k, v in overrides.items()]]) == rc
    if rc:
        return None
    log = [json.loads(line) for line in (root / name / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    results = json.loads((root / name / "results.json").read_text())["metrics"]
    return losses, results


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "ranked", "overrides"),
    [
        ("qwen2", False, {}),
        ("llama", False, {"model.padding_side": "left"}),
        ("qwen2_pad_eos", False, {"data.max_length": 40}),  # pad == eos, and most pairs truncated
        ("qwen2", True, {}),  # ranked groups of K = 2..4 under Plackett–Luce
        ("qwen2", False, {"loss.length_decorrelation": 0.5}),  # row lengths from the shared rows
        pytest.param(  # block mask vs one row per response
            "qwen2",
            False,
            {"model.attn_implementation": "flex_attention"},
            marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention has no backward on CPU"),
        ),
    ],
)
def test_training_with_shared_prompts_follows_the_plain_loss_curve(models, tmp_path, name, ranked, overrides):
    """The same run with prompts shared (default) and off: losses equal to 1e-4 at every step, same eval."""
    shared, shared_eval = train_losses(tmp_path, models[name], "shared", ranked=ranked, **overrides)
    plain, plain_eval = train_losses(tmp_path, models[name], "plain", ranked=ranked, **overrides,
                                     **{"data.share_prompts": "false"})  # fmt: skip
    assert len(shared) == 6
    assert shared == pytest.approx(plain, abs=1e-4)
    assert shared_eval["eval_accuracy"] == plain_eval["eval_accuracy"]
    assert shared_eval["eval_margin_mean"] == pytest.approx(plain_eval["eval_margin_mean"], abs=1e-5)


def test_training_with_flex_attention_on_cpu_is_a_clear_config_error(models, tmp_path, capsys):
    """torch has no FlexAttention backward on CPU: exit 2 naming the setting and the ways out, no traceback."""
    if torch.cuda.is_available():
        pytest.skip("a GPU trains with flex_attention")
    assert (
        train_losses(tmp_path, models["qwen2"], "flex", rc=2, **{"model.attn_implementation": "flex_attention"})
        is None
    )
    err = capsys.readouterr().err
    assert "model.attn_implementation: flex_attention cannot train on cpu" in err
    assert "Traceback" not in err and not (tmp_path / "flex" / "checkpoint-6").exists()


def test_token_budget_batches_hold_every_item_once_within_the_budget():
    import random

    from rewardlab.data.dataset import TokenBudgetBatchSampler

    rng = random.Random(0)
    tokens = [rng.randint(5, 300) for _ in range(1000)] + [900]  # one item over the budget
    sampler = TokenBudgetBatchSampler(tokens, max_tokens=600, seed=3, window=256)
    first = list(sampler)
    assert sorted(i for b in first for i in b) == list(range(len(tokens)))
    assert len(sampler) == len(first)
    for batch in first:
        assert sum(tokens[i] for i in batch) <= 600 or len(batch) == 1
    assert [b for b in first if 900 in [tokens[i] for i in b]] == [[1000]]
    # Greedy within size-sorted windows: nearly full batches (all but a window's last one hold > 300 tokens).
    assert sum(sum(tokens[i] for i in b) < 300 for b in first) <= 4
    assert list(TokenBudgetBatchSampler(tokens, 600, seed=3, window=256)) == first  # the seed decides the order
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(i for b in sampler for i in b) == list(range(len(tokens)))


@pytest.mark.parametrize(("budget", "steps"), [(10**6, 1), (1, 48)])
def test_training_with_a_token_budget_per_batch(models, tmp_path, budget, steps):
    """A budget that holds every pair: one step per epoch; a budget below any pair: one pair per step."""
    import json

    losses, _ = train_losses(tmp_path, models["qwen2"], "budget", **{
        "data.max_tokens_per_batch": budget, "training.max_steps": -1, "training.num_train_epochs": 1})  # fmt: skip
    assert json.loads((tmp_path / "budget" / "results.json").read_text())["global_step"] == steps
    assert len(losses) == steps


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llava", "llava_next", "qwen2_vl"])
def test_vision_training_shares_the_image_and_prompt_and_follows_the_plain_loss_curve(tiny_vlms, shots, tmp_path,
                                                                                     family):  # fmt: skip
    """LLaVA-style models: a pair's image placeholders and prompt are one shared prefix (computed once), same losses
    as one row per response. Qwen-VL derives 3-D rotary positions from the whole row: it keeps one row each."""
    import json

    from rewardlab.config import TrainConfig, build_config
    from rewardlab.data.collator import PairCollator
    from rewardlab.recipes.train import run_train

    root, pairs = shots
    scorer = scorer_for(tiny_vlms[family])
    features = [scorer.transform.encode_pair(p) for p in pairs[:3]]
    batch = PairCollator(scorer.tokenizer.pad_token_id, share_prompts=True, share_images=True)(features)
    if family == "qwen2_vl":
        from rewardlab.models.reward_model import can_share_prompts

        assert not can_share_prompts(scorer.model, scorer.bundle.family) and not scorer.bundle.share_prompts
    else:
        assert batch["image_rows"].tolist() == [0, 1, 2] and batch["input_ids"].shape[0] == 3
        with torch.no_grad():
            shared = scorer.model(**batch)
        scorer.share_prompts = False
        chosen, rejected = scorer.score_pairs(pairs[:3])
        assert shared.tolist() == pytest.approx(chosen + rejected, abs=1e-5)
        # The Scorer too: four answers about one screenshot in one row, the image and prompt computed once; the
        # same answers about another screenshot never share with them.
        answers = [p.chosen for p in pairs[:4]]
        images = [pairs[0].images] * 4 + [pairs[1].images] * 4
        plain = scorer.score(pairs[0].prompt, answers * 2, images=images)
        scorer.share_prompts = True
        rows = []
        original = scorer.model.forward

        def counting(*args, **kwargs):
            rows.append(tuple(kwargs["input_ids"].shape))
            return original(*args, **kwargs)

        scorer.model.forward = counting
        assert scorer.score(pairs[0].prompt, answers * 2, images=images) == pytest.approx(plain, abs=1e-5)
        assert [r[0] for r in rows] == [2]  # one row per screenshot

    def losses(name, share):
        cfg = build_config(TrainConfig, {
            "output_dir": str(tmp_path / name),
            "data": {"train": str(root / "train.jsonl"), "max_length": 256, "share_prompts": share},
            "model": {"name_or_path": str(tiny_vlms[family])},
            "training": {"max_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1,
                         "save_strategy": "no", "warmup_steps": 0},
        })  # fmt: skip
        run = run_train(cfg).run_dir
        return [json.loads(r)["loss"] for r in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in r]

    shared_losses, plain_losses = losses("shared", True), losses("plain", False)
    assert len(shared_losses) == 4 and shared_losses == pytest.approx(plain_losses, abs=1e-4)


def test_score_rank_and_eval_take_the_switch(models, capsys):
    import json

    from rewardlab.cli import main

    args = ["rank", "--model", str(models["qwen2"]), "--prompt", PAIRS[0].prompt]
    args += [x for p in PAIRS[:4] for x in ("--response", p.chosen)]
    assert main(args) == 0
    shared = json.loads(capsys.readouterr().out)
    assert main([*args, "--no-share-prompts"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert [r["response"] for r in shared] == [r["response"] for r in plain]
    assert [r["score"] for r in shared] == pytest.approx([r["score"] for r in plain], abs=1e-5)
    from rewardlab.config.schema import EvalConfig, ServeConfig

    assert ServeConfig(model="m").share_prompts and not ServeConfig(model="m", share_prompts=False).share_prompts
    assert "share_prompts" in EvalConfig.model_fields


def test_batch_rebalance_sampling_uses_the_feature_lengths(models, tmp_path):
    """``train_sampling_strategy: batch_rebalance`` (transformers' cost-balanced batches) reads the lengths the
    dataset already knows: 48 pairs, 2 accumulation steps of 4 pairs, one epoch → 6 optimizer steps."""
    import json

    losses, _ = train_losses(tmp_path, models["qwen2"], "rebalance", **{
        "training.train_sampling_strategy": "batch_rebalance", "training.gradient_accumulation_steps": 2,
        "training.max_steps": -1, "training.num_train_epochs": 1})  # fmt: skip
    assert json.loads((tmp_path / "rebalance" / "results.json").read_text())["global_step"] == 6
    assert len(losses) == 6
