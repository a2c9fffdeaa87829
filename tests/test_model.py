"""Transforms, collators, RewardModel pooling invariants, checkpoints and the Scorer on tiny models."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewardlab.data.collator import GroupCollator, PairCollator, pad_rows
from rewardlab.data.input_format import InputFormat
from rewardlab.data.records import PreferencePair
from rewardlab.data.transforms import TextTransform
from rewardlab.models.bundle import RewardBundle
from rewardlab.models.checkpoint import save_reward_model
from rewardlab.models.export_meta import ExportMeta
from rewardlab.models.reward_model import RewardModel, last_token_index
from rewardlab.models.scorer import Scorer
from tests.tiny import PAIRS, make_tiny

DECODERS = ["qwen2", "qwen3", "llama"]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    dirs = {fam: make_tiny(root / fam, fam) for fam in [*DECODERS, "bert"]}
    dirs["qwen2_pad_eos"] = make_tiny(root / "qwen2_pad_eos", "qwen2", pad_is_eos=True)
    return dirs


def load(path, pooling=None):
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1).eval()
    pooling = pooling or ("cls" if model.config.model_type == "bert" else "last")
    return RewardModel(model, pooling).eval(), tok


# -- collator ------------------------------------------------------------------------------------------------
def test_pair_collator_docstring_example():
    features = [
        {"chosen_input_ids": [5, 6, 2], "rejected_input_ids": [5, 2], "margin": 0.0},
        {"chosen_input_ids": [7, 2], "rejected_input_ids": [7, 8, 9, 2], "margin": 1.0},
    ]
    batch = PairCollator(pad_token_id=0, padding_side="right")(features)
    assert batch["input_ids"].tolist() == [[5, 6, 2, 0], [7, 2, 0, 0], [5, 2, 0, 0], [7, 8, 9, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["margin"].tolist() == [0.0, 1.0]


def test_group_collator_and_left_padding():
    batch = GroupCollator(pad_token_id=9, padding_side="left")(
        [{"input_ids": [[1, 2], [3]], "ranks": [1, 2]}, {"input_ids": [[4, 5, 6], [7], [8]], "ranks": [2, 1, 2]}]
    )
    assert batch["input_ids"][1].tolist() == [9, 9, 3]
    assert batch["group_sizes"].tolist() == [2, 3]
    assert batch["ranks"].tolist() == [1, 2, 2, 1, 2]
    ids, mask = pad_rows([[1, 2, 3], [4]], 0, "right", multiple_of=8)
    assert ids.shape == (2, 8) and mask.sum().item() == 4


def test_last_token_index_either_side():
    right = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 0]
    assert last_token_index(left).tolist() == [3, 3]


# -- transform -----------------------------------------------------------------------------------------------
def test_decoder_layout_is_the_natural_call(tiny_dirs):
    """Format 2: ``tokenizer(prompt + response)``, tokenized together, nothing added."""
    tok = AutoTokenizer.from_pretrained(tiny_dirs["qwen2"])
    enc = TextTransform(tok, 64, "last").encode("Tell me", " about tea")
    assert enc.input_ids == tok("Tell me about tea", add_special_tokens=False).input_ids
    assert enc.input_ids[-1] != tok.eos_token_id and enc.token_type_ids is None
    # Tokenized together: a boundary inside a word gives the word's tokens, as the concatenated string does.
    assert TextTransform(tok, 64, "last").encode("Tell me ab", "out tea").input_ids == enc.input_ids
    eos = TextTransform(tok, 64, "last", input_format=InputFormat(append_eos=True)).encode("Tell me", " about tea")
    assert eos.input_ids == enc.input_ids + [tok.eos_token_id]


def test_format_1_exports_keep_their_layout(tiny_dirs):
    """Exports that predate the input format: prompt and response tokenized apart, the EOS appended."""
    tok = AutoTokenizer.from_pretrained(tiny_dirs["qwen2"])
    assert ExportMeta(format_version=1, max_length=64).text_format("last") == InputFormat(1, "concat", True)
    legacy = TextTransform(tok, 64, "last", input_format=InputFormat(version=1, append_eos=True))
    enc = legacy.encode("Tell me ab", "out tea")
    split = tok("Tell me ab", add_special_tokens=False).input_ids + tok("out tea", add_special_tokens=False).input_ids
    assert enc.input_ids == split + [tok.eos_token_id]
    # A directory without rewardlab.json (any hub RM) is scored as its own tokenizer builds inputs.
    assert ExportMeta.foreign().text_format("last").add_special_tokens is True


def test_encoder_layout_matches_native_pair_encoding(tiny_dirs):
    tok = AutoTokenizer.from_pretrained(tiny_dirs["bert"])
    enc = TextTransform(tok, 64, "cls").encode("Tell me", "about tea")
    assert enc.input_ids[0] == tok.cls_token_id and enc.input_ids[-1] == tok.sep_token_id
    assert enc.input_ids.count(tok.sep_token_id) == 2
    first_sep = enc.input_ids.index(tok.sep_token_id)
    assert enc.token_type_ids == [0] * (first_sep + 1) + [1] * (len(enc.input_ids) - first_sep - 1)


def test_encoder_one_segment_layout_is_the_natural_call(tiny_dirs):
    """``data.text_pair: false``: ``[CLS] prompt+response [SEP]``, segment ids 0, as ``tokenizer(prompt + response)``
    builds it; an over-long text loses its start and keeps the response's end."""
    tok = AutoTokenizer.from_pretrained(tiny_dirs["bert"])
    joined = TextTransform(tok, 64, "cls", input_format=InputFormat.for_training("cls", False, text_pair=False))
    enc = joined.encode("Tell me", " about tea")
    natural = tok("Tell me about tea")
    assert enc.input_ids == natural.input_ids
    assert enc.token_type_ids == natural.token_type_ids == [0] * len(enc.input_ids)
    assert enc.input_ids.count(tok.sep_token_id) == 1 and not enc.truncated
    short = TextTransform(tok, 8, "cls", input_format=joined.input_format)
    cut = short.encode("one two three four five", " six seven")
    assert cut.truncated and len(cut.input_ids) == 8
    assert cut.input_ids == [tok.cls_token_id] + tok("one two three four five six seven", add_special_tokens=False
                                                     ).input_ids[-6:] + [tok.sep_token_id]  # fmt: skip
    assert InputFormat.for_training("last", False, text_pair=False).layout == "concat"  # decoders: no effect


@pytest.mark.parametrize("append_eos", [False, True])
def test_truncation_cuts_prompt_start_then_response_start(tiny_dirs, append_eos):
    tok = AutoTokenizer.from_pretrained(tiny_dirs["qwen2"])
    fmt = InputFormat(append_eos=append_eos)
    prompt = "one two three four five six seven eight nine ten " * 3
    response = " alpha beta gamma delta"
    full = TextTransform(tok, 512, "last", input_format=fmt).encode(prompt, response)
    n_resp = len(tok(response, add_special_tokens=False).input_ids) + append_eos
    cut = TextTransform(tok, n_resp + 3, "last", input_format=fmt).encode(prompt, response)
    assert cut.truncated and cut.input_ids == full.input_ids[-(n_resp + 3) :]  # end of prompt + whole response
    tiny = TextTransform(tok, 3, "last", input_format=fmt).encode(prompt, response)
    assert tiny.input_ids == full.input_ids[-3:]  # the response's start cut, its end (and the EOS) kept
    assert (tiny.input_ids[-1] == tok.eos_token_id) is append_eos
    dropper = TextTransform(tok, n_resp + 3, "last", overlong="drop")
    assert dropper.encode_pair(PreferencePair(prompt, response, " x")) is None
    assert dropper.stats.dropped == 1 and dropper.stats.seen == 1


def test_chat_template_messages(tiny_dirs):
    tok = AutoTokenizer.from_pretrained(tiny_dirs["qwen2"])
    t = TextTransform(tok, 128, "last")
    msgs = [{"role": "user", "content": "Tell me about tea."}]
    enc = t.encode(msgs, [{"role": "assistant", "content": "Green tea."}])
    text = tok.decode(enc.input_ids)
    assert text == "<|im_start|>user\nTell me about tea.<|im_end|>\n<|im_start|>assistant\nGreen tea.<|im_end|>\n"
    # A string response to a message prompt is the assistant turn.
    assert t.encode(msgs, "Green tea.").input_ids == enc.input_ids


# -- RewardModel invariants ----------------------------------------------------------------------------------
def batch_scores(model, tok, texts, side):
    t = TextTransform(tok, 128, model.pooling)
    rows = [t.encode(p, r).input_ids for p, r in texts]
    ids, mask = pad_rows(rows, tok.pad_token_id, side)
    with torch.no_grad():
        return model(ids, mask)


@pytest.mark.parametrize("family", [*DECODERS, "qwen2_pad_eos"])
def test_left_and_right_padding_give_the_same_scores(tiny_dirs, family):
    model, tok = load(tiny_dirs[family])
    texts = [(p.prompt, p.chosen) for p in PAIRS[:6]] + [("Hi", " no")]
    right = batch_scores(model, tok, texts, "right")
    left = batch_scores(model, tok, texts, "left")
    alone = torch.cat([batch_scores(model, tok, [x], "right") for x in texts])
    torch.testing.assert_close(left, right, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, right, atol=1e-5, rtol=1e-5)


def test_pad_equals_eos_scores_read_at_the_eos_token(tiny_dirs):
    """With pad == eos, HF's own pooling reads the token *before* a final EOS; ours reads the EOS. (Exports
    get a distinct pad token where the vocabulary has one, and format 2 appends no EOS by default.)"""
    model, tok = load(tiny_dirs["qwen2_pad_eos"])
    assert tok.pad_token_id == tok.eos_token_id
    t = TextTransform(tok, 64, "last", input_format=InputFormat(append_eos=True))
    ids = torch.tensor([t.encode("Tell me about tea.", " Sure!").input_ids])
    mask = torch.ones_like(ids)
    hf = model.backbone
    with torch.no_grad():
        hidden = hf.model(input_ids=ids, attention_mask=mask).last_hidden_state
        at_eos = hf.score(hidden[:, -1])[:, 0]
        before_eos = hf.score(hidden[:, -2])[:, 0]
        ours = model(ids, mask)
        native = hf(input_ids=ids, attention_mask=mask).logits[:, 0]
    torch.testing.assert_close(ours, at_eos)
    torch.testing.assert_close(native, before_eos)  # the trap we avoid


def test_swapping_chosen_and_rejected_negates_the_margin(tiny_dirs):
    model, tok = load(tiny_dirs["qwen2"])
    scorer = Scorer(RewardBundle.from_model(model, tok, max_length=128))
    c, r = scorer.score_pairs(PAIRS[:5])
    c2, r2 = scorer.score_pairs([PreferencePair(p.prompt, p.rejected, p.chosen) for p in PAIRS[:5]])
    for a, b, a2, b2 in zip(c, r, c2, r2):
        assert a2 - b2 == pytest.approx(-(a - b), abs=1e-6)


# -- checkpoints ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["qwen2", "bert"])
def test_export_reloads_through_auto_classes_with_identical_scores(tiny_dirs, tmp_path, family):
    model, tok = load(tiny_dirs[family])
    scorer = Scorer(RewardBundle.from_model(model, tok, max_length=128))
    texts = [(p.prompt, p.chosen) for p in PAIRS[:4]]
    expected = scorer.score([t[0] for t in texts], [t[1] for t in texts])
    out = save_reward_model(model, tok, tmp_path / "export", ExportMeta(max_length=128))
    assert (out / "rewardlab.json").is_file() and (out / "model.safetensors").is_file()
    # A class name transformers 4 (reward-bench's pin) can load too; transformers 5 calls it TokenizersBackend.
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer_class"] != "TokenizersBackend"
    # rewardlab's loader
    again = Scorer.from_pretrained(str(out), device="cpu")
    assert again.score([t[0] for t in texts], [t[1] for t in texts]) == pytest.approx(expected, abs=1e-5)
    # plain transformers, as TRL / reward-bench would load it, one text at a time (no padding)
    native = AutoModelForSequenceClassification.from_pretrained(out).eval()
    native_tok = AutoTokenizer.from_pretrained(out)
    for (prompt, response), want in zip(texts, expected):
        if family == "bert":
            enc = native_tok(prompt, response, return_tensors="pt")
        else:
            enc = native_tok(prompt + response, return_tensors="pt")  # the model card's call
        with torch.no_grad():
            got = native(**enc).logits[0, 0].item()
        assert got == pytest.approx(want, abs=1e-4)


def test_atomic_export_keeps_the_old_directory_on_failure(tiny_dirs, tmp_path):
    model, tok = load(tiny_dirs["qwen2"])
    target = save_reward_model(model, tok, tmp_path / "m", ExportMeta(max_length=64))
    before = sorted(p.name for p in target.iterdir())

    class Boom:
        def save_pretrained(self, _):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_reward_model(model, Boom(), target, ExportMeta(max_length=64))
    assert sorted(p.name for p in target.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging left behind


def test_lora_export_merged_and_adapter(tiny_dirs, tmp_path):
    from rewardlab.config.schema import LoraSettings
    from rewardlab.models.backbones import apply_lora

    base = AutoModelForSequenceClassification.from_pretrained(tiny_dirs["qwen2"], num_labels=1)
    tok = AutoTokenizer.from_pretrained(tiny_dirs["qwen2"])
    peft_model = apply_lora(base, LoraSettings(r=4, alpha=8, dropout=0.0))
    with torch.no_grad():  # make the adapter and head non-trivial
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
    model = RewardModel(peft_model, "last").eval()
    scorer = Scorer(RewardBundle.from_model(model, tok, max_length=128))
    expected = scorer.score([p.prompt for p in PAIRS[:3]], [p.chosen for p in PAIRS[:3]])
    merged = save_reward_model(model, tok, tmp_path / "merged", ExportMeta(max_length=128), merge_lora=True)
    adapter = save_reward_model(model, tok, tmp_path / "adapter", ExportMeta(max_length=128), merge_lora=False)
    assert (adapter / "adapter_model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    for path in (merged, adapter):
        got = RewardBundle.load(path).model
        s = Scorer(RewardBundle.from_model(got, tok, max_length=128)).score(
            [p.prompt for p in PAIRS[:3]], [p.chosen for p in PAIRS[:3]]
        )
        assert s == pytest.approx(expected, abs=1e-4)
    # The live model keeps its adapters after a merged export.
    assert Scorer(RewardBundle.from_model(model, tok, max_length=128)).score(
        [p.prompt for p in PAIRS[:3]], [p.chosen for p in PAIRS[:3]]
    ) == pytest.approx(expected, abs=1e-6)


def test_model_card_says_how_to_fill_openrlhfs_normalization_buffers():
    from rewardlab.data.input_format import InputFormat
    from rewardlab.models.export_meta import Normalization
    from rewardlab.models.model_card import render_model_card

    fmt = InputFormat().as_json(chat_template="concat")
    card = render_model_card(ExportMeta(input_format=fmt, normalization=Normalization(mean=0.1, std=2.0)), name="m")
    assert "model.mean.fill_(model.config.mean); model.std.fill_(model.config.std)" in card
    assert "fill_" not in render_model_card(ExportMeta(input_format=fmt), name="m")  # no statistics, no advice
