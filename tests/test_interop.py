"""One score everywhere: a rewardlab export gives `rewardlab score`'s number in plain transformers (as the model
card says), in `pipeline("text-classification")`, in TRL's GRPO reward path and in OpenRLHF's loader — or the test
names the one adapter a user must call instead. Four tiny models, each trained a few steps by `rewardlab train`:

- ``qwen2``: a decoder whose pad token differs from its EOS, trained on plain strings;
- ``llama_bos_pad_eos``: a decoder whose tokenizer adds a BOS and pads with the EOS (as Llama's do);
- ``chat``: a decoder trained on chat messages with its ChatML template;
- ``bert``: an encoder (a [CLS] prompt [SEP] response [SEP] text pair);
- ``bert_joined``: the same encoder trained on one segment (``data.text_pair: false``: [CLS] prompt+response [SEP]).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardlab.config import TrainConfig, build_config
from rewardlab.data.input_format import CONCAT_TEMPLATE
from rewardlab.data.synthetic import make_pairs
from rewardlab.models.scorer import Scorer
from rewardlab.recipes.train import run_train
from rewardlab.rl import ModelReward
from tests.tiny import make_tiny, pair_rows, write_jsonl

pytestmark = pytest.mark.slow

MODELS = ["qwen2", "llama_bos_pad_eos", "chat", "bert"]
DECODERS = ["qwen2", "llama_bos_pad_eos", "chat"]
PAIRS = make_pairs(6, seed=77)
# (prompt, response) probes: held-out answers, a response cut mid-sentence (as a truncated completion is), a
# response starting inside a word, and a newline at the boundary.
PROBES = [(p.prompt, r) for p in PAIRS[:3] for r in (p.chosen, p.rejected)] + [
    (PAIRS[3].prompt, PAIRS[3].chosen[:17]),
    ("Tell me about te", "a. Green tea is steeped in water below boiling."),
    ("Tell me about tea.\n", "\nSure! Black tea is fully oxidised before drying."),
]
TOL = 1e-4


def as_messages(prompt: str, response: str) -> tuple[list[dict], list[dict]]:
    return [{"role": "user", "content": prompt}], [{"role": "assistant", "content": response}]


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("interop")
    rows = pair_rows(make_pairs(96, seed=5))
    write_jsonl(root / "plain.jsonl", rows)
    chat_rows = [{"prompt": as_messages(r["prompt"], "")[0], "chosen": as_messages("", r["chosen"])[1],
                  "rejected": as_messages("", r["rejected"])[1]} for r in rows]  # fmt: skip
    write_jsonl(root / "chat.jsonl", chat_rows)
    bases = {
        "qwen2": make_tiny(root / "base_qwen2", "qwen2"),
        "llama_bos_pad_eos": make_tiny(root / "base_llama", "llama", pad_is_eos=True),
        "chat": make_tiny(root / "base_chat", "qwen2", seed=1),
        "bert": make_tiny(root / "base_bert", "bert"),
    }
    bases["bert_joined"] = bases["bert"]
    tok = AutoTokenizer.from_pretrained(bases["llama_bos_pad_eos"])
    tok.bos_token = "[CLS]"  # an unused special of the tiny vocabulary, added first as Llama's <s> is
    tok.add_bos_token = True
    tok.save_pretrained(bases["llama_bos_pad_eos"])
    assert AutoTokenizer.from_pretrained(bases["llama_bos_pad_eos"])("tea").input_ids[0] == tok.bos_token_id
    out = {}
    for name, base in bases.items():
        cfg = build_config(TrainConfig, {
            "output_dir": str(root / f"run_{name}"),
            "data": {"train": str(root / ("chat.jsonl" if name == "chat" else "plain.jsonl")), "eval_fraction": 0.25,
                     "max_length": 96, "text_pair": name != "bert_joined"},
            "model": {"name_or_path": str(base)},
            "training": {"max_steps": 6, "per_device_train_batch_size": 8, "learning_rate": 3e-3,
                         "save_strategy": "no", "eval_strategy": "no", "logging_steps": 3},
        })  # fmt: skip
        out[name] = run_train(cfg).model_dir
    return out


def rewardlab_scores(model_dir: Path, chat: bool = False) -> list[float]:
    scorer = Scorer.from_pretrained(str(model_dir), device="cpu")
    if chat:
        prompts, responses = zip(*(as_messages(p, r) for p, r in PROBES))
        return scorer.score(list(prompts), list(responses))
    return scorer.score([p for p, _ in PROBES], [r for _, r in PROBES])


def card_texts(tok, chat: bool) -> list[str]:
    """The model card's input for decoders: ``prompt + response``, or the chat template's rendering."""
    if not chat:
        return [p + r for p, r in PROBES]
    return [tok.apply_chat_template(sum(as_messages(p, r), []), tokenize=False) for p, r in PROBES]


def test_exports_carry_their_input_format(exports):
    for name in MODELS:
        meta = json.loads((exports[name] / "rewardlab.json").read_text())
        fmt = meta["input_format"]
        assert meta["format_version"] == 2 and fmt["version"] == 2 and fmt["append_eos"] is False
        assert fmt["layout"] == ("pair" if name == "bert" else "concat")
        assert fmt["recipe"] == ("tokenizer(prompt, response)" if name == "bert" else "tokenizer(prompt + response)")
        assert fmt["chat_template"] == {"chat": "trained", "bert": "none"}.get(name, "concat")
        card = (exports[name] / "README.md").read_text()
        assert f"`{fmt['recipe']}`" in card and "## Score it" in card and "## License" in card
        config = json.loads((exports[name] / "config.json").read_text())
        assert config["mean"] == pytest.approx(meta["normalization"]["mean"])
        assert config["std"] == pytest.approx(meta["normalization"]["std"])
    tok = AutoTokenizer.from_pretrained(exports["llama_bos_pad_eos"])
    assert tok("tea").input_ids == tok("tea", add_special_tokens=False).input_ids  # the BOS is gone
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id  # a distinct pad, from the vocab
    config = json.loads((exports["llama_bos_pad_eos"] / "config.json").read_text())
    assert config["pad_token_id"] == tok.pad_token_id
    # Trained on plain strings: the template renders [user, assistant] as prompt + response.
    plain = AutoTokenizer.from_pretrained(exports["qwen2"])
    assert plain.chat_template == CONCAT_TEMPLATE
    assert plain.apply_chat_template(sum(as_messages("Hi.", " Hello"), []), tokenize=False) == "Hi. Hello"
    assert "<|im_start|>" in AutoTokenizer.from_pretrained(exports["chat"]).chat_template


@pytest.mark.parametrize("name", MODELS)
def test_transformers_as_the_model_card_says(exports, name):
    """(a) AutoModelForSequenceClassification + AutoTokenizer, one at a time and as a right-padded batch."""
    want = rewardlab_scores(exports[name], chat=name == "chat")
    tok = AutoTokenizer.from_pretrained(exports[name])
    model = AutoModelForSequenceClassification.from_pretrained(exports[name]).eval()
    if name == "bert":
        batch = tok([p for p, _ in PROBES], [r for _, r in PROBES], padding=True, return_tensors="pt")
    else:
        batch = tok(card_texts(tok, name == "chat"), padding=True, return_tensors="pt")
    with torch.no_grad():
        got = model(**batch).logits[:, 0].tolist()
    assert got == pytest.approx(want, abs=TOL)
    assert len(set(round(s, 4) for s in want)) > 3  # the probes get different scores: the check can fail


@pytest.mark.parametrize("name", MODELS)
def test_pipeline_text_classification(exports, name):
    """(b) pipeline("text-classification", function_to_apply="none")."""
    from transformers import pipeline

    want = rewardlab_scores(exports[name], chat=name == "chat")
    pipe = pipeline("text-classification", model=str(exports[name]), function_to_apply="none", device="cpu")
    if name == "bert":
        inputs = [{"text": p, "text_pair": r} for p, r in PROBES]
    else:
        inputs = card_texts(pipe.tokenizer, name == "chat")
    got = [out["score"] for out in pipe(inputs)]
    assert got == pytest.approx(want, abs=TOL)


def grpo_trainer(tmp_path: Path, model_dir: Path, reward_funcs: list, conversational: bool):
    """A GRPOTrainer over a tiny policy (its own tokenizer: the RM's, as TRL requires none to be shared)."""
    from datasets import Dataset
    from transformers import AutoConfig, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    policy = tmp_path / "policy"
    config = AutoConfig.from_pretrained(make_tiny(tmp_path / "policy_base", "qwen2"))
    Qwen2ForCausalLM(config).save_pretrained(policy)
    AutoTokenizer.from_pretrained(tmp_path / "policy_base").save_pretrained(policy)
    prompts = [as_messages(p, "")[0] if conversational else p for p, _ in PROBES[:2]]
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=2, num_generations=2,
                      max_completion_length=4, report_to=[], use_cpu=True, bf16=False, logging_steps=1)  # fmt: skip
    return GRPOTrainer(model=str(policy), reward_funcs=reward_funcs, args=args,
                       train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]))  # fmt: skip


def trl_rewards(trainer, conversational: bool) -> list[list[float]]:
    """TRL's own reward computation on the probes (prompts and completions as GRPO passes them)."""
    if conversational:
        prompts = [as_messages(p, r)[0] for p, r in PROBES]
        completions = [as_messages(p, r)[1] for p, r in PROBES]
    else:
        prompts, completions = [p for p, _ in PROBES], [r for _, r in PROBES]
    inputs = [{"prompt": p} for p in prompts]
    rewards = trainer._calculate_rewards(inputs, prompts, completions, [[0]] * len(PROBES))
    return rewards.T.tolist()  # one list per reward function


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("conversational", [False, True])
def test_trl_grpo_reward_path(exports, tmp_path, name, conversational):
    """(c) TRL's GRPOTrainer with the export directory in reward_funcs, plain and conversational prompts; beside
    it rewardlab.rl.ModelReward, which is what a user passes where TRL's own path cannot match (encoders)."""
    adapter_only = conversational and name == "bert"  # TRL's own path needs a chat template an encoder lacks
    # An encoder scores a text pair: ModelReward gives a conversation's last user turn and the completion's text.
    want = rewardlab_scores(exports[name], chat=conversational and name != "bert")
    funcs = [ModelReward.from_pretrained(str(exports[name]), device="cpu")]
    trainer = grpo_trainer(tmp_path, exports[name], funcs if adapter_only else [str(exports[name]), *funcs],
                           conversational)  # fmt: skip
    *native, adapter = trl_rewards(trainer, conversational)
    assert adapter == pytest.approx(want, abs=TOL)
    if adapter_only:
        return
    native = native[0]
    if name == "bert":
        # TRL tokenizes prompt + completion as one segment without [CLS]/[SEP]: not the trained input.
        assert max(abs(a - b) for a, b in zip(native, want)) > 1e-3
    else:
        assert native == pytest.approx(want, abs=TOL)


def test_an_encoder_trained_on_one_segment_scores_the_same_through_its_natural_call(exports):
    """``data.text_pair: false``: the export records the one-segment layout, and ``tokenizer(prompt + response)``
    (plain transformers, right-padded batch) and ``pipeline("text-classification")`` on ``prompt + response`` give
    rewardlab's scores; the text-pair call does not (it is another input)."""
    from transformers import pipeline

    directory = exports["bert_joined"]
    fmt = json.loads((directory / "rewardlab.json").read_text())["input_format"]
    assert (fmt["layout"], fmt["recipe"], fmt["score_token"]) == ("joined", "tokenizer(prompt + response)", "cls")
    card = (directory / "README.md").read_text()
    assert "`[CLS] prompt+response [SEP]`" in card and "text_pair" not in card
    want = rewardlab_scores(directory)
    assert len(set(round(s, 4) for s in want)) > 3  # the probes get different scores: the check can fail
    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    texts = [p + r for p, r in PROBES]
    with torch.no_grad():
        got = model(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0].tolist()
        pair = model(**tok([p for p, _ in PROBES], [r for _, r in PROBES], padding=True, return_tensors="pt"))
    assert got == pytest.approx(want, abs=TOL)
    assert max(abs(a - b) for a, b in zip(pair.logits[:, 0].tolist(), want)) > 1e-3
    pipe = pipeline("text-classification", model=str(directory), function_to_apply="none", device="cpu")
    assert [out["score"] for out in pipe(texts)] == pytest.approx(want, abs=TOL)


def test_model_reward_normalizes_and_names_itself(exports):
    reward = ModelReward.from_pretrained(str(exports["qwen2"]), device="cpu", normalize=True)
    raw = rewardlab_scores(exports["qwen2"])
    norm = json.loads((exports["qwen2"] / "rewardlab.json").read_text())["normalization"]
    got = reward([p for p, _ in PROBES], [r for _, r in PROBES], trainer_state=None)
    assert got == pytest.approx([(s - norm["mean"]) / norm["std"] for s in raw], abs=1e-5)
    assert reward.__name__ == "model"


OPENRLHF_SCRIPT = r"""
import json, sys, types
import torch
# openrlhf.models imports flash_attn (ring attention) and openrlhf.utils imports pylatexenc: neither is used here.
ring = types.ModuleType("openrlhf.models.ring_attn_utils")
ring.gather_and_pad_tensor = ring.unpad_and_slice_tensor = None
sys.modules[ring.__name__] = ring
try:
    import pylatexenc  # noqa: F401
except ImportError:
    sys.modules["pylatexenc"] = types.ModuleType("pylatexenc")
    sys.modules["pylatexenc.latex2text"] = sys.modules["pylatexenc"].latex2text = types.ModuleType("latex2text")
from openrlhf.models.model import get_llm_for_sequence_regression
from transformers import AutoTokenizer

path, texts = sys.argv[1], json.loads(sys.argv[2])
rm = get_llm_for_sequence_regression(path, "reward", normalize_reward=True, attn_implementation="sdpa",
                                     value_head_prefix="score", dtype=torch.float32).eval()
with torch.no_grad():  # its mean/std buffers are not restored by transformers 5 (OpenRLHF PR #1343)
    rm.mean.fill_(rm.config.mean)
    rm.std.fill_(rm.config.std)
tok = AutoTokenizer.from_pretrained(path)
batch = tok(texts, padding=True, return_tensors="pt", add_special_tokens=False)  # as its serve_rm.py tokenizes
with torch.no_grad():
    print(json.dumps(rm(batch["input_ids"], attention_mask=batch["attention_mask"]).tolist()))
"""


@pytest.fixture(scope="module")
def openrlhf_path(tmp_path_factory) -> str:
    """openrlhf installed on its own (--no-deps, into a folder: its wheel ships a top-level `tests` package)."""
    target = tmp_path_factory.mktemp("openrlhf")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), "openrlhf==0.11.2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.skip(f"openrlhf could not be installed: {install.stderr.strip()[-200:]}")
    return str(target)


@pytest.mark.parametrize("name", DECODERS)
def test_openrlhf_loader(exports, openrlhf_path, name):
    """(d) OpenRLHF's get_llm_for_sequence_regression, fp32, with its reward normalization (config.json mean/std)."""
    tok = AutoTokenizer.from_pretrained(exports[name])
    texts = card_texts(tok, name == "chat")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([openrlhf_path, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", OPENRLHF_SCRIPT, str(exports[name]), json.dumps(texts)],
                         capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    scorer = Scorer.from_pretrained(str(exports[name]), device="cpu")
    prompts, responses = zip(*(as_messages(p, r) for p, r in PROBES)) if name == "chat" else zip(*PROBES)
    want = scorer.score(list(prompts), list(responses), normalize=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == pytest.approx(want, abs=TOL)


OPENRLHF_CLIENT_SCRIPT = r"""
import asyncio, json, sys, types
try:
    import pylatexenc  # noqa: F401  (openrlhf.utils imports it for math grading, unused here)
except ImportError:
    sys.modules["pylatexenc"] = types.ModuleType("pylatexenc")
    sys.modules["pylatexenc.latex2text"] = sys.modules["pylatexenc"].latex2text = types.ModuleType("latex2text")
from openrlhf.utils.agent import SingleTurnAgentExecutor

urls, queries, prompts = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
executor = SingleTurnAgentExecutor(urls)
out = asyncio.run(executor._fetch_rewards_via_http(queries, prompts, [None] * len(queries)))
print(json.dumps(out))
"""


def test_openrlhf_remote_reward_client_against_rewardlab_serve(exports, openrlhf_path):
    """(e) OpenRLHF's own remote-RM client (the one its PPO/GRPO trainer calls with --reward.remote_url) against
    `rewardlab serve`'s /get_reward: one and two endpoints, a decoder and an encoder RM, the decoded query ending
    with the policy's EOS, as OpenRLHF decodes it."""
    pytest.importorskip("aiohttp")
    pytest.importorskip("fastapi")
    from tests.servers import ThreadServer

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([openrlhf_path, os.environ.get("PYTHONPATH", "")])}
    for name, endpoints in (("qwen2", 1), ("qwen2", 2), ("bert", 1)):
        scorer = Scorer.from_pretrained(str(exports[name]), device="cpu")
        # The policy's decoded text ends with its EOS: the RM's own (a decoder sharing the tokenizer), or a
        # foreign one (the encoder RM), which strip_texts names.
        eos = scorer.tokenizer.eos_token if name == "qwen2" else "<|im_end|>"
        queries, prompts = [p + r + eos for p, r in PROBES], [p for p, _ in PROBES]
        want = scorer.score(prompts, [r for _, r in PROBES])
        with ThreadServer(scorer, strip_texts=["<|im_end|>"]) as server:
            urls = [server.url + "/get_reward"] * endpoints
            args = [json.dumps(urls), json.dumps(queries), json.dumps(prompts)]
            run = subprocess.run([sys.executable, "-c", OPENRLHF_CLIENT_SCRIPT, *args], capture_output=True, text=True,
                                 env=env, timeout=600)  # fmt: skip
            assert run.returncode == 0, run.stderr[-2000:]
            shards = json.loads(run.stdout.strip().splitlines()[-1])
            assert len(shards) == len(urls)  # one request per endpoint, each a slice of the queries
            rewards = [r for shard in shards for r in shard["rewards"]]
            assert rewards == pytest.approx(want, abs=TOL)
            assert all(set(shard) == {"rewards", "scores", "extra_logs"} for shard in shards)


def test_format_1_export_still_scores_as_trained(tmp_path):
    """An export from before the input format (rewardlab.json format_version 1): prompt and response tokenized
    apart, the EOS appended, read there — the Scorer keeps doing exactly that."""
    base = make_tiny(tmp_path / "old", "qwen2")
    (base / "rewardlab.json").write_text(json.dumps({"format_version": 1, "pooling": "last", "max_length": 96}))
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(base).eval()
    want = []
    for prompt, response in PROBES:
        ids = tok(prompt, add_special_tokens=False).input_ids + tok(response, add_special_tokens=False).input_ids
        with torch.no_grad():
            want.append(model(torch.tensor([ids + [tok.eos_token_id]])).logits[0, 0].item())
    got = Scorer.from_pretrained(str(base), device="cpu").score([p for p, _ in PROBES], [r for _, r in PROBES])
    assert got == pytest.approx(want, abs=1e-5)
