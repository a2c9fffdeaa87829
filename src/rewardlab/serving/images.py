"""Images sent in requests → what the model transform loads, without trusting the request.

- ``data:image/...;base64,...``, bare base64 or ``{"base64": ...}``: decoded to ``{"bytes": ...}`` (at most
  ``max_image_bytes``). Equal images share one key (a hash of the bytes), so a batch encodes them once.
- ``http(s)://...`` or ``{"url": ...}``: fetched by the server, only with ``allow_urls`` (off by default: a
  server that fetches any URL it is sent can be made to reach internal services), bounded in time and size.
- ``{"path": ...}``: a file under ``image_root`` only (off by default). The path is resolved, symlinks included,
  and must stay inside the root: no ``../``, no absolute path elsewhere, no link pointing out.

Whether the bytes are an image at all (and not a decompression bomb) is checked where every image is opened,
in the transform; the server turns that error into a 422 naming the item.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from rewardlab.serving.errors import RequestError


def resolve_images(refs: list[Any], where: str, *, allow_urls: bool, image_root: str | None, max_bytes: int,
                   url_timeout_s: float) -> tuple[Any, ...]:  # fmt: skip
    """The loadable form of each image of one item; ``where`` is the item's field name for errors."""
    out = []
    for k, ref in enumerate(refs):
        field = f"{where}[{k}]"
        kind, value = _kind(ref, field)
        if kind == "base64":
            out.append({"bytes": decode_base64(value, field, max_bytes), "path": field})
        elif kind == "url":
            if not allow_urls:
                raise RequestError(
                    422, "image URLs are not accepted by this server; send the image as base64 (or start the server "
                    "with allow_urls=true)", field=field)  # fmt: skip
            out.append({"bytes": fetch(value, field, max_bytes, url_timeout_s), "path": field})
        else:
            out.append(local_path(value, field, image_root, max_bytes))
    return tuple(out)


def _kind(ref: Any, field: str) -> tuple[str, str]:
    if isinstance(ref, str):
        if ref.startswith(("http://", "https://")):
            return "url", ref
        return "base64", ref
    given = [(k, v) for k, v in (("base64", ref.base64), ("url", ref.url), ("path", ref.path)) if v is not None]
    if len(given) != 1:
        raise RequestError(422, "an image object names exactly one of base64, url or path", field=field)
    return given[0]


def decode_base64(value: str, field: str, max_bytes: int) -> bytes:
    data = value
    if data.startswith("data:"):
        header, sep, data = data.partition(",")
        if not sep or not header.endswith(";base64"):
            raise RequestError(422, "a data URI must look like data:image/png;base64,<data>", field=field)
    if len(data) * 3 // 4 > max_bytes + 3:
        raise RequestError(413, f"image is over the {max_bytes:,} byte limit", field=field, type="too_large")
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            422, "not valid base64 (send a data:image/...;base64, URI, bare base64, an http(s) URL, or "
            '{"path": ...} for a file under the image root)', field=field) from None  # fmt: skip
    if not raw:
        raise RequestError(422, "empty image", field=field)
    return raw


def fetch(url: str, field: str, max_bytes: int, timeout_s: float) -> bytes:
    """GET ``url`` (redirects followed, at most 5), refusing bodies over ``max_bytes`` while they stream."""
    import httpx

    try:
        with (
            httpx.Client(timeout=timeout_s, follow_redirects=True, max_redirects=5) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise RequestError(422, f"fetching the image URL gave HTTP {response.status_code}", field=field)
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise RequestError(413, f"image at the URL is over the {max_bytes:,} byte limit", field=field,
                                       type="too_large")  # fmt: skip
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise RequestError(422, f"the image URL could not be fetched ({type(exc).__name__})", field=field) from None


def local_path(value: str, field: str, image_root: str | None, max_bytes: int) -> str:
    if image_root is None:
        raise RequestError(
            422, "this server reads no local image files; send the image as base64 (or start the server with "
            "image_root=FOLDER)", field=field)  # fmt: skip
    root = Path(image_root).resolve()
    target = (root / value).resolve()  # symlinks followed: a link inside the root that points out is refused
    if not target.is_relative_to(root):
        raise RequestError(422, "image path is outside the server's image root", field=field)
    if not target.is_file():
        raise RequestError(422, "no such image file under the server's image root", field=field)
    if target.stat().st_size > max_bytes:
        raise RequestError(413, f"image is over the {max_bytes:,} byte limit", field=field, type="too_large")
    return str(target)
