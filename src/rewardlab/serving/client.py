"""Client of ``rewardlab serve`` (and of any OpenRLHF-style ``/get_reward`` server): many samples per request,
spread over several servers, failed shares retried elsewhere. Needs only ``httpx``.

    from rewardlab.serving.client import RewardClient

    with RewardClient(["http://gpu0:8000", "http://gpu1:8000"]) as client:
        scores = client.score(prompts, responses)          # one score per response, in order

How a call is served:

- The samples are split over the live servers in proportion to their ``weights`` (equal by default), using at
  most one server per sample — never an empty slice — and each slice is cut into requests of at most
  ``max_items_per_request``. The requests run concurrently.
- A request that fails for a reason another try may fix (connection refused or reset, timeout, HTTP 5xx, 503 or
  429 with ``Retry-After``) is retried with exponential backoff, first on its own server (``retries`` times; a
  refused connection moves on at once), then on the other servers. A server that failed is skipped by later calls
  for ``cooldown_s``. Only when every server has failed does the call raise :class:`RemoteScoringError`.
- A 4xx answer (bad input, wrong key) would fail anywhere: it raises :class:`RequestRejected` at once, with the
  server's message and field.

``protocol="openrlhf"`` (or a URL ending in ``/get_reward``) talks OpenRLHF's contract: each sample is sent as
``query = prompt + response`` with ``prompts = [prompt]``, and the ``rewards`` field is returned.

A model with attribute heads: :meth:`RewardClient.score_with_attributes` gives each response's attributes, and
``score(..., weights={"reward": 1, "verbosity": -0.5})`` the weighted sums the server computes (``combined``;
rewardlab protocol only: OpenRLHF's contract carries no weights).

:class:`AsyncRewardClient` is the same for asyncio code.
"""

from __future__ import annotations

import asyncio
import base64
import io
import math
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

Protocol = Literal["auto", "rewardlab", "openrlhf"]
TRANSIENT_STATUS = (408, 429, 500, 502, 503, 504)
Scored = tuple[list[float], list[float] | None]  # scores, and an ensemble's uncertainties
WithAttributes = tuple[list[float], list[dict[str, float]]]  # scores, and each sample's attributes
ATTRIBUTE_LOG = "rewardlab_attribute_"  # /get_reward's extra_logs key prefix of an attribute's values


@dataclass
class Answer:
    """What the servers sent for some samples, in order: ``scores``, and where the server's model has them an
    ensemble's ``uncertainties``, the ``attributes`` of each sample (``{name: value}``), and with weights the
    ``combined`` rewards."""

    scores: list[float]
    uncertainties: list[float] | None = None
    attributes: list[dict[str, float]] | None = None
    combined: list[float] | None = None


class RemoteScoringError(RuntimeError):
    """No server could score a share of the samples (all failed or unreachable)."""


class RequestRejected(ValueError):
    """A server refused the request as invalid (HTTP 4xx): another server would too."""

    def __init__(self, status: int, message: str, field: str | None = None, url: str = ""):
        where = f" (field {field})" if field else ""
        super().__init__(f"{url}: HTTP {status}: {message}{where}")
        self.status, self.message, self.field, self.url = status, message, field, url


class _Transient(Exception):
    def __init__(self, reason: str, retry_after: float | None = None, refused: bool = False):
        super().__init__(reason)
        self.retry_after, self.refused = retry_after, refused


@dataclass
class Endpoint:
    base: str
    protocol: Literal["rewardlab", "openrlhf"]
    weight: float = 1.0
    down_until: float = 0.0

    @property
    def path(self) -> str:
        return "/get_reward" if self.protocol == "openrlhf" else "/v1/score"

    def alive(self, now: float) -> bool:
        return now >= self.down_until


def parse_endpoint(url: str, protocol: Protocol, weight: float) -> Endpoint:
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"{url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)")
    for suffix, proto in (("/get_reward", "openrlhf"), ("/v1/score", "rewardlab")):
        if base.endswith(suffix):
            base = base.removesuffix(suffix)
            protocol = proto if protocol == "auto" else protocol
    return Endpoint(base, "rewardlab" if protocol == "auto" else protocol, weight)  # type: ignore[arg-type]


def split_proportionally(n: int, weights: Sequence[float]) -> list[int]:
    """``n`` samples over servers of ``weights`` by largest remainder (ties to the heavier, then the earlier
    server). A share of 0 sends nothing: no server ever gets an empty request."""
    if not weights:
        return []
    total = sum(weights)
    exact = [n * w / total for w in weights]
    shares = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), -weights[i], i))
    for i in by_remainder[: n - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass
class Chunk:
    start: int
    end: int
    endpoint: int  # index of the server it is sent to first
    tried: set[int] = field(default_factory=set)


class _Core:
    """What both clients share: endpoints, planning, payloads, answers, failover order."""

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        api_key: str | None = None,
        protocol: Protocol = "auto",
        weights: Sequence[float] | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        max_backoff_s: float = 5.0,
        max_items_per_request: int = 256,
        cooldown_s: float = 30.0,
        normalize: bool | None = None,
    ):
        urls = [urls] if isinstance(urls, str) else list(urls)
        if not urls:
            raise ValueError("give at least one server URL")
        weights = list(weights) if weights is not None else [1.0] * len(urls)
        if len(weights) != len(urls) or any(w <= 0 for w in weights):
            raise ValueError("weights: one positive number per URL")
        self.endpoints = [parse_endpoint(u, protocol, w) for u, w in zip(urls, weights)]
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout_s, self.retries, self.backoff_s, self.max_backoff_s = timeout_s, retries, backoff_s, max_backoff_s
        self.max_items, self.cooldown_s, self.normalize = max_items_per_request, cooldown_s, normalize
        self._lock = threading.Lock()

    def plan(self, n: int) -> list[Chunk]:
        now = time.monotonic()
        live = [i for i, e in enumerate(self.endpoints) if e.alive(now)] or list(range(len(self.endpoints)))
        shares = split_proportionally(n, [self.endpoints[i].weight for i in live])
        chunks, start = [], 0
        for i, share in zip(live, shares):
            for lo in range(start, start + share, self.max_items):
                chunks.append(Chunk(lo, min(lo + self.max_items, start + share), i))
            start += share
        return chunks

    def next_endpoint(self, chunk: Chunk) -> int | None:
        """The server to try ``chunk`` on next: its own first, then live untried ones, then any untried one."""
        if chunk.endpoint not in chunk.tried:
            return chunk.endpoint
        now = time.monotonic()
        untried = [i for i in range(len(self.endpoints)) if i not in chunk.tried]
        live = [i for i in untried if self.endpoints[i].alive(now)]
        return (live or untried or [None])[0]

    def mark_down(self, i: int) -> None:
        with self._lock:
            self.endpoints[i].down_until = time.monotonic() + self.cooldown_s

    def payload(self, e: Endpoint, prompts: list[Any], responses: list[Any], images: list[Any] | None,
                normalize: bool | None, weights: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
        normalize = self.normalize if normalize is None else normalize
        if e.protocol == "openrlhf":
            if images and any(images):
                raise ValueError("OpenRLHF's /get_reward carries no images; use protocol=rewardlab for vision models")
            if weights is not None:
                raise ValueError("OpenRLHF's /get_reward carries no attribute weights; use protocol=rewardlab "
                                 "(the server's base URL)")  # fmt: skip
            texts = [(_plain(p), _plain(r)) for p, r in zip(prompts, responses)]
            body: dict[str, Any] = {"query": [p + r for p, r in texts], "prompts": [p for p, _ in texts]}
        else:
            items = [{"prompt": p, "response": r} for p, r in zip(prompts, responses)]
            if images:
                for item, imgs in zip(items, images):
                    if imgs:
                        item["images"] = [encode_image(im) for im in imgs]
            body = {"items": items}
        if normalize is not None:
            body["normalize"] = normalize
        if weights is not None:
            body["weights"] = weights
        return body

    def answer(self, e: Endpoint, response: httpx.Response, n: int) -> Answer:
        """The scores; the uncertainties (an ensemble's members' standard deviation: ``/v1/score``'s
        ``uncertainties``, ``/get_reward``'s ``extra_logs.rewardlab_uncertainty``) are None for a single head, the
        attributes (``attributes``, or ``extra_logs.rewardlab_attribute_<name>``) None without attribute heads."""
        if response.status_code in TRANSIENT_STATUS:
            retry_after = response.headers.get("Retry-After")
            delay = float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None
            raise _Transient(f"HTTP {response.status_code}", retry_after=delay)
        if response.status_code >= 400:
            message, field_name = response.text[:500], None
            try:
                error = response.json().get("error", {})
                message, field_name = error.get("message", message), error.get("field")
            except (ValueError, AttributeError):
                pass
            raise RequestRejected(response.status_code, message, field_name, e.base + e.path)
        body = response.json()
        combined = None
        if e.protocol == "openrlhf":
            logs = body.get("extra_logs") or {}
            scores, spread = body.get("rewards"), logs.get("rewardlab_uncertainty")
            names = [k.removeprefix(ATTRIBUTE_LOG) for k in logs if k.startswith(ATTRIBUTE_LOG)]
            columns = [logs[ATTRIBUTE_LOG + name] for name in names]
            ok = names and all(isinstance(c, list) and len(c) == n for c in columns)
            attributes = [dict(zip(names, values)) for values in zip(*columns)] if ok else None
        else:
            scores, spread = body.get("scores"), body.get("uncertainties")
            attributes, combined = body.get("attributes"), body.get("combined")
        if not isinstance(scores, list) or len(scores) != n:
            raise _Transient(f"malformed answer ({n} scores expected)")
        return Answer([float(s) for s in scores], _floats(spread, n), _attributes(attributes, n), _floats(combined, n))

    @staticmethod
    def joined(parts: list[Answer]) -> Answer:
        """The chunks' answers in order; uncertainties, attributes and combined rewards only where every server
        sent them."""

        def column(name: str) -> list[Any] | None:
            values = [getattr(p, name) for p in parts]
            return None if any(v is None for v in values) else [x for v in values for x in v]

        return Answer([s for p in parts for s in p.scores], column("uncertainties"), column("attributes"),
                      column("combined"))  # fmt: skip

    def delay(self, attempt: int, error: _Transient) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_backoff_s)
        return min(self.backoff_s * 2**attempt, self.max_backoff_s) * (0.5 + random.random() / 2)

    def failed(self, chunk: Chunk, n: int, errors: list[str]) -> RemoteScoringError:
        return RemoteScoringError(
            f"samples {chunk.start}..{chunk.end - 1} of {n}: every server failed ({'; '.join(errors)})"
        )


class RewardClient(_Core):
    """Synchronous client (see the module docstring). Thread-safe; use it as a context manager or call
    :meth:`close`."""

    def __init__(self, urls: str | Sequence[str], **options: Any):
        super().__init__(urls, **options)
        self._http = httpx.Client(timeout=self.timeout_s, headers=self.headers)
        self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rewardlab-client")

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.close()

    def score(self, prompts: Sequence[Any] | str, responses: Sequence[Any], images: Sequence[Any] | None = None, *,
              normalize: bool | None = None, weights: dict[str, float] | None = None) -> list[float]:  # fmt: skip
        """One score per response, in order. ``prompts``: one prompt for all or one per response; ``images``: one
        tuple of images (paths, URLs, bytes, PIL images) per response, for vision models. ``weights`` (a model with
        attribute heads): the combined rewards ``Σ weight · value`` instead, ``reward`` naming the score."""
        return combined_or_scores(self.answer_all(prompts, responses, images, normalize, weights), weights)

    def score_with_attributes(self, prompts: Sequence[Any] | str, responses: Sequence[Any],
                              images: Sequence[Any] | None = None, *,
                              normalize: bool | None = None) -> WithAttributes:  # fmt: skip
        """:meth:`score`, and each response's attributes (``{name: value}``, 0–1 scale) as
        :meth:`~rewardlab.models.scorer.Scorer.score_with_attributes` gives them: empty dicts when the server's
        model has no attribute heads."""
        out = self.answer_all(prompts, responses, images, normalize, None)
        return out.scores, out.attributes if out.attributes is not None else [{} for _ in out.scores]

    def answer_all(self, prompts: Sequence[Any] | str, responses: Sequence[Any], images: Sequence[Any] | None,
                   normalize: bool | None, weights: dict[str, float] | None) -> Answer:  # fmt: skip
        """Everything the servers sent for these samples, in order (one :class:`Answer`)."""
        prompts, responses = _aligned(prompts, responses)
        chunks = self.plan(len(responses))
        run = lambda c: self._run(c, prompts, responses, images, normalize, weights)  # noqa: E731
        return self.joined(list(self._pool.map(run, chunks)))

    def score_with_uncertainty(
        self,
        prompts: Sequence[Any] | str,
        responses: Sequence[Any],
        images: Sequence[Any] | None = None,
        *,
        normalize: bool | None = None,
    ) -> Scored:
        """:meth:`score`, and an ensemble server's uncertainty of each score (its members' standard deviation,
        scaled as the scores are); None when the server's model has one head."""  # fmt: skip
        out = self.answer_all(prompts, responses, images, normalize, None)
        return out.scores, out.uncertainties

    def _run(self, chunk: Chunk, prompts: list, responses: list, images: Any, normalize: bool | None,
             weights: dict[str, float] | None) -> Answer:  # fmt: skip
        sl = slice(chunk.start, chunk.end)
        errors: list[str] = []
        while (i := self.next_endpoint(chunk)) is not None:
            chunk.tried.add(i)
            e = self.endpoints[i]
            body = self.payload(e, prompts[sl], responses[sl], images[sl] if images else None, normalize, weights)
            for attempt in range(self.retries + 1):
                try:
                    return self.answer(e, self._http.post(e.base + e.path, json=body), chunk.end - chunk.start)
                except (httpx.HTTPError, _Transient) as exc:
                    error = _transient(exc)
                    errors.append(f"{e.base}: {error}")
                    if error.refused or attempt == self.retries:
                        break
                    time.sleep(self.delay(attempt, error))
            self.mark_down(i)
        raise self.failed(chunk, len(responses), errors)

    def compare(self, prompt: Any, a: Any, b: Any, images: Sequence[Any] = (), *,
                weights: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
        """``{"better", "p_a", "score_a", "score_b"}`` from one server (rewardlab protocol); a model with attribute
        heads adds ``attributes_a``/``attributes_b``, and ``weights`` compares ``combined_a``/``combined_b``."""
        body = {"prompt": prompt, "a": a, "b": b, "images": [encode_image(im) for im in images]}
        return self._single("/v1/compare", body | ({"weights": weights} if weights is not None else {}))

    def rank(self, prompt: Any, responses: Sequence[Any], images: Sequence[Any] = (), *,
             weights: dict[str, float] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """``[{"index", "score"}, ...]`` best first, from one server (rewardlab protocol); with ``weights``, by the
        ``combined`` reward each item then carries."""
        body = {"prompt": prompt, "responses": list(responses), "images": [encode_image(im) for im in images]}
        return self._single("/v1/rank", body | ({"weights": weights} if weights is not None else {}))["ranking"]

    def _single(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for e in sorted(self.endpoints, key=lambda e: not e.alive(time.monotonic())):
            try:
                response = self._http.post(e.base + path, json=body)
                if response.status_code not in TRANSIENT_STATUS:
                    if response.status_code >= 400:
                        self.answer(e, response, 0)  # raises RequestRejected with the server's message
                    return response.json()
                errors.append(f"{e.base}: HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"{e.base}: {type(exc).__name__}")
        raise RemoteScoringError(f"{path}: every server failed ({'; '.join(errors)})")


class AsyncRewardClient(_Core):
    """The asyncio twin of :class:`RewardClient` (``await client.score(...)``)."""

    def __init__(self, urls: str | Sequence[str], **options: Any):
        super().__init__(urls, **options)
        self._http = httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers)

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def score(self, prompts: Sequence[Any] | str, responses: Sequence[Any], images: Sequence[Any] | None = None,
                    *, normalize: bool | None = None,
                    weights: dict[str, float] | None = None) -> list[float]:  # fmt: skip
        return combined_or_scores(await self.answer_all(prompts, responses, images, normalize, weights), weights)

    async def score_with_attributes(self, prompts: Sequence[Any] | str, responses: Sequence[Any],
                                    images: Sequence[Any] | None = None, *,
                                    normalize: bool | None = None) -> WithAttributes:  # fmt: skip
        out = await self.answer_all(prompts, responses, images, normalize, None)
        return out.scores, out.attributes if out.attributes is not None else [{} for _ in out.scores]

    async def answer_all(self, prompts: Sequence[Any] | str, responses: Sequence[Any], images: Sequence[Any] | None,
                         normalize: bool | None, weights: dict[str, float] | None) -> Answer:  # fmt: skip
        prompts, responses = _aligned(prompts, responses)
        chunks = self.plan(len(responses))
        return self.joined(await asyncio.gather(*(self._run(c, prompts, responses, images, normalize, weights)
                                                  for c in chunks)))  # fmt: skip

    async def score_with_uncertainty(
        self,
        prompts: Sequence[Any] | str,
        responses: Sequence[Any],
        images: Sequence[Any] | None = None,
        *,
        normalize: bool | None = None,
    ) -> Scored:
        out = await self.answer_all(prompts, responses, images, normalize, None)
        return out.scores, out.uncertainties

    async def _run(self, chunk: Chunk, prompts: list, responses: list, images: Any, normalize: bool | None,
                   weights: dict[str, float] | None) -> Answer:  # fmt: skip
        sl = slice(chunk.start, chunk.end)
        errors: list[str] = []
        while (i := self.next_endpoint(chunk)) is not None:
            chunk.tried.add(i)
            e = self.endpoints[i]
            body = self.payload(e, prompts[sl], responses[sl], images[sl] if images else None, normalize, weights)
            for attempt in range(self.retries + 1):
                try:
                    response = await self._http.post(e.base + e.path, json=body)
                    return self.answer(e, response, chunk.end - chunk.start)
                except (httpx.HTTPError, _Transient) as exc:
                    error = _transient(exc)
                    errors.append(f"{e.base}: {error}")
                    if error.refused or attempt == self.retries:
                        break
                    await asyncio.sleep(self.delay(attempt, error))
            self.mark_down(i)
        raise self.failed(chunk, len(responses), errors)


def combined_or_scores(answer: Answer, weights: dict[str, float] | None) -> list[float]:
    """The answer's scores, or with ``weights`` its combined rewards (which a server that weighed them sent)."""
    if weights is None:
        return answer.scores
    if answer.combined is None:
        raise RemoteScoringError("weights were sent, but a server answered without `combined` rewards (is it an "
                                 "older rewardlab serve?)")  # fmt: skip
    return answer.combined


def _floats(values: Any, n: int) -> list[float] | None:
    return [float(v) for v in values] if isinstance(values, list) and len(values) == n else None


def _attributes(values: Any, n: int) -> list[dict[str, float]] | None:
    if not isinstance(values, list) or len(values) != n or not all(isinstance(v, dict) for v in values):
        return None
    return [{k: float(x) for k, x in v.items()} for v in values]


def _transient(exc: Exception) -> _Transient:
    if isinstance(exc, _Transient):
        return exc
    refused = isinstance(exc, httpx.ConnectError)
    return _Transient(type(exc).__name__, refused=refused)


def _aligned(prompts: Sequence[Any] | str, responses: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    responses = list(responses)
    if isinstance(prompts, str) or (prompts and isinstance(prompts[0], dict)):
        prompts = [prompts] * len(responses)
    prompts = list(prompts)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    return prompts, responses


def _plain(text: Any) -> str:
    if isinstance(text, str):
        return text
    raise ValueError("OpenRLHF's /get_reward takes plain text; render chat messages first, or use protocol=rewardlab")


def encode_image(image: Any) -> str:
    """An image as the server takes it: URLs and data URIs as they are, anything else (a local path, bytes, a
    ``{"bytes": ...}`` dict, a PIL image) as a base64 data URI — the server needs no access to this machine's
    files."""
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        return image
    if isinstance(image, dict) and image.get("bytes") is not None:
        image = image["bytes"]
    elif isinstance(image, dict) and image.get("path"):
        image = image["path"]
    if isinstance(image, (str, Path)):
        data = Path(image).read_bytes()
    elif isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif hasattr(image, "save"):  # PIL
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        raise ValueError(f"cannot send an image of type {type(image).__name__}; give a path, URL, bytes or PIL image")
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode("ascii")
