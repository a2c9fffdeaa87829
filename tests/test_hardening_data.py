"""Bad input never becomes a traceback or a silent surprise: oversized images, image paths leaving the data folder,
multi-megabyte texts (bounded before tokenizing, with the same ids as the whole text gives)."""

from __future__ import annotations

import io
import json
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from rewardlab.data import transforms
from rewardlab.data.input_format import InputFormat
from rewardlab.data.records import PreferencePair
from rewardlab.data.transforms import (
    MAX_CHARS_PER_TOKEN,
    MAX_IMAGE_PIXELS,
    TextTransform,
    bound_text,
    check_image_size,
    load_image,
)
from rewardlab.errors import DataError
from tests.tiny import make_tiny

RESIZE = (
    "resize it (e.g. to at most 4096 pixels on its longest side: the model's image processor shrinks it further "
    "anyway) or remove it"
)


def png_claiming(width: int, height: int) -> bytes:
    """A 2x2 PNG whose header (IHDR) claims ``width`` x ``height``: PIL reads the huge size from a few bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    assert data[12:16] == b"IHDR"  # 8-byte signature, 4-byte chunk length, then the chunk type and 13 data bytes
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # the CRC covers type + data
    return bytes(data)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rewardlab.cli", *args], capture_output=True, text=True, cwd=cwd)


def vision_transform(path: Path, max_length: int = 256, overlong: str = "truncate"):
    import dataclasses

    from rewardlab.models.bundle import RewardBundle

    return dataclasses.replace(RewardBundle.load(path, max_length=max_length).transform, overlong=overlong)


# ---------------------------------------------------------------------------------------------- oversized images


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (100_000, 100_000, "10,000,000,000"),  # PIL refuses it (over 2x its limit): its count of pixels is shown
        (10_000, 10_000, "10000x10000"),  # PIL would only warn: our check names the size, no warning leaks
        (9_000, 8_000, "9000x8000"),  # under PIL's limit, over ours
    ],
)
def test_oversized_image_is_refused_from_its_header(tmp_path, recwarn, width, height, size):
    from PIL import Image

    path = tmp_path / "big.png"
    path.write_bytes(png_claiming(width, height))
    message = f"image {path} is {size} pixels, over the 64,000,000 pixel limit; {RESIZE}"
    with pytest.raises(DataError) as caught:
        load_image(str(path), None)
    assert str(caught.value) == message
    with pytest.raises(DataError, match=re.escape(f"image big.png is {size} pixels")):
        load_image({"bytes": path.read_bytes(), "path": "big.png"}, None)
    with pytest.raises(DataError, match=re.escape(f"image {tmp_path / 'big.png'} is {size} pixels")):
        load_image("big.png", tmp_path)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_the_pixel_limit_is_inclusive_and_applies_to_pil_images(tmp_path):
    from PIL import Image

    assert MAX_IMAGE_PIXELS == 8000 * 8000
    check_image_size((8000, 8000), "x")  # at the limit: accepted
    with pytest.raises(DataError, match=r"^image x is 8000x8001 pixels, over the 64,000,000 pixel limit"):
        check_image_size((8000, 8001), "x")
    (tmp_path / "big.png").write_bytes(png_claiming(9000, 8000))
    lazy = Image.open(tmp_path / "big.png")  # only the header is read: a PIL image that was never decoded
    with lazy, pytest.raises(DataError, match=r"^image \(PIL image\) is 9000x8000 pixels"):
        load_image(lazy, None)
    small = tmp_path / "small.png"
    Image.new("RGB", (30, 20), "red").save(small)
    assert load_image(str(small), None).size == (30, 20)


def test_vision_transform_names_the_record_with_an_oversized_image(tiny_vlms, tmp_path):
    transform = vision_transform(tiny_vlms["qwen2_vl"])
    (tmp_path / "big.png").write_bytes(png_claiming(100_000, 100_000))
    pair = PreferencePair("Describe the page.", "a", "b", images=(str(tmp_path / "big.png"),), id="rec-3")
    with pytest.raises(DataError) as caught:
        transform.encode_pair(pair)
    assert str(caught.value) == (
        f"record rec-3: image {tmp_path / 'big.png'} is 10,000,000,000 pixels, over the 64,000,000 pixel limit; "
        f"{RESIZE}"
    )


def test_score_command_exits_2_with_one_line_for_an_oversized_image(tiny_vlms, tmp_path, capsys):
    from rewardlab.cli import main

    (tmp_path / "big.png").write_bytes(png_claiming(100_000, 100_000))
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "p", "response": "r", "images": ["big.png"]}) + "\n")
    out = tmp_path / "scores.jsonl"
    assert main(["score", "--model", str(tiny_vlms["llava"]), "--input", str(data), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"error: {data}:1:images: image {tmp_path / 'big.png'} is 10,000,000,000 pixels, over the" in err
    assert "Traceback" not in err and "DecompressionBomb" not in err and not out.exists()


# ---------------------------------------------------------------------------------------------- paths


def test_relative_image_path_may_not_leave_the_data_folder(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    (data / "shots").mkdir(parents=True)
    Image.new("RGB", (4, 3)).save(tmp_path / "outside.png")
    Image.new("RGB", (5, 2)).save(data / "inside.png")
    for ref in ("../outside.png", "shots/../../outside.png", {"bytes": None, "path": "../outside.png"}):
        with pytest.raises(DataError) as caught:
            load_image(ref, data)
        name = ref if isinstance(ref, str) else ref["path"]
        assert str(caught.value) == (
            f"image {name} resolves outside the data folder {data} (to {tmp_path / 'outside.png'}); relative image "
            "paths are read from the data file's folder and may not leave it: move the image into that folder, "
            "or use an absolute path if you mean it"
        )
    assert load_image("shots/../inside.png", data).size == (5, 2)  # '..' that stays inside is fine
    assert load_image(str(tmp_path / "outside.png"), data).size == (4, 3)  # absolute: the user's explicit choice
    assert load_image({"bytes": (tmp_path / "outside.png").read_bytes(), "path": "../x.png"}, data).size == (4, 3)


def test_symlinks_inside_the_data_folder_stay_allowed(tmp_path):
    from PIL import Image

    (tmp_path / "blobs").mkdir()
    (tmp_path / "snapshot").mkdir()
    Image.new("RGB", (6, 6)).save(tmp_path / "blobs" / "abc", "PNG")  # blobs have no suffix
    (tmp_path / "snapshot" / "a.png").symlink_to(tmp_path / "blobs" / "abc")  # the Hugging Face cache's layout
    assert load_image("a.png", tmp_path / "snapshot").size == (6, 6)


# ---------------------------------------------------------------------------------------------- inspect


def test_inspect_lists_oversized_and_escaping_images_as_problems(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    (data / "big.png").write_bytes(png_claiming(100_000, 100_000))
    (data / "wide.png").write_bytes(png_claiming(9_000, 8_000))
    Image.new("RGB", (4, 3)).save(tmp_path / "outside.png")
    Image.new("RGB", (8, 6)).save(data / "ok.png")
    rows = [
        {"id": "r1", "prompt": "p", "chosen": "a", "rejected": "b", "images": ["ok.png"]},
        {"id": "r2", "prompt": "p", "chosen": "a", "rejected": "c", "images": ["big.png"]},
        {"id": "r3", "prompt": "p", "chosen": "a", "rejected": "d", "images": ["../outside.png"]},
        {"id": "r4", "prompt": "p", "chosen": "a", "rejected": "e", "images": [str(tmp_path / "outside.png")]},
        {"id": "r5", "prompt": "p", "chosen": "a", "rejected": "f", "images": ["wide.png"]},
    ]
    path = data / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    proc = run_cli("inspect", str(path), "--json", str(tmp_path / "report.json"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "DecompressionBomb" not in proc.stderr
    assert "Image problems: 3" in proc.stdout
    images = json.loads((tmp_path / "report.json").read_text())["images"]
    assert images["problems"] == 3
    assert images["width"]["count"] == 2 and images["width"]["max"] == 8  # ok.png and the absolute outside.png
    assert [(p["record"], p["id"], p["image"]) for p in images["listed"]] == [
        (2, "r2", '"big.png"'),
        (3, "r3", '"../outside.png"'),
        (5, "r5", '"wide.png"'),
    ]
    big, outside, wide = (p["message"] for p in images["listed"])
    assert big == f"image {data / 'big.png'} is 10,000,000,000 pixels, over the 64,000,000 pixel limit; {RESIZE}"
    assert outside.startswith(f"image ../outside.png resolves outside the data folder {data} (to ")
    assert wide.startswith(f"image {data / 'wide.png'} is 9000x8000 pixels, over the 64,000,000 pixel limit")


# ---------------------------------------------------------------------------------------------- long texts

WORDS = ["the", "quick", "answer", "is", "that", "paris", "remains", "capital", "of", "france", "while", "lyon"]


def words(n_chars: int, offset: int = 0) -> str:
    """Normal text (varied words) of at least ``n_chars`` characters."""
    unit = " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(len(WORDS) * 7))
    return (unit + " ") * (n_chars // (len(unit) + 1) + 1)


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("hardening")
    return {family: AutoTokenizer.from_pretrained(make_tiny(root / family, family)) for family in ("qwen2", "bert")}


def text_transforms(tokenizer, pooling: str, **kwargs):
    return TextTransform(tokenizer, 64, pooling, **kwargs)


def unbounded(monkeypatch) -> None:
    """Today's path, the reference: no character bound before tokenizing."""
    monkeypatch.setattr(transforms, "MAX_CHARS_PER_TOKEN", 10**12)


def test_bound_text_keeps_the_end_response_first():
    assert bound_text("abc", "def", 6) == ("abc", "def", False)
    assert bound_text("abc", "def", 4) == ("c", "def", True)
    assert bound_text("abc", "def", 3) == ("", "def", True)
    assert bound_text("abc", "defgh", 3) == ("", "fgh", True)
    prompt, response, _ = bound_text("x" * 50 + "P", "y" * 30 + "R", 40)
    assert prompt + response == ("x" * 50 + "P" + "y" * 30 + "R")[-40:]  # concat: the last 40 characters


LAYOUTS = [
    ("qwen2", "last", {}),  # format 2: tokenizer(prompt + response)
    ("qwen2", "last", {"input_format": InputFormat(version=1, append_eos=True)}),  # prompt, response apart
    ("bert", "cls", {"input_format": InputFormat(layout="pair")}),  # [CLS] prompt [SEP] response [SEP]
    ("bert", "cls", {"input_format": InputFormat(layout="joined")}),  # [CLS] prompt+response [SEP]
    ("qwen2", "last", {"chat_template": "always"}),  # rendered by the chat template
]


@pytest.mark.parametrize(("family", "pooling", "options"), LAYOUTS)
def test_long_texts_give_the_ids_the_whole_text_gives(tokenizers, monkeypatch, family, pooling, options):
    tok = tokenizers[family]
    cap = 64 * MAX_CHARS_PER_TOKEN
    cases = [
        ("What is the capital?", "Paris."),  # fits
        ("What is the capital?", words(cap)[: cap - 100]),  # under the character cap, over 64 tokens
        ("What is the capital?", words(40 * cap, 3)),  # response over the cap: the prompt is cut out
        (words(30 * cap, 5), "Paris is the capital."),  # prompt over the cap: its end fills 53 of 64 tokens
        (words(20 * cap, 1), words(20 * cap, 2)),  # both over
    ]
    bounded = [text_transforms(tok, pooling, **options).encode(p, r) for p, r in cases]
    unbounded(monkeypatch)
    whole = [text_transforms(tok, pooling, **options).encode(p, r) for p, r in cases]
    for new, old in zip(bounded, whole):
        assert (new.input_ids, new.token_type_ids, new.truncated) == (old.input_ids, old.token_type_ids, old.truncated)
        assert len(new.input_ids) <= 64
    assert [e.truncated for e in bounded] == [False, True, True, True, True]


def test_a_5_mb_response_is_its_last_characters(tokenizers):
    tok = tokenizers["qwen2"]
    huge = words(5_000_000)
    assert len(huge) > 5_000_000
    transform = text_transforms(tok, "last")
    full = transform.encode("Where is Paris?", huge)
    tail = transform.encode("Where is Paris?", huge[-3000:])
    assert full.input_ids == tail.input_ids and len(full.input_ids) == 64
    assert full.truncated and tail.truncated
    assert full.input_ids == tok(huge[-3000:], add_special_tokens=False).input_ids[-64:]


def test_texts_over_the_cap_are_dropped_or_counted(tokenizers):
    tok = tokenizers["qwen2"]
    huge = words(64 * MAX_CHARS_PER_TOKEN + 1)
    dropping = text_transforms(tok, "last", overlong="drop")
    assert dropping.encode("p", huge) is None
    assert dropping.encode_pair(PreferencePair("p", huge, "short")) is None
    assert dropping.stats.as_dict() == {"seen": 1, "truncated": 0, "dropped": 1}
    keeping = text_transforms(tok, "last")
    assert keeping.encode_pair(PreferencePair("p", huge, "short")) is not None
    assert keeping.stats.as_dict() == {"seen": 1, "truncated": 1, "dropped": 0}


def test_a_character_cut_is_a_truncation_even_when_few_tokens_remain(tokenizers, monkeypatch):
    # With a cap of 1 character per token, "paris " (1-2 tokens per 6 characters) fits the token budget once cut:
    # the row still says it was truncated, because text was removed.
    monkeypatch.setattr(transforms, "MAX_CHARS_PER_TOKEN", 1)
    encoded = text_transforms(tokenizers["qwen2"], "last").encode("p", "paris " * 100)
    assert encoded.truncated and len(encoded.input_ids) < 64


# ---------------------------------------------------------------------------------------------- vision texts


def test_vision_texts_are_bounded_with_the_same_ids(tiny_vlms, shots, monkeypatch):
    transform = vision_transform(tiny_vlms["qwen2_vl"])
    page = shots[1][0]
    pixels = transform.pixel_inputs(page.images)
    cap = 256 * MAX_CHARS_PER_TOKEN
    cases = [(page.prompt, page.chosen), (page.prompt, words(30 * cap)), (words(20 * cap, 4), page.chosen)]
    bounded = [transform.encode(p, r, pixels=pixels) for p, r in cases]
    assert [e.truncated for e in bounded] == [False, True, True]
    unbounded(monkeypatch)
    whole = [transform.encode(p, r, pixels=pixels) for p, r in cases]
    assert [e.input_ids for e in bounded] == [e.input_ids for e in whole]
    assert [e.extras["mm_token_type_ids"] for e in bounded] == [e.extras["mm_token_type_ids"] for e in whole]
    monkeypatch.undo()
    dropping = vision_transform(tiny_vlms["qwen2_vl"], overlong="drop")
    assert dropping.encode(page.prompt, words(cap + 1), pixels=pixels) is None


def test_training_and_scoring_refuse_image_paths_that_leave_the_data_folder(tmp_path):
    """The readers' path rule (prepare.resolve_images) is the one train, eval and score use."""
    from rewardlab.data.prepare import resolve_image_paths
    from rewardlab.data.records import PreferencePair
    from rewardlab.errors import DataError

    data = tmp_path / "data" / "train.jsonl"
    data.parent.mkdir()
    data.write_text("")
    ok = resolve_image_paths([PreferencePair("p", "a", "b", images=("shots/x.png",), id="r1")], str(data))
    assert ok[0].images == (str(data.parent / "shots" / "x.png"),)
    with pytest.raises(DataError, match=r"train.jsonl:images: record r2: image \.\./secret\.png resolves outside"):
        resolve_image_paths([PreferencePair("p", "a", "b", images=("../secret.png",), id="r2")], str(data))


def test_a_lone_surrogate_is_a_clear_error_in_files_commands_and_the_scorer(tmp_path, capsys):
    """JSON's "\\ud800" decodes to half a UTF-16 pair, which no tokenizer encodes (a TypeError deep inside it
    before): files name the row and field, the commands exit 2, the Scorer raises a DataError."""
    from rewardlab.cli import main
    from rewardlab.models.scorer import Scorer

    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "fine", "rejected": "ok"}\n'
                    '{"prompt": "p", "chosen": "bad \\ud800", "rejected": "ok"}\n', encoding="utf-8")  # fmt: skip
    assert main(["inspect", str(data), "--json", str(tmp_path / "report.json")]) == 0
    listed = json.loads((tmp_path / "report.json").read_text())["problems"]["listed"]
    assert [(p["row"], p["field"]) for p in listed] == [(2, "chosen")] and "lone surrogate" in listed[0]["message"]
    capsys.readouterr()
    model = make_tiny(tmp_path / "m")
    assert (
        main(["compare", "--model", str(model), "--device", "cpu", "--prompt", "p", "--a", "x\udcff", "--b", "y"]) == 2
    )
    err = capsys.readouterr().err
    assert "lone surrogate (U+DCFF at character 1)" in err and "Traceback" not in err
    with pytest.raises(DataError, match=r"response 1 of 1: the prompt holds a lone surrogate \(U\+D800"):
        Scorer.from_pretrained(str(model), device="cpu").score("p\ud800", ["r"])
