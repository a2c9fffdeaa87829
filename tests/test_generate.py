"""`rewardlab generate`: K distinct candidates per prompt from a tiny causal LM built from a config, chat and plain
prompts, a base model without a chat template prompted plainly, resume after an interruption, settings recorded, bad
input → exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.config.schema import DataSource
from rewardlab.data.readers import read_records
from tests.test_rl import make_policy
from tests.tiny import write_jsonl

PROMPTS = [{"prompt": "Tell me about tea.", "topic": "tea"},
           {"id": "chat-1", "prompt": [{"role": "user", "content": "Tell me about rain."}], "topic": "rain"}] + [
    {"prompt": f"Tell me about thing {i}.", "topic": str(i)} for i in range(6)]  # fmt: skip


@pytest.fixture(scope="module")
def lm(tmp_path_factory) -> Path:
    return make_policy(tmp_path_factory.mktemp("gen"))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_k_distinct_candidates_per_prompt_ready_for_labeling(lm, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "cands.jsonl"
    args = ["generate", "--model", str(lm), "--prompts", str(prompts), "-k", "4", "--out", str(out),
            "max_new_tokens=8", "batch_size=3"]  # fmt: skip
    assert main(args) == 0
    rows = read_rows(out)
    assert [r["id"] for r in rows] == ["1", "chat-1", "3", "4", "5", "6", "7", "8"]  # row numbers, or the id column
    assert rows[1]["prompt"] == PROMPTS[1]["prompt"] and rows[0]["topic"] == "tea"  # other columns travel along
    for r in rows:
        assert len(r["responses"]) == 4 and len({json.dumps(x) for x in r["responses"]}) == 4, r
    assert rows[1]["responses"][0][0]["role"] == "assistant"  # answers to a conversation are assistant turns
    meta = json.loads((tmp_path / "cands.jsonl.meta.json").read_text())
    assert meta["settings"]["temperature"] == 0.8 and meta["settings"]["seed"] == 0
    assert meta["prompt_form"] == "chat_template"  # the tokenizer has one
    assert "transformers" in json.dumps(meta["environment"])
    # Once ranked (the labeling step), the file is a ranked-group file the readers take as it is.
    labeled = write_jsonl(tmp_path / "labeled.jsonl", [{**r, "ranks": [1, 2, 3, 4]} for r in rows])
    groups, _ = read_records(DataSource(path=str(labeled)))
    assert len(groups) == 8 and groups[0].responses == tuple(rows[0]["responses"])
    assert "8 prompts" in capsys.readouterr().out


def test_an_interrupted_run_resumes_and_other_settings_are_refused(lm, tmp_path, capsys):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", PROMPTS)
    out = tmp_path / "cands.jsonl"
    args = ["generate", "--model", str(lm), "--prompts", str(prompts), "--out", str(out), "max_new_tokens=6"]
    assert main(args) == 0
    full = read_rows(out)
    # A crash after three groups, in the middle of writing the fourth.
    out.write_text("".join(json.dumps(r) + "\n" for r in full[:3]) + json.dumps(full[3])[:25])
    assert main(args) == 0
    resumed = read_rows(out)
    assert [r["id"] for r in resumed] == [r["id"] for r in full] and resumed[:3] == full[:3]
    assert main([*args, "temperature=1.2"]) == 2
    assert "temperature: 0.8 → 1.2" in capsys.readouterr().err
    assert read_rows(out) == resumed  # nothing touched


def test_bad_prompts_exit_2(lm, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"prompt": ""}])
    assert main(["generate", "--model", str(lm), "--prompts", str(bad), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "bad.jsonl:2:prompt" in capsys.readouterr().err
    dup = write_jsonl(tmp_path / "dup.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    assert main(["generate", "--model", str(lm), "--prompts", str(dup), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "appears twice" in capsys.readouterr().err
    missing = str(tmp_path / "nope.jsonl")
    assert main(["generate", "--model", str(lm), "--prompts", missing]) == 2
    assert main(["generate", "--model", str(tmp_path / "no_model"), "--prompts", str(bad)]) == 2
    assert not (tmp_path / "o.jsonl").exists()


def test_a_base_model_without_a_chat_template_is_prompted_plainly(lm, tmp_path, capsys, caplog):
    """The template rule: the tokenizer's chat template only when it has one. A base model without one (like the RL
    demo's policy) gets the prompt text as it is; the form is logged and recorded as ``prompt_form``; chat-message
    prompts for it are refused before anything is written."""
    import logging

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardlab.collection.generate import CandidateGenerator
    from rewardlab.recipes.demos.rl import RLDemoConfig, build_policy

    base = tmp_path / "base"
    tok = AutoTokenizer.from_pretrained(lm)
    tok.chat_template = None
    tok.save_pretrained(base)
    AutoModelForCausalLM.from_pretrained(lm).save_pretrained(base)
    assert CandidateGenerator(str(base)).render("Tell me about tea.") == "Tell me about tea."
    assert CandidateGenerator(str(lm)).render("Tell me about tea.").startswith("<|im_start|>user")
    never = CandidateGenerator(str(lm), chat_template="never")
    assert never.render("Tell me about tea.") == "Tell me about tea." and never.prompt_form == "plain"

    text = write_jsonl(tmp_path / "text.jsonl", [p for p in PROMPTS if isinstance(p["prompt"], str)][:3])
    out = tmp_path / "cands.jsonl"
    with caplog.at_level(logging.INFO, logger="rewardlab"):
        assert main(["generate", "--model", str(base), "--prompts", str(text), "-k", "2", "--out", str(out),
                     "max_new_tokens=4"]) == 0  # fmt: skip
    assert "prompted plainly, the text as it is (the tokenizer has no chat template)" in caplog.text
    assert json.loads((tmp_path / "cands.jsonl.meta.json").read_text())["prompt_form"] == "plain"
    assert len(read_rows(out)) == 3

    chat = write_jsonl(tmp_path / "chat.jsonl", PROMPTS[:2])
    other = tmp_path / "chat_out" / "cands.jsonl"
    assert main(["generate", "--model", str(base), "--prompts", str(chat), "--out", str(other)]) == 2
    assert "chat-message prompts need a tokenizer with a chat template" in capsys.readouterr().err
    assert not other.parent.exists()  # nothing written
    # The RL demo's policy is such a base model: trained on plain prompts, no chat template.
    policy = build_policy(RLDemoConfig(), tmp_path / "demo_policy", __import__("random").Random(0))
    assert not AutoTokenizer.from_pretrained(policy).chat_template
