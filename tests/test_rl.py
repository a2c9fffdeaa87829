"""`rewardlab rl`: rule rewards with hand-computed values, reward sources and weights, prompt masking checked on
TRL's loss, a reward model whose tokenizer differs from the policy's, and short GRPO/RLOO runs through the CLI
(per-source logs, eval, checkpoints, resume, export) — plus bad configs and data."""

from __future__ import annotations

import json
import math
import random
import socket
from pathlib import Path

import pytest
import yaml

pytest.importorskip("trl")

from rewardlab.cli import main  # noqa: E402
from rewardlab.config.schema import RewardSource  # noqa: E402
from rewardlab.errors import ConfigError  # noqa: E402
from rewardlab.rl.rules import (  # noqa: E402
    LengthReward,
    RegexReward,
    WordCountReward,
    count_words,
    make_rule,
    word_count_reward,
)
from rewardlab.rl.sources import build_rewards  # noqa: E402
from tests.tiny import write_jsonl  # noqa: E402


def test_word_count_reward_hand_computed():
    # exp(0.7 · −|Δ| + ln 2) − 1 = 2·e^(−0.7|Δ|) − 1
    assert word_count_reward(5, 5) == pytest.approx(1.0)
    assert word_count_reward(5, 6) == pytest.approx(2 * math.exp(-0.7) - 1) == pytest.approx(-0.00683, abs=1e-5)
    assert word_count_reward(5, 3) == pytest.approx(2 * math.exp(-1.4) - 1) == pytest.approx(-0.50681, abs=1e-5)
    assert word_count_reward(12, 2) == pytest.approx(2 * math.exp(-7.0) - 1) == pytest.approx(-0.99818, abs=1e-5)


def test_count_words_rule():
    assert count_words("Green tea is steeped below boiling.") == 6
    assert count_words("  don't stop: well-known, 3.5 cups or 1,000!  ") == 7
    assert count_words("") == 0 and count_words("... !!") == 0
    assert count_words("Thé vert, très bon") == 4  # letters of any script


def test_word_count_target_from_a_column_or_the_prompt():
    reward = WordCountReward()
    prompts = ["Summarize using exactly 3 words: ...", [{"role": "user", "content": "Use exactly 2 words."}]]
    completions = ["one two three", [{"role": "assistant", "content": "one two three"}]]
    assert reward(prompts, completions) == pytest.approx([1.0, 2 * math.exp(-0.7) - 1])
    assert reward(["no count here"] * 2, completions, target_words=[3, 13]) == pytest.approx(
        [1.0, 2 * math.exp(-7.0) - 1]
    )
    with pytest.raises(ValueError, match="target_words"):
        reward(["Say something."], ["hi"])


def test_length_regex_and_user_function_rules():
    assert LengthReward(target=4)(["p"] * 3, ["a b c d", "a b", "a " * 20]) == pytest.approx([1.0, 0.5, -1.0])
    assert LengthReward(target=10, unit="chars")(["p"], ["12345"]) == pytest.approx([0.5])
    assert RegexReward(r"\byes\b")(["p"] * 2, ["oh yes!", "yesterday"]) == [1.0, 0.0]
    assert RegexReward(r"[a-z]+", mode="fullmatch")(["p"] * 2, ["abc", "abc1"]) == [1.0, 0.0]
    shout = make_rule("tests.test_rl:exclaim", {"bonus": 2.0}, None)
    assert shout.__name__ == "exclaim" and shout(["p"] * 2, ["hi!", "hi"]) == [2.0, 0.0]
    for bad in ("nope", "tests.test_rl:missing", "no_such_module_xyz:f"):
        with pytest.raises(ConfigError):
            make_rule(bad, {}, None)
    with pytest.raises(ConfigError, match="regular expression"):
        make_rule("regex", {"pattern": "("}, None)
    with pytest.raises(ConfigError, match="bad options"):
        make_rule("word_count", {"target": 3}, None)
    try:
        import spacy  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install spacy"):
            make_rule("word_count", {"counter": "spacy"}, None)


def exclaim(prompts, completions, bonus=1.0, **_):
    """A user reward function with TRL's signature (used above as `tests.test_rl:exclaim`)."""
    return [bonus if c.endswith("!") else 0.0 for c in completions]


def test_sources_get_unique_names_and_their_weights():
    sources = [RewardSource(type="rule", rule="word_count", weight=1.0),
               RewardSource(type="rule", rule="word_count", weight=0.5),
               RewardSource(type="rule", rule="regex", options={"pattern": "x"}, name="has_x", weight=-1)]  # fmt: skip
    funcs, weights = build_rewards(sources)
    assert [f.__name__ for f in funcs] == ["word_count", "word_count_2", "has_x"] and weights == [1.0, 0.5, -1]
    with pytest.raises(ValueError, match="needs `path`"):
        RewardSource(type="model")


# --------------------------------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------------------------------


def make_policy(root: Path, *, vocab_size: int = 400) -> Path:
    """A tiny random Qwen2 causal LM with its own tokenizer."""
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM

    from rewardlab.data.synthetic import corpus
    from rewardlab.models.tiny import build_tiny_model
    from tests.tiny import PAIRS

    base = build_tiny_model(root / "policy_base", corpus(PAIRS), family="qwen2", vocab_size=vocab_size, hidden=32,
                            layers=2, heads=2)  # fmt: skip
    Qwen2ForCausalLM(AutoConfig.from_pretrained(base)).save_pretrained(root / "policy")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "policy")
    return root / "policy"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rl")
    make_policy(root)
    rng = random.Random(0)
    rows = [{"prompt": f"Describe tea using exactly {n} words.", "target_words": n}
            for n in (rng.randint(2, 6) for _ in range(24))]  # fmt: skip
    write_jsonl(root / "prompts.jsonl", rows)
    return root


def rl_config(root: Path, out: str, **over) -> Path:
    cfg = {
        "output_dir": str(root / out),
        "policy": {"name_or_path": str(root / "policy")},
        "data": {"train": str(root / "prompts.jsonl"), "eval_count": 4},
        "rewards": [
            {"type": "rule", "rule": "word_count"},
            {"type": "rule", "rule": "regex", "name": "mentions_tea", "options": {"pattern": "tea"}, "weight": 0.5},
        ],
        "generation": {"num_generations": 4, "max_completion_length": 6},
        "training": {"max_steps": 2, "save_steps": 1, "eval_steps": 2},
        **over,
    }
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_two_steps_through_the_cli_log_each_source_and_export_the_policy(workspace, algorithm, capsys):
    from transformers import AutoModelForCausalLM

    cfg = rl_config(workspace, f"run_{algorithm}")
    assert main(["rl", "--config", str(cfg), f"algorithm={algorithm}"]) == 0
    run = workspace / f"run_{algorithm}"
    rows = metrics(run)
    train = [r for r in rows if "rewards/word_count/mean" in r]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:  # each source on its own, and the weighted sum
        assert {"rewards/word_count/std", "rewards/mentions_tea/mean", "rewards/mentions_tea/std"} <= set(r)
        want = r["rewards/word_count/mean"] + 0.5 * r["rewards/mentions_tea/mean"]
        assert r["reward"] == pytest.approx(want, abs=1e-5)
    assert any("eval_reward" in r for r in rows)  # the held-out prompts were evaluated
    assert {"config.yaml", "env.json", "training_args.json", "results.json", "report.md", "reward_curve.png",
            "checkpoint-2"} <= {p.name for p in run.iterdir()}  # fmt: skip
    assert yaml.safe_load((run / "config.yaml").read_text())["algorithm"] == algorithm
    AutoModelForCausalLM.from_pretrained(run / "policy")  # the export loads
    assert "policy:" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint(workspace):
    cfg = rl_config(workspace, "resumed")
    assert main(["rl", "--config", str(cfg)]) == 0
    assert main(["rl", "--config", str(cfg), "training.max_steps=3", "resume=true"]) == 0
    rows = [r for r in metrics(workspace / "resumed") if "reward" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert json.loads((workspace / "resumed" / "results.json").read_text())["global_step"] == 3


def test_bad_configs_and_data_exit_2_with_one_message(workspace, tmp_path, capsys):
    def run(cfg_path, *over):
        code = main(["rl", "--config", str(cfg_path), *over])
        return code, capsys.readouterr().err

    cfg = rl_config(workspace, "bad")
    code, err = run(cfg, "training.max_stpes=3")
    assert code == 2 and "did you mean 'max_steps'" in err and "Traceback" not in err
    code, err = run(cfg, "algorithm=ppo")
    assert code == 2 and "algorithm" in err
    code, err = run(cfg, "data.prompt_column=question")
    assert code == 2 and "missing column 'question'" in err and "prompts.jsonl:1" in err
    empty = write_jsonl(tmp_path / "empty_prompt.jsonl", [{"prompt": "ok"}, {"prompt": ""}])
    code, err = run(cfg, f"data.train={empty}", "data.eval_count=0")
    assert code == 2 and "empty_prompt.jsonl:2:prompt" in err
    code, err = run(cfg, "policy.name_or_path=" + str(tmp_path / "nothing"))
    assert code == 2 and "policy.name_or_path" in err
    bad_rule = rl_config(workspace, "bad_rule", rewards=[{"type": "rule", "rule": "wordcount"}])
    code, err = run(bad_rule)
    assert code == 2 and "unknown rule 'wordcount'" in err
    no_rm = rl_config(workspace, "no_rm", rewards=[{"type": "model", "path": str(tmp_path / "no_rm")}])
    code, err = run(no_rm)
    assert code == 2 and "no_rm" in err
    for url in ("ftp://host/get_reward", "not a url"):
        remote = rl_config(workspace, "bad_url", rewards=[{"type": "remote", "url": url}])
        code, err = run(remote)
        assert code == 2 and f"url {url!r} is not an http(s) URL" in err and "Traceback" not in err
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/get_reward"
    code, err = run(rl_config(workspace, "bad_url", rewards=[{"type": "remote", "url": closed}]))
    assert code == 2 and f"rewards: {closed} cannot be reached" in err and "Traceback" not in err
    assert not (workspace / "bad").exists() and not (workspace / "bad_url").exists()  # nothing written


# --------------------------------------------------------------------------------------------------------------------
# Prompt masking and a reward model with its own tokenizer
# --------------------------------------------------------------------------------------------------------------------


def grpo_trainer(root: Path, reward_funcs: list, *, policy: Path | None = None, generations: int = 4):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    rows = [{"prompt": f"Describe tea using exactly {n} words."} for n in (2, 3, 4, 5)]
    args = GRPOConfig(output_dir=str(root / "grpo"), per_device_train_batch_size=generations,
                      num_generations=generations, max_completion_length=8, report_to=[], use_cpu=True, bf16=False,
                      logging_steps=1, save_strategy="no", max_steps=1)  # fmt: skip
    return GRPOTrainer(model=str(policy or root / "policy"), reward_funcs=reward_funcs, args=args,
                       train_dataset=Dataset.from_list(rows))  # fmt: skip


@pytest.mark.slow
def test_only_generated_tokens_up_to_eos_carry_gradient(workspace):
    """TRL's GRPO loss on a real batch: the gradient with respect to each completion token's log-probability is
    exactly zero after the first EOS and on padding, non-zero up to and including the EOS (where the advantage is
    non-zero), and the prompt's tokens are not among the scored positions at all."""
    import torch

    trainer = grpo_trainer(workspace, [WordCountReward()], generations=4)
    eos = trainer.processing_class.eos_token_id
    batch = [{"prompt": f"Describe tea using exactly {n} words."} for n in (2, 2, 2, 2)]
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); compute_loss reads it
    inputs = trainer._generate_and_score_completions(batch)
    ids, mask = inputs["completion_ids"], inputs["completion_mask"]
    for row, row_mask in zip(ids.tolist(), mask.tolist()):  # TRL's mask: 1 up to and including the first EOS
        end = row.index(eos) + 1 if eos in row else len(row)
        assert row_mask == [1] * end + [0] * (len(row) - end)
    # Force a known shape: row 0 ends with an EOS at position 2, the rest is padding after it.
    ids[0, 2], ids[0, 3:] = eos, trainer.processing_class.pad_token_id
    mask[0] = torch.tensor([1, 1, 1] + [0] * (ids.shape[1] - 3))
    inputs["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])

    captured = {}
    original = trainer._get_per_token_logps_and_entropies

    def capture(*args, **kwargs):
        logps, *rest = original(*args, **kwargs)
        logps.retain_grad()
        captured["logps"] = logps
        return (logps, *rest)

    trainer._get_per_token_logps_and_entropies = capture
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grad = captured["logps"].grad
    assert grad.shape == ids.shape  # one log-prob per completion token: the prompt is not scored
    assert torch.all(grad[mask == 0] == 0)
    assert torch.all(grad[0, :3] != 0) and torch.all(grad[mask.bool()] != 0)

    # Changing the tokens after the EOS (padding positions) leaves the loss unchanged.
    trainer.model.zero_grad()
    before = trainer.compute_loss(trainer.model, inputs).item()
    inputs["completion_ids"][0, 3:] = 7
    after = trainer.compute_loss(trainer.model, inputs).item()
    assert after == pytest.approx(before, abs=1e-7)


@pytest.mark.slow
def test_a_reward_model_with_another_tokenizer_scores_the_decoded_text(workspace, tmp_path):
    """The policy's tokenizer (vocabulary 300) differs from the RM's (400): the model reward scores the
    completion text with the RM's own tokenizer, as `rewardlab score` does."""
    from rewardlab.models.scorer import Scorer
    from rewardlab.rl import ModelReward
    from tests.servers import train_tiny_rm

    rm = train_tiny_rm(tmp_path / "rm")
    policy = make_policy(tmp_path / "p300", vocab_size=300)
    reward = ModelReward.from_pretrained(str(rm), device="cpu")
    seen = []

    def recording(prompts, completions, **kw):
        scores = reward(prompts, completions, **kw)
        seen.append((list(prompts), list(completions), scores))
        return scores

    recording.__name__ = "rm"
    trainer = grpo_trainer(workspace, [recording], policy=policy)
    trainer.train()
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(policy).vocab_size != AutoTokenizer.from_pretrained(rm).vocab_size
    prompts, completions, scores = seen[0]
    assert scores == pytest.approx(Scorer.from_pretrained(str(rm), device="cpu").score(prompts, completions),
                                   abs=1e-5)  # fmt: skip


def test_prompts_built_from_a_template_with_sampled_word_targets(tmp_path):
    """The summarize-in-N-words recipe's data step: posts with nested fields, a target drawn per row (seeded)."""
    from rewardlab.config.schema import PromptData
    from rewardlab.errors import DataError
    from rewardlab.recipes.rl import read_prompts

    posts = write_jsonl(tmp_path / "posts.jsonl", [{"info": {"post": f"Post number {i}."}} for i in range(20)])
    data = PromptData(train=str(posts), target_words=(10, 12),
                      template="Summarize the text using exactly {target_words} words:\n\n{info[post]}")  # fmt: skip
    rows = read_prompts(data.train, data, seed=0)
    assert {r["target_words"] for r in rows} <= {10, 11, 12} and len({r["target_words"] for r in rows}) > 1
    assert rows[3]["prompt"] == f"Summarize the text using exactly {rows[3]['target_words']} words:\n\nPost number 3."
    assert read_prompts(data.train, data, seed=0) == rows  # seeded
    assert WordCountReward().targets([r["prompt"] for r in rows], {}) == [r["target_words"] for r in rows]
    bad = data.model_copy(update={"template": "{title}: {info[post]}"})
    with pytest.raises(DataError, match="posts.jsonl:1.*'title'"):
        read_prompts(bad.train, bad, seed=0)


# --------------------------------------------------------------------------------------------------------------------
# Against learned reward models, and the demo
# --------------------------------------------------------------------------------------------------------------------


def sampled_completions(policy_dir: Path, prompts: list[str], seed: int = 0, max_new_tokens: int = 12) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(policy_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=True, top_k=0,
                             pad_token_id=tok.pad_token_id)  # fmt: skip
    return tok.batch_decode(out[:, enc.input_ids.shape[1] :], skip_special_tokens=True)


def warm_up_on_answers(policy: Path, out: Path) -> Path:
    """A short supervised warm-up (TRL's SFTTrainer) on the demo's good and flawed answers alike, so the policy
    writes text the reward model can tell apart — and RL has something to choose between."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rewardlab.data.synthetic import make_pairs

    rows = [{"prompt": p.prompt, "completion": " " + answer} for p in make_pairs(400, seed=3)
            for answer in (p.chosen, p.rejected)]  # fmt: skip
    args = SFTConfig(output_dir=str(out / "trainer"), max_steps=150, per_device_train_batch_size=16,
                     learning_rate=3e-3, report_to=[], save_strategy="no", use_cpu=True, bf16=False,
                     completion_only_loss=True)  # fmt: skip
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(policy), args=args,
                         train_dataset=Dataset.from_list(rows),
                         processing_class=AutoTokenizer.from_pretrained(policy))  # fmt: skip
    trainer.train()
    trainer.model.save_pretrained(out)
    trainer.processing_class.save_pretrained(out)
    return out


@pytest.mark.slow
def test_rl_against_the_demo_reward_model_raises_its_score_and_logs_kl(tmp_path):
    """The RM `rewardlab demo` exports (its own tokenizer, not the policy's) as the reward: after GRPO its mean
    score on held-out prompts is higher than before, and the KL to the reference policy is logged."""
    from rewardlab.data.synthetic import make_pairs
    from rewardlab.models.scorer import Scorer

    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--n-train", "400", "--n-eval", "40",
                 "--epochs", "2"]) in (0, 1)  # fmt: skip  # a short demo: the export is what matters here
    rm = tmp_path / "demo" / "model"
    policy = warm_up_on_answers(make_policy(tmp_path, vocab_size=300), tmp_path / "warm")
    prompts = [p.prompt for p in make_pairs(96, seed=11)]
    write_jsonl(tmp_path / "train.jsonl", [{"prompt": p} for p in prompts[:64]])
    held = prompts[64:]
    cfg = {
        "output_dir": str(tmp_path / "rl"),
        "policy": {"name_or_path": str(policy)},
        "data": {"train": str(tmp_path / "train.jsonl")},
        "rewards": [{"type": "model", "path": str(rm), "name": "demo_rm", "device": "cpu"}],
        "generation": {"num_generations": 4, "max_completion_length": 24},
        "training": {"max_steps": 80, "learning_rate": 5e-4, "beta": 0.04, "per_device_train_batch_size": 16,
                     "save_strategy": "no", "lr_scheduler_type": "constant"},
    }  # fmt: skip
    (tmp_path / "rl.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["rl", "--config", str(tmp_path / "rl.yaml")]) == 0
    scorer = Scorer.from_pretrained(str(rm), device="cpu")
    before = scorer.score(held, sampled_completions(policy, held, max_new_tokens=24))
    after = scorer.score(held, sampled_completions(tmp_path / "rl" / "policy", held, max_new_tokens=24))
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    print(f"demo RM on held-out prompts: {mean_before:.3f} -> {mean_after:.3f}")
    assert mean_after > mean_before + 0.1, (mean_before, mean_after)
    rows = metrics(tmp_path / "rl")
    assert all("kl" in r and "rewards/demo_rm/mean" in r for r in rows if "reward" in r)


@pytest.mark.slow
def test_a_vision_reward_model_gets_each_prompts_image(tiny_vlms, workspace, tmp_path):
    """A text policy and a vision RM: the RM's images travel in their own column (TRL would show an `images`
    column to the policy), reach the RM with each completion, and change its score when they change."""
    import torch
    from datasets import Dataset
    from PIL import Image
    from trl import GRPOConfig, GRPOTrainer

    from rewardlab.models.checkpoint import save_reward_model
    from rewardlab.models.export_meta import ExportMeta
    from rewardlab.models.scorer import Scorer
    from rewardlab.models.vision import ProcessorBundle
    from rewardlab.rl import ModelReward
    from tests.test_vision import scorer_for

    vision = scorer_for(tiny_vlms["qwen2_vl"])
    with torch.no_grad():
        for p in vision.model.backbone.score.parameters():
            p.add_(0.3)
    bundle = ProcessorBundle(vision.tokenizer, vision.transform.image_processor)
    rm = save_reward_model(vision.model, bundle, tmp_path / "vrm", ExportMeta(max_length=256))
    red, blue = tmp_path / "red.png", tmp_path / "blue.png"
    Image.new("RGB", (32, 32), (220, 20, 20)).save(red)
    Image.new("RGB", (32, 32), (20, 20, 220)).save(blue)

    reward = ModelReward.from_pretrained(str(rm), device="cpu", image_column="rm_images")
    seen = []

    def recording(prompts, completions, **columns):
        scores = reward(prompts, completions, **columns)
        seen.append((list(prompts), list(completions), list(columns["rm_images"]), scores))
        return scores

    recording.__name__ = "vision_rm"
    rows = [{"prompt": "Describe the page:", "rm_images": [str(red if i % 2 else blue)]} for i in range(4)]
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=6, report_to=[], use_cpu=True, bf16=False, save_strategy="no",
                      max_steps=1)  # fmt: skip
    GRPOTrainer(model=str(workspace / "policy"), reward_funcs=[recording], args=args,
                train_dataset=Dataset.from_list(rows)).train()  # fmt: skip
    prompts, completions, images, scores = seen[0]
    scorer = Scorer.from_pretrained(str(rm), device="cpu")
    assert scores == pytest.approx(scorer.score(prompts, completions, images=[tuple(i) for i in images]), abs=1e-5)
    swapped = [(str(blue),) if i[0] == str(red) else (str(red),) for i in images]
    other = scorer.score(prompts, completions, images=swapped)
    assert all(abs(a - b) > 1e-6 for a, b in zip(scores, other))  # the image reaches the score


@pytest.mark.slow
def test_rl_demo_meets_its_targets(tmp_path, capsys):
    """`rewardlab demo --rl` with its defaults: mean reward up by >= 0.5 and exact-count rate >= 0.5 after RL on
    128 held-out prompts; summary, report, reward curve and policy written."""
    assert main(["demo", "--rl", "--output-dir", str(tmp_path / "rl-demo")]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "exact-count rate" in out
    summary = json.loads((tmp_path / "rl-demo" / "demo_summary.json").read_text())
    assert summary["mean_reward_after"] - summary["mean_reward_before"] >= 0.5
    assert summary["exact_rate_after"] >= 0.5 and summary["exact_rate_before"] < 0.3 and summary["n_eval"] >= 100
    assert summary["mean_abs_error_after"] < summary["mean_abs_error_before"]
    for name in ("report.md", "rl/reward_curve.png", "rl/metrics.jsonl", "rl/policy/config.json"):
        assert (tmp_path / "rl-demo" / name).is_file(), name


@pytest.mark.slow
def test_lora_policy_with_chat_prompts_exports_a_merged_model(workspace):
    """LoRA on the policy, prompts sent as chat messages (the policy's template renders them): two steps, and the
    export is a plain causal LM with the adapter merged."""
    from transformers import AutoModelForCausalLM

    cfg = rl_config(workspace, "lora", policy={"name_or_path": str(workspace / "policy"),
                                               "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
                    data={"train": str(workspace / "prompts.jsonl"), "as_chat": True})  # fmt: skip
    assert main(["rl", "--config", str(cfg)]) == 0
    run = workspace / "lora"
    assert [r["step"] for r in metrics(run) if "reward" in r] == [1, 2]
    assert not (run / "policy" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(run / "policy")
    base = AutoModelForCausalLM.from_pretrained(workspace / "policy")
    assert type(merged) is type(base) and set(merged.state_dict()) == set(base.state_dict())


def test_remote_reward_source_scores_through_a_server(tmp_path):
    """A `remote` source from the config: the client in front of a live `rewardlab serve` app."""
    pytest.importorskip("fastapi")
    from rewardlab.models.scorer import Scorer
    from tests.servers import ThreadServer, train_tiny_rm

    scorer = Scorer.from_pretrained(str(train_tiny_rm(tmp_path)), device="cpu")
    with ThreadServer(scorer) as server:
        funcs, weights = build_rewards([RewardSource(type="remote", url=server.url, name="served", weight=2.0)])
        got = funcs[0](["Tell me about tea."] * 2, ["Green tea is steeped.", "No."])
        funcs[0].close()
    assert funcs[0].__name__ == "served" and weights == [2.0]
    assert got == pytest.approx(scorer.score("Tell me about tea.", ["Green tea is steeped.", "No."]), abs=1e-5)
