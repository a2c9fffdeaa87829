"""Model transforms: record → token ids. The only data module that knows about tokenizers.

Text rows follow the export's input format (:mod:`rewardlab.data.input_format`), so that training, the
`Scorer` and outside tools that call the tokenizer the natural way read exactly the same ids:

- Decoders (``pooling="last"``): ``tokenizer(prompt + response)`` — concatenated, tokenized together, nothing
  added (``append_eos`` appends the EOS); the score is read at the last token.
- Encoders (``pooling="cls"``): ``[CLS] prompt [SEP] response [SEP]`` with ``token_type_ids`` 0/1 — the
  same ids as ``tokenizer(prompt, response)``, so the exported model scores natively too.
- Conversational records (and ``chat_template="always"``) go through the tokenizer's chat template, and the
  rendered conversation is tokenized without added special tokens (the template writes its own).

Over-long rows are cut from the left (the prompt's start first, then the response's start), so the end of the
response, where the score is read, always survives. Texts are first bounded by characters
(:data:`MAX_CHARS_PER_TOKEN` per token of ``max_length``), so a multi-megabyte row costs no more to encode than
one just over the limit.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewardlab.data.input_format import InputFormat
from rewardlab.data.records import PreferencePair, RankedGroup, Text, lone_surrogate
from rewardlab.errors import DataError


@dataclass
class TransformStats:
    """Counts for the over-long policy; logged by the caller so truncation is never silent."""

    truncated: int = 0
    dropped: int = 0
    seen: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"seen": self.seen, "truncated": self.truncated, "dropped": self.dropped}


@dataclass
class EncodedText:
    """One row: token ids, optional segment ids (encoders), and ``extras`` for the backbone — for vision
    rows ``pixel_values`` and, per family, ``image_grid_thw`` / ``mm_token_type_ids``."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    truncated: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


# Texts are cut to ``max_length * MAX_CHARS_PER_TOKEN`` characters before tokenizing: tokenizing a whole 21.7 MB
# row to keep its last few thousand tokens took 84 s and 3.7 GB. Subword vocabularies average ~4 characters
# per token on prose and code and stay far below 32 on normal text (long tokens are rare runs of spaces or
# punctuation), so the kept tail still holds more than ``max_length`` tokens and the ids kept equal those of
# the whole text. Text a character cap cuts counts as over-long: truncated, or dropped by ``overlong="drop"``.
MAX_CHARS_PER_TOKEN = 32


def check_characters(prompt: Text, response: Text) -> None:
    """A :class:`DataError` for a prompt or response holding a lone surrogate, which no tokenizer encodes (it
    failed deep inside the tokenizer with a TypeError before)."""
    for name, value in (("prompt", prompt), ("response", response)):
        if (where := lone_surrogate(value)) is not None:
            raise DataError(f"the {name} holds a lone surrogate ({where}), which is not text; fix its encoding")


def bound_text(prompt: str, response: str, char_cap: int) -> tuple[str, str, bool]:
    """``(prompt, response, cut)`` keeping the last ``char_cap`` characters of ``prompt + response``: the end of
    the response first, then the end of the prompt, as :func:`fit_to_budget` keeps tokens. ``cut`` is True
    when anything was removed; texts within the cap come back unchanged."""
    if len(prompt) + len(response) <= char_cap:
        return prompt, response, False
    response = response[max(len(response) - char_cap, 0) :]
    room = char_cap - len(response)
    return (prompt[len(prompt) - room :] if room > 0 else ""), response, True


def fit_to_budget(
    prompt_ids: list[int], response_ids: list[int], budget: int, overlong: str
) -> tuple[list[int], list[int], bool] | None:
    """Apply the over-long policy: ``None`` to drop, else ids cut from the prompt's start first, then from the
    response's start, so that the end of the response, where the score is read, survives."""
    if len(prompt_ids) + len(response_ids) <= budget:
        return prompt_ids, response_ids, False
    if overlong == "drop":
        return None
    keep_response = min(len(response_ids), max(budget, 0))
    keep_prompt = max(budget, 0) - keep_response
    prompt_ids = prompt_ids[len(prompt_ids) - keep_prompt :] if keep_prompt > 0 else []
    return prompt_ids, response_ids[len(response_ids) - keep_response :], True


def pair_features(
    stats: TransformStats, pair: PreferencePair, chosen: EncodedText | None, rejected: EncodedText | None
) -> dict[str, Any] | None:
    """The row features of a pair (``chosen_*`` / ``rejected_*``, ``margin``), counting drops and truncations."""
    if chosen is None or rejected is None:
        stats.dropped += 1
        return None
    stats.truncated += int(chosen.truncated or rejected.truncated)
    feature: dict[str, Any] = {
        "chosen_input_ids": chosen.input_ids,
        "rejected_input_ids": rejected.input_ids,
        "margin": 0.0 if pair.margin is None else float(pair.margin),
    }
    if chosen.token_type_ids is not None:
        feature["chosen_token_type_ids"] = chosen.token_type_ids
        feature["rejected_token_type_ids"] = rejected.token_type_ids
    if "mm_token_type_ids" in chosen.extras:
        feature["chosen_mm_token_type_ids"] = chosen.extras["mm_token_type_ids"]
        feature["rejected_mm_token_type_ids"] = rejected.extras["mm_token_type_ids"]
    return feature


def group_features(
    stats: TransformStats, group: RankedGroup, encoded: list[EncodedText | None]
) -> dict[str, Any] | None:
    """The row features of a ranked group (``input_ids``, ``ranks`` and per-row sequences, one entry per
    response), counting drops and truncations; ``None`` when any response is dropped."""
    if any(e is None for e in encoded):
        stats.dropped += 1
        return None
    stats.truncated += int(any(e.truncated for e in encoded))
    feature: dict[str, Any] = {"input_ids": [e.input_ids for e in encoded], "ranks": list(group.ranks)}
    if encoded[0].token_type_ids is not None:
        feature["token_type_ids"] = [e.token_type_ids for e in encoded]
    if "mm_token_type_ids" in encoded[0].extras:
        feature["mm_token_type_ids"] = [e.extras["mm_token_type_ids"] for e in encoded]
    return feature


@dataclass
class TextTransform:
    """Turns (prompt, response) into model inputs for a text reward model.

    Args:
        tokenizer: a Hugging Face tokenizer.
        max_length: longest sequence, special tokens included.
        pooling: ``"last"`` (decoders) or ``"cls"`` (encoders); decides the special-token layout.
        overlong: ``"truncate"`` (cut the prompt's start, then the response's start) or ``"drop"``.
        chat_template: ``"auto"`` (only for message lists), ``"always"`` or ``"never"``.
        input_format: how rows are built (format 2 by default; format 1 for exports that predate it).
    """

    tokenizer: Any
    max_length: int
    pooling: Literal["last", "cls"]
    overlong: Literal["truncate", "drop"] = "truncate"
    chat_template: Literal["auto", "always", "never"] = "auto"
    stats: TransformStats = field(default_factory=TransformStats)
    input_format: InputFormat = field(default_factory=InputFormat)
    # Rows rendered with the chat template so far: an export trained on none ships the plain-string template.
    templated_rows: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        tok = self.tokenizer
        if self.pooling == "cls":
            if tok.cls_token_id is None or tok.sep_token_id is None:
                raise DataError("pooling='cls' needs a tokenizer with [CLS] and [SEP] tokens (an encoder)")
            self._head, self._mid, self._tail = [tok.cls_token_id], [tok.sep_token_id], [tok.sep_token_id]
        else:
            probe = tok("a").input_ids
            adds_bos = tok.bos_token_id is not None and len(probe) > 0 and probe[0] == tok.bos_token_id
            self._head = [tok.bos_token_id] if adds_bos else []
            self._mid = []
            self._tail = [tok.eos_token_id] if tok.eos_token_id is not None else []
            # What the tokenizer's natural call adds around a text (foreign RMs are scored with it).
            bare = tok("a", add_special_tokens=False).input_ids
            at = next((i for i in range(len(probe)) if probe[i : i + len(bare)] == bare), 0)
            self._native = (probe[:at], probe[at + len(bare) :])
        # Segment ids only matter to encoders (BERT-style pair inputs); decoders do not take them.
        self._type_ids = self.pooling == "cls" and "token_type_ids" in getattr(tok, "model_input_names", ())
        # Messages are only rendered with a template; record whether one exists once.
        self._has_template = bool(getattr(tok, "chat_template", None))

    # -- rendering ---------------------------------------------------------------------------------------------
    def _uses_template(self, prompt: Text, response: Text) -> bool:
        is_chat = isinstance(prompt, list) or isinstance(response, list)
        if self.chat_template == "never":
            if is_chat:
                raise DataError("chat_template='never' but the record holds chat messages; use 'auto'")
            return False
        return self.chat_template == "always" or is_chat

    def _render(self, prompt: Text, response: Text) -> tuple[str, str, bool]:
        """Returns (prompt_text, response_text, templated)."""
        if not self._uses_template(prompt, response):
            return str(prompt), str(response), False
        if not self._has_template:
            raise DataError(
                "the record holds chat messages but the tokenizer has no chat template; set one on the "
                "tokenizer or give prompts and responses as plain strings"
            )
        prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
        response_msgs = response if isinstance(response, list) else [{"role": "assistant", "content": response}]
        head = self.tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(prompt_msgs + response_msgs, tokenize=False)
        if not full.startswith(head):
            # Some templates rewrite earlier turns (e.g. strip reasoning); fall back to the prompt without the
            # generation prompt, which every template reproduces as a prefix.
            head = self.tokenizer.apply_chat_template(prompt_msgs, tokenize=False)
            if not full.startswith(head):
                raise DataError("the chat template does not render the prompt as a prefix of the conversation")
        return head, full[len(head) :], True

    # -- encoding ----------------------------------------------------------------------------------------------
    def encode(self, prompt: Text, response: Text, images: tuple[Any, ...] = ()) -> EncodedText | None:
        """Token ids for one (prompt, response); ``None`` when over-long (over ``max_length`` tokens, or over
        ``max_length * MAX_CHARS_PER_TOKEN`` characters) and the policy is ``drop``."""
        if images:
            raise DataError("the record has images but the model is text-only; use a vision-language backbone")
        check_characters(prompt, response)
        prompt_text, response_text, templated = self._render(prompt, response)
        self.templated_rows += templated
        prompt_text, response_text, cut = bound_text(prompt_text, response_text, self.max_length * MAX_CHARS_PER_TOKEN)
        if cut and self.overlong == "drop":
            return None
        if self.pooling == "cls" and self.input_format.layout == "joined":
            encoded = self._encode_joined(prompt_text + response_text)
        elif self.pooling == "cls" or self.input_format.version == 1:
            encoded = self._encode_split(prompt_text, response_text, templated)
        else:
            encoded = self._encode_concat(prompt_text + response_text, templated)
        if encoded is not None and cut:
            encoded.truncated = True  # the characters cut were text the model does not see
        return encoded

    # Tokenizer calls pass verbose=False: transformers' "sequence length is longer than the specified maximum"
    # warning is noise here, where over-long rows are cut by the policy above.
    def _encode_concat(self, text: str, templated: bool) -> EncodedText | None:
        """Format 2 decoders: the whole text tokenized at once, as ``tokenizer(prompt + response)`` does."""
        tok, fmt = self.tokenizer, self.input_format
        head, tail = self._native if fmt.add_special_tokens and not templated else ([], [])
        if fmt.append_eos and not templated:
            tail = [*tail, tok.eos_token_id]
        return self._encode_whole(text, head, tail, type_ids=False)

    def _encode_joined(self, text: str) -> EncodedText | None:
        """Encoders with ``data.text_pair: false``: one segment, ``[CLS] prompt+response [SEP]``, as
        ``tokenizer(prompt + response)`` builds it."""
        return self._encode_whole(text, self._head, self._tail, type_ids=self._type_ids)

    def _encode_whole(self, text: str, head: list[int], tail: list[int], *, type_ids: bool) -> EncodedText | None:
        """``text`` tokenized at once between ``head`` and ``tail`` (segment ids all 0 when ``type_ids``); over
        ``max_length``, its start is cut (the prompt's, then the response's) or, with ``drop``, ``None``."""
        ids = self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids
        fitted = fit_to_budget([], ids, self.max_length - len(head) - len(tail), self.overlong)
        if fitted is None:
            return None
        row = head + fitted[1] + tail
        return EncodedText(row, [0] * len(row) if type_ids else None, fitted[2])

    def _encode_split(self, prompt_text: str, response_text: str, templated: bool) -> EncodedText | None:
        """Encoders (a [CLS]/[SEP] pair) and format 1 decoders: prompt and response tokenized separately."""
        tok = self.tokenizer
        prompt_ids = tok(prompt_text, add_special_tokens=False, verbose=False).input_ids if prompt_text else []
        response_ids = tok(response_text, add_special_tokens=False, verbose=False).input_ids
        head, mid, tail = ([], [], []) if templated and self.pooling == "last" else (self._head, self._mid, self._tail)
        fitted = fit_to_budget(
            prompt_ids, response_ids, self.max_length - len(head) - len(mid) - len(tail), self.overlong
        )
        if fitted is None:
            return None
        prompt_ids, response_ids, truncated = fitted
        first = head + prompt_ids + mid
        second = response_ids + tail
        type_ids = [0] * len(first) + [1] * len(second) if self._type_ids else None
        return EncodedText(first + second, type_ids, truncated)

    def encode_pair(self, pair: PreferencePair) -> dict[str, Any] | None:
        """Features of one pair for :class:`~rewardlab.data.collator.PairCollator`; ``None`` if dropped."""
        self.stats.seen += 1
        chosen = self.encode(pair.prompt, pair.chosen, pair.images)
        rejected = self.encode(pair.prompt, pair.rejected, pair.images)
        return pair_features(self.stats, pair, chosen, rejected)

    def encode_group(self, group: RankedGroup) -> dict[str, Any] | None:
        """Features of one ranked group for :class:`~rewardlab.data.collator.GroupCollator`."""
        self.stats.seen += 1
        return group_features(self.stats, group, [self.encode(group.prompt, r, group.images) for r in group.responses])


# -- vision ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptLayout:
    """A vision family's built-in prompt (used when the checkpoint's chat template knows no images), rendered as
    ``before + <image 1 tokens> + between_images + <image 2 tokens> ... + after_image + prompt + before_response``
    then ``response_prefix + response`` and the EOS. Part of the family's entry
    (:class:`rewardlab.models.vision.VisionFamily`); ``family`` names it in messages.

    ``bos``: the row starts with the tokenizer's BOS (LLaVA's Llama/Vicuna prompt; Qwen's chat format has none).
    ``mm_token_types``: rows carry ``mm_token_type_ids`` (0 text, 1 image), which Qwen-VL's language model needs.
    """

    family: str
    before: str
    between_images: str
    after_image: str
    before_response: str
    response_prefix: str = ""
    bos: bool = False
    mm_token_types: bool = False


IMAGE_URL_TIMEOUT_S = 30.0
# Largest image accepted (width x height), checked on the header before any pixel is decoded, so a file of a few
# bytes that claims 100000x100000 cannot take the machine's memory. 64 megapixels (8000x8000, 192 MB as RGB) is
# far above what vision processors use (they shrink images to a few megapixels at most); PIL's own
# decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``, ~89M warns, ~179M refuses) sits above it, and its
# refusal becomes the same DataError.
MAX_IMAGE_PIXELS = 64_000_000


def load_image(ref: Any, root: Path | None) -> Any:
    """An RGB PIL image from a path (relative paths resolve inside ``root``, the data file's folder, see
    :func:`local_image_path`), an ``http(s)://`` URL, a ``{"bytes": ..., "path": ...}`` dict (how ``datasets``
    and Parquet store images) or a PIL image. EXIF orientation is applied, as cameras record it. Images over
    :data:`MAX_IMAGE_PIXELS` are refused from their header, before decoding.

    Records keep URLs as strings; training encodes every record once before the first step, so each URL is
    fetched once per run. Any failure is a :class:`DataError` saying what was wrong with which image.
    """
    import io

    from PIL import ImageOps, UnidentifiedImageError

    if hasattr(ref, "convert"):
        check_image_size(ref.size, "(PIL image)")
        return ImageOps.exif_transpose(ref).convert("RGB")
    if isinstance(ref, str) and ref.startswith(("http://", "https://")):
        where, source = ref, io.BytesIO(_fetch(ref))
    elif (stored := stored_image_source(ref, root)) is not None:
        where, source = stored
    else:
        raise DataError(
            "an image must be a path, an http(s) URL, a {'bytes', 'path'} dict or a PIL image, "
            f"got {type(ref).__name__}"
        )
    try:
        # Multi-frame and tiled formats (GIF, ICO, TIFF) can hit PIL's bomb check again while decoding.
        with open_image(source, where) as img, _pil_bomb_guard(where, warnings_action="error"):
            return ImageOps.exif_transpose(img).convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image {where} not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"image {where} is corrupt or not an image ({exc})") from None


def open_image(source: Any, where: Any) -> Any:
    """``PIL.Image.open(source)`` (lazy: only the header is read) that refuses images over
    :data:`MAX_IMAGE_PIXELS` with a :class:`DataError` naming ``where``; use it as a context manager."""
    from PIL import Image

    # PIL warns from ~89M pixels: such images are over our lower limit and reported below with their size.
    with _pil_bomb_guard(where, warnings_action="ignore"):
        img = Image.open(source)
    try:
        check_image_size(img.size, where)
    except DataError:
        img.close()
        raise
    return img


@contextlib.contextmanager
def _pil_bomb_guard(where: Any, warnings_action: Literal["ignore", "error"]) -> Iterator[None]:
    """PIL's decompression-bomb error (and its warning, with ``"error"``) as our one-line :class:`DataError`."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter(warnings_action, Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            # PIL refuses before the size can be read; its message gives the pixel count.
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise _oversized(where, f"{int(found[1]):,}" if found else f"more than {MAX_IMAGE_PIXELS:,}") from None


def check_image_size(size: tuple[int, int], where: Any) -> None:
    """Raise a :class:`DataError` when an image of ``size`` (width, height) is over :data:`MAX_IMAGE_PIXELS`."""
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise _oversized(where, f"{width}x{height}")


def _oversized(where: Any, size: str) -> DataError:
    return DataError(
        f"image {where} is {size} pixels, over the {MAX_IMAGE_PIXELS:,} pixel limit; resize it (e.g. to at most "
        "4096 pixels on its longest side: the model's image processor shrinks it further anyway) or remove it"
    )


def stored_image_source(ref: Any, root: Path | None) -> tuple[Any, Any] | None:
    """``(name for messages, what PIL's Image.open reads)`` for an image stored locally — a path (relative to
    ``root``, see :func:`local_image_path`) or a ``{"bytes", "path"}`` dict — else None (URLs, PIL images,
    anything else)."""
    import io

    if isinstance(ref, dict) and (ref.get("bytes") is not None or ref.get("path")):
        if ref.get("bytes") is not None:
            return ref.get("path") or "(image bytes)", io.BytesIO(ref["bytes"])
        return ref["path"], local_image_path(ref["path"], root)
    if isinstance(ref, str) and not ref.startswith(("http://", "https://")):
        path = local_image_path(ref, root)
        return path, path
    return None


def local_image_path(ref: str, root: Path | None) -> Path:
    """The file an image path names: absolute paths as written, relative ones under ``root`` (the data file's
    folder; with None, the current directory, unchecked). A relative path that climbs out of ``root`` with ``..`` is a
    :class:`DataError`: data from elsewhere must not make us read arbitrary files (an absolute path is the
    user's explicit choice). The check is on the normalised path, not ``Path.resolve()``: symlinks the folder
    itself holds (e.g. the Hugging Face cache's links into ``blobs/``) stay allowed."""
    path = Path(ref)
    if path.is_absolute() or root is None:
        return path
    joined = Path(os.path.normpath(root / path))  # what is checked is what is opened
    target = os.path.abspath(joined)
    if not Path(target).is_relative_to(os.path.abspath(root)):
        raise DataError(
            f"image {ref} resolves outside the data folder {root} (to {target}); relative image paths are read "
            "from the data file's folder and may not leave it: move the image into that folder, or use an "
            "absolute path if you mean it"
        )
    return joined


def _fetch(url: str) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=IMAGE_URL_TIMEOUT_S) as response:  # follows redirects
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"image {url} could not be fetched ({exc}); check the URL or download the images") from None


@dataclass
class VisionTransform:
    """(prompt, response, images) → token ids with each image's placeholder tokens, plus pixel inputs.

    One or more images per record, placed before the prompt in order (the family's :class:`PromptLayout`). Image blocks
    are never truncated: over-long text is cut as in :func:`fit_to_budget`. ``image_tokens(pixel_inputs, k)``
    gives the number of placeholder tokens image ``k`` needs (it depends on the family and, for Qwen-VL and
    LLaVA-NeXT, on the image size).

    Args:
        tokenizer, image_processor: the backbone's tokenizer and (PIL) image processor.
        layout: the family's built-in prompt and token rules.
        image_token_id: the placeholder token id (``config.image_token_id``).
        image_tokens: callable ``(pixel_inputs, k) -> int``.
        image_root: folder that relative image paths are resolved against.
    """

    tokenizer: Any
    image_processor: Any
    layout: PromptLayout
    image_token_id: int
    image_tokens: Any
    max_length: int
    overlong: Literal["truncate", "drop"] = "truncate"
    image_root: Path | None = None
    stats: TransformStats = field(default_factory=TransformStats)
    pooling: str = "last"
    chat_template: Literal["auto", "always", "never"] = "auto"

    def __post_init__(self) -> None:
        tok = self.tokenizer
        self._bos = [tok.bos_token_id] if tok.bos_token_id is not None and self.layout.bos else []
        self._eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
        template = getattr(tok, "chat_template", None) or ""
        if self.chat_template == "always" and not template:
            raise DataError("data.chat_template=always, but the tokenizer has no chat template")
        # "auto": the checkpoint's own template when it knows about images, else the family's layout.
        self._templated = self.chat_template == "always" or (self.chat_template == "auto" and "image" in template)
        self._placeholder = tok.convert_ids_to_tokens(self.image_token_id)

    def pixel_inputs(self, images: tuple[Any, ...]) -> dict[str, Any]:
        """The image processor's tensors for a record's images (one or more, in order)."""
        if not images:
            raise DataError(
                "a vision-language reward model scores a text against its image(s); this record has none "
                "(give it a path, URL or PIL image)"
            )
        loaded = [load_image(image, self.image_root) for image in images]
        return dict(self.image_processor(images=loaded, return_tensors="pt"))

    def image_token_counts(self, pixels: dict[str, Any]) -> tuple[int, ...]:
        """Placeholder tokens of each image in ``pixels`` (from :meth:`pixel_inputs`)."""
        n = len(pixels["image_grid_thw"]) if "image_grid_thw" in pixels else len(pixels["pixel_values"])
        return tuple(int(self.image_tokens(pixels, k)) for k in range(n))

    def encode(self, prompt: Text, response: Text, images: tuple[Any, ...] = (), pixels: dict | None = None):
        """One row; pass ``pixels`` (from :meth:`pixel_inputs`) to reuse an image already processed."""
        if not isinstance(prompt, str) or not isinstance(response, str):
            raise DataError("vision records take plain-string prompts and responses")
        check_characters(prompt, response)
        pixels = pixels if pixels is not None else self.pixel_inputs(images)
        tok = self.tokenizer
        counts = self.image_token_counts(pixels)
        befores, prompt_text, response_text = self._render(prompt, response, len(counts))
        prompt_text, response_text, cut = bound_text(prompt_text, response_text, self.max_length * MAX_CHARS_PER_TOKEN)
        if cut and self.overlong == "drop":
            return None
        bos, eos = ([], []) if self._templated else (self._bos, self._eos)  # a template writes its own
        image = list(bos)  # everything up to the last image block: never truncated
        for text, count in zip(befores, counts):
            image += tok(text, add_special_tokens=False, verbose=False).input_ids + [self.image_token_id] * count
        prompt_ids = tok(prompt_text, add_special_tokens=False, verbose=False).input_ids
        response_ids = tok(response_text, add_special_tokens=False, verbose=False).input_ids
        fitted = fit_to_budget(prompt_ids, response_ids, self.max_length - len(image) - len(eos), self.overlong)
        if fitted is None:
            return None
        prompt_ids, response_ids, truncated = fitted
        ids = image + prompt_ids + response_ids + eos
        extras = dict(pixels)
        if self.layout.mm_token_types:
            extras["mm_token_type_ids"] = [1 if t == self.image_token_id else 0 for t in ids]
        return EncodedText(ids, None, truncated or cut, extras)

    def _render(self, prompt: str, response: str, n_images: int) -> tuple[list[str], str, str]:
        """``(text before each image block, text from the last image block to the response, response text)``.

        With the checkpoint's chat template: the user turn holds ``n_images`` image entries then the prompt, and
        the template's image placeholders mark where each block goes. Otherwise the family's :class:`PromptLayout`.
        """
        if not self._templated:
            lay = self.layout
            befores = [lay.before] + [lay.between_images] * (n_images - 1)
            return befores, lay.after_image + prompt + lay.before_response, lay.response_prefix + response
        user = [{"role": "user", "content": [*[{"type": "image"}] * n_images, {"type": "text", "text": prompt}]}]
        answer = [{"role": "assistant", "content": [{"type": "text", "text": response}]}]
        from jinja2 import TemplateError

        try:
            head = self.tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
            full = self.tokenizer.apply_chat_template(user + answer, tokenize=False)
        except TemplateError as exc:
            raise DataError(
                f"the tokenizer's chat template failed on an image + text turn ({exc}); set data.chat_template=never "
                f"to use the built-in {self.layout.family} layout"
            ) from None
        parts = head.split(self._placeholder)
        if not full.startswith(head) or len(parts) != n_images + 1:
            raise DataError(
                f"the tokenizer's chat template does not render {n_images} image placeholder(s) "
                f"({self._placeholder!r}) in a prompt that prefixes the conversation; set data.chat_template=never "
                f"to use the built-in {self.layout.family} layout"
            )
        return parts[:-1], parts[-1], full[len(head) :]

    def encode_pair(self, pair: PreferencePair) -> dict[str, Any] | None:
        """Pair features; the images are processed once and sent once (the backbone encodes them once)."""
        self.stats.seen += 1
        pixels = self._record_pixels(pair.images, pair.id)
        chosen = self.encode(pair.prompt, pair.chosen, pixels=pixels)
        rejected = self.encode(pair.prompt, pair.rejected, pixels=pixels)
        feature = pair_features(self.stats, pair, chosen, rejected)
        if feature is not None:
            # Sent once per pair; rows can swap images only with images needing as many placeholder tokens.
            feature.update(pixels, image_tokens=self.image_token_counts(pixels))
        return feature

    def encode_group(self, group: RankedGroup) -> dict[str, Any] | None:
        """Group features; the K responses share the record's images, processed once and sent once."""
        self.stats.seen += 1
        pixels = self._record_pixels(group.images, group.id)
        feature = group_features(
            self.stats, group, [self.encode(group.prompt, r, pixels=pixels) for r in group.responses]
        )
        if feature is not None:
            feature.update(pixels, image_tokens=self.image_token_counts(pixels))
        return feature

    def _record_pixels(self, images: tuple[Any, ...], record_id: str | None) -> dict[str, Any]:
        try:
            return self.pixel_inputs(images)
        except DataError as exc:
            raise DataError(f"record {record_id or '(no id)'}: {exc}") from None
