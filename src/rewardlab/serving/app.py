"""The HTTP scoring server: ``create_app(scorer, cfg)`` → a FastAPI app (run it with uvicorn; ``rewardlab serve``
does).

Every route scores through the one :class:`~rewardlab.models.scorer.Scorer` path (DESIGN.md §6), so a served
score is the number ``rewardlab score`` and ``rewardlab eval`` give. Requests are encoded in the thread pool,
then coalesced into model batches by :class:`~rewardlab.serving.batcher.Batcher`, whose one thread owns the model.

Errors are JSON ``{"error": {"type", "message", "field"}}`` with a 4xx status for anything the caller can fix
(422 bad fields or JSON, 413 too large, 401 missing or wrong key, 503 queue full with ``Retry-After``); a 500
says only that the server failed (the traceback goes to the server log). Request bodies never reach the log.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import logging
import os
import statistics
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from rewardlab.config.schema import ServeConfig
from rewardlab.errors import ConfigError, DataError
from rewardlab.models.scorer import Scorer, best_first, check_weights, combine_attributes, compare_rows
from rewardlab.serving.batcher import Batcher, QueueFull, ScoringFailed
from rewardlab.serving.errors import RequestError
from rewardlab.serving.images import resolve_images
from rewardlab.serving.metrics import ServerMetrics
from rewardlab.serving.schemas import (
    CompareRequest,
    CompareResponse,
    ErrorBody,
    GetRewardRequest,
    GetRewardResponse,
    Health,
    ModelInfo,
    RankRequest,
    RankResponse,
    ScoreRequest,
    ScoreResponse,
)

logger = logging.getLogger(__name__)

API_VERSION = "v1"
OPEN_PATHS = ("/health", "/docs", "/openapi.json", "/docs/oauth2-redirect", "/redoc")
RETRY_AFTER_S = 1
INLINE_ENCODE_ITEMS = 8  # requests of at most this many text items are tokenized on the event loop
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (401, 413, 422, 503)
}  # documented in the OpenAPI schema


def api_key_from_env(cfg: ServeConfig) -> str | None:
    """The key named by ``cfg.api_key_env``; a server told to require a key refuses to start without one."""
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env, "")
    if not key:
        raise ConfigError(
            f"api_key_env={cfg.api_key_env}, but the environment variable {cfg.api_key_env} is empty or unset; "
            f"export {cfg.api_key_env}=<key> (the server will not start open when told to require a key)"
        )
    return key


@dataclass(frozen=True)
class Scored:
    """One request's scores, in order: ``uncertainties`` an ensemble's (scaled as the scores are), ``attributes``
    a model with attribute heads' ``{name: value}`` per item; None for other models."""

    scores: list[float]
    uncertainties: list[float] | None = None
    attributes: list[dict[str, float]] | None = None

    def combined(self, weights: dict[str, float] | None) -> list[float] | None:
        """Each item's :func:`~rewardlab.models.scorer.combine_attributes` (checked weights); None without them."""
        if weights is None or self.attributes is None:
            return None
        return [combine_attributes(s, a, weights) for s, a in zip(self.scores, self.attributes)]


class Limits:
    """A server's per-request limits (``cfg``): items per request and characters per text."""

    cfg: ServeConfig
    suffixes: list[str]  # what a query's response may end with that is not text (special tokens, strip_texts)

    def check_count(self, n: int, field: str) -> None:
        if n > self.cfg.max_items_per_request:
            raise RequestError(
                413, f"{n} items, over this server's limit of {self.cfg.max_items_per_request} per request; split "
                "the request (rewardlab's client does)", field=field, type="too_large")  # fmt: skip

    def text(self, value: Any, field: str, *, allow_empty: bool = False) -> Any:
        """A prompt or response as the Scorer takes it (a string or message dicts), within the length limit."""
        if isinstance(value, str):
            chars, out = len(value), value
        else:
            out = [m.model_dump(exclude_none=True) for m in value]
            chars = sum(len(p.get("text", "")) if isinstance(p, dict) else 0 for m in out for p in _parts(m))
        if chars > self.cfg.max_text_chars:
            raise RequestError(
                422, f"{chars:,} characters, over this server's limit of {self.cfg.max_text_chars:,}", field=field
            )
        if not allow_empty and not out:
            raise RequestError(422, "empty; a response needs some text", field=field)
        return out

    def strip_special(self, text: str) -> str:
        """``text`` without the special tokens (and ``strip_texts``) it ends with, and the whitespace between them."""
        while True:
            stripped = text.rstrip()
            token = next((t for t in self.suffixes if stripped.endswith(t)), None)
            if token is None:
                return text
            text = stripped[: -len(token)]


class Service(Limits):
    """What the routes share: the scorer, its batcher, the limits, the metrics."""

    def __init__(self, scorer: Scorer, cfg: ServeConfig, name: str):
        self.scorer, self.cfg, self.name = scorer, cfg, name
        self.metrics = ServerMetrics(queue_depth=lambda: self.batcher.pending)
        self.batcher = Batcher(
            # A coalesced batch is one forward pass where it fits the server's limits (not the scorer's own).
            # Each item comes back as [score] (or an ensemble's [mean, member 1, ..., member K]).
            functools.partial(
                scorer.score_items, batch_size=cfg.batch_size, max_batch_tokens=cfg.max_batch_tokens, members=True
            ),  # fmt: skip
            max_batch_size=cfg.batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
            max_wait_ms=cfg.max_wait_ms,
            max_queue_items=cfg.max_queue_items,
            on_batch=self.metrics.observe_batch,
        )
        self.suffixes = strip_suffixes(scorer.tokenizer, cfg)

    def normalized(self, flag: bool | None) -> bool:
        normalize = self.cfg.normalize if flag is None else flag
        if normalize and not self.scorer.normalization:
            raise RequestError(
                422, "this model has no saved normalization statistics (train it with an eval set); "
                "send normalize=false", field="normalize")  # fmt: skip
        return normalize

    def weights(self, weights: dict[str, float] | None) -> dict[str, float] | None:
        """A request's ``weights``, checked against the model's attribute heads before anything is scored."""
        if weights is not None:
            try:
                check_weights(self.scorer.attribute_names, weights)
            except ValueError as exc:
                raise RequestError(422, str(exc), field="weights") from None
        return weights

    async def score(self, prompts: list[Any], responses: list[Any], images: list[list[Any]], fields: list[str],
                    normalize: bool = False) -> Scored:  # fmt: skip
        """Scores of one request's items, in order, with (an ensemble) their uncertainties — the members' standard
        deviations, scaled as the scores are — or (attribute heads) their attributes. ``fields`` names each item in
        errors."""
        rows = await self.rows(prompts, responses, images, fields)
        scores = [r[0] for r in rows]
        names = self.scorer.attribute_names
        attributes = [dict(zip(names, r[1:])) for r in rows] if names else None
        spread = [statistics.pstdev(r[1:]) for r in rows] if self.scorer.members > 1 else None
        if not normalize:
            return Scored(scores, spread, attributes)
        std = self.scorer.normalization.std or 1.0
        return Scored(self.scorer.normalize(scores), None if spread is None else [s / std for s in spread], attributes)

    async def rows(self, prompts: list[Any], responses: list[Any], images: list[list[Any]],
                   fields: list[str]) -> list[list[float]]:  # fmt: skip
        """Each item's ``[score]``, or an ensemble's ``[mean, member 1, ..., member K]``, in order."""
        if any(images) and not self.scorer.is_vision:
            first = next(i for i, im in enumerate(images) if im)
            raise RequestError(422, "this model scores text only; send no images", field=f"{fields[first]}.images")
        n = len(responses)
        try:
            self.batcher.reserve(n)
        except QueueFull:
            raise RequestError(503, "the server is at capacity; retry shortly", type="overloaded",
                               headers={"Retry-After": str(RETRY_AFTER_S)}) from None  # fmt: skip
        try:
            if n <= INLINE_ENCODE_ITEMS and not any(images):
                # A few texts tokenize in well under a millisecond: on the event loop, that is cheaper than the
                # hop to a worker thread and back. Images and large requests go to the thread pool.
                items = self._encode(prompts, responses, images, fields)
            else:
                items = await run_in_threadpool(self._encode, prompts, responses, images, fields)
        except BaseException:
            self.batcher.release(n)
            raise
        try:
            return await self.batcher.submit(items)
        except ScoringFailed:
            raise RequestError(500, "scoring failed on the server (see its log)", type="internal") from None

    def _encode(self, prompts: list[Any], responses: list[Any], images: list[list[Any]], fields: list[str]) -> list:
        cfg = self.cfg
        loadable = [
            resolve_images(refs, f"{field}.images", allow_urls=cfg.allow_urls, image_root=cfg.image_root,
                           max_bytes=cfg.max_image_bytes, url_timeout_s=cfg.url_timeout_s)
            for refs, field in zip(images, fields)
        ]  # fmt: skip
        try:
            return self.scorer.encode(prompts, responses, images=loadable)
        except DataError as exc:
            index = getattr(exc, "index", None)
            message = str(exc).split(": ", 1)[1] if index is not None else str(exc)
            raise RequestError(422, message, field=fields[index] if index is not None else None) from None

    def info(self) -> ModelInfo:
        import rewardlab

        model, scorer, cfg = self.scorer.model, self.scorer, self.cfg
        param = next(model.parameters())
        transform = scorer.transform
        fmt = getattr(transform, "input_format", None)  # text models; a vision model's layout is its family's
        input_format = (
            {"layout": "vision", "model_type": transform.layout.family}
            if fmt is None
            else {"version": fmt.version, "layout": fmt.layout, "append_eos": fmt.append_eos, "recipe": fmt.recipe()}
        )
        return ModelInfo(
            name=self.name,
            modality="vision" if scorer.is_vision else "text",
            model_type=str(getattr(model.config, "model_type", "unknown")),
            pooling=model.pooling,
            max_length=transform.max_length,
            input_format=input_format,
            normalization=scorer.normalization.model_dump() if scorer.normalization else None,
            device=str(param.device),
            dtype=str(param.dtype).removeprefix("torch."),
            rewardlab_version=rewardlab.__version__,
            members=scorer.members,
            attributes=scorer.bundle.meta.attributes,
            limits={
                "max_items_per_request": cfg.max_items_per_request,
                "max_text_chars": cfg.max_text_chars,
                "max_body_bytes": cfg.max_body_bytes,
                "max_batch_size": cfg.batch_size,
                "allow_urls": cfg.allow_urls,
                "image_root": cfg.image_root is not None,
            },
        )


def _parts(message: dict[str, Any]) -> list[Any]:
    content = message.get("content")
    return [{"text": content}] if isinstance(content, str) else list(content or [])


def strip_suffixes(tokenizer: Any, cfg: ServeConfig) -> list[str]:
    """What a query's response may end with that is not text: the tokenizer's special tokens (with
    ``strip_special_tokens``) and ``strip_texts``, longest first (``None`` tokenizer: ``strip_texts`` only)."""
    suffixes = (_special_tokens(tokenizer) if cfg.strip_special_tokens else set()) | set(cfg.strip_texts)
    return sorted((t for t in suffixes if t), key=len, reverse=True)


def _special_tokens(tokenizer: Any) -> set[str]:
    tokens = set(getattr(tokenizer, "all_special_tokens", []) or [])
    return {t for t in tokens if t}


def create_app(scorer: Scorer, cfg: ServeConfig, *, name: str | None = None) -> FastAPI:
    """The server for ``scorer``; ``cfg`` sets limits, batching and security (its ``model``/``host``/``port`` are
    for ``rewardlab serve`` and unused here)."""

    api_key = api_key_from_env(cfg)
    if cfg.normalize and not scorer.normalization:
        raise ConfigError("normalize=true, but this model has no saved normalization statistics (mean/std of eval "
                          "scores); train it with an eval set, or serve it with normalize=false")  # fmt: skip
    service = Service(scorer, cfg, name or cfg.name or os.path.basename(os.path.normpath(cfg.model)) or "model")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        service.batcher.start()
        logger.info("serving %s (%s); batches of up to %d", service.name,
                    "vision" if scorer.is_vision else "text", cfg.batch_size)  # fmt: skip
        try:
            yield
        finally:
            service.batcher.stop()  # in-flight requests have finished: uvicorn drains them first

    app, known_paths = base_app(cfg, service, api_key, lifespan, title="rewardlab reward model server",
                                description="Scores responses with a reward model.")  # fmt: skip

    @app.get(f"/{API_VERSION}/model", response_model=ModelInfo, tags=["ops"])
    async def model_info() -> ModelInfo:
        return service.info()

    @app.post(
        f"/{API_VERSION}/score",
        response_model=ScoreResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        tags=["score"],
    )  # an ensemble's uncertainties; absent for a single head
    async def score(req: ScoreRequest) -> ScoreResponse:
        """Scores of `items`, in request order."""
        service.check_count(len(req.items), "items")
        normalize = service.normalized(req.normalize)
        weights = service.weights(req.weights)
        fields = [f"items[{i}]" for i in range(len(req.items))]
        prompts = [service.text(it.prompt, f"{f}.prompt", allow_empty=True) for it, f in zip(req.items, fields)]
        responses = [service.text(it.response, f"{f}.response") for it, f in zip(req.items, fields)]
        images = [list(it.images) for it in req.items]
        out = await service.score(prompts, responses, images, fields, normalize)
        return ScoreResponse(scores=out.scores, uncertainties=out.uncertainties, attributes=out.attributes,
                             combined=out.combined(weights), normalized=normalize)  # fmt: skip

    @app.post(
        f"/{API_VERSION}/compare",
        response_model=CompareResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        tags=["score"],
    )  # an ensemble's uncertainties; absent for a single head
    async def compare(req: CompareRequest) -> CompareResponse:
        """Which of two responses is better, and how sure: P(a) = σ(score_a − score_b) (with `weights`, of the
        combined rewards)."""
        weights = service.weights(req.weights)
        prompt = service.text(req.prompt, "prompt", allow_empty=True)
        a, b = service.text(req.a, "a"), service.text(req.b, "b")
        images = list(req.images)
        rows = await service.rows([prompt, prompt], [a, b], [images, images], ["a", "b"])
        c = compare_rows(rows[0], rows[1], service.scorer.attribute_names, weights)
        return CompareResponse(**dataclasses.asdict(c))

    @app.post(
        f"/{API_VERSION}/rank",
        response_model=RankResponse,
        response_model_exclude_none=True,
        responses=ERRORS,
        tags=["score"],
    )  # an ensemble's uncertainties; absent for a single head
    async def rank(req: RankRequest) -> RankResponse:
        """Best-of-N: the responses sorted by score, best first."""
        service.check_count(len(req.responses), "responses")
        normalize = service.normalized(req.normalize)
        weights = service.weights(req.weights)
        prompt = service.text(req.prompt, "prompt", allow_empty=True)
        fields = [f"responses[{i}]" for i in range(len(req.responses))]
        responses = [service.text(r, f) for r, f in zip(req.responses, fields)]
        images = list(req.images)
        out = await service.score([prompt] * len(responses), responses, [images] * len(responses), fields, normalize)
        combined = out.combined(weights)
        ranking = [{"index": i, "score": out.scores[i],
                    **({"uncertainty": out.uncertainties[i]} if out.uncertainties else {}),
                    **({"attributes": out.attributes[i]} if out.attributes else {}),
                    **({"combined": combined[i]} if combined else {})}
                   for i in best_first(combined or out.scores)]  # fmt: skip
        return RankResponse(ranking=ranking, normalized=normalize)

    @app.post("/get_reward", response_model=GetRewardResponse, responses=ERRORS, tags=["openrlhf"])
    async def get_reward(req: GetRewardRequest) -> GetRewardResponse:
        """OpenRLHF's remote reward model contract (`--reward.remote_url http://HOST:PORT/get_reward`)."""
        service.check_count(len(req.query), "query")
        normalize = service.normalized(req.normalize)
        if req.prompts is not None and len(req.prompts) != len(req.query):
            raise RequestError(422, f"{len(req.prompts)} prompts for {len(req.query)} queries; send one prompt per "
                               "query, or none", field="prompts")  # fmt: skip
        prompts, responses, unsplit = split_queries(req.query, req.prompts)
        if service.suffixes:
            responses = [service.strip_special(r) for r in responses]
        fields = [f"query[{i}]" for i in range(len(req.query))]
        for r, p, f in zip(responses, prompts, fields):
            # An empty response (the policy stopped at once) still gets a reward; an empty query cannot.
            service.text(p, f, allow_empty=True)
            service.text(r, f, allow_empty=bool(p))
        if any(unsplit):  # a warning only where some query was affected
            logger.warning("%d of %d queries do not start with their prompt; scored whole", sum(unsplit), len(unsplit))
        out = await service.score(prompts, responses, [[] for _ in responses], fields)
        raw = out.scores
        rewards = service.scorer.normalize(raw) if normalize else raw
        logs = {"rewardlab_score": raw, "rewardlab_unsplit": unsplit}
        if out.uncertainties is not None:
            logs["rewardlab_uncertainty"] = out.uncertainties
        for name in service.scorer.attribute_names:  # OpenRLHF logs each extra_logs key as its own series
            logs[f"rewardlab_attribute_{name}"] = [a[name] for a in out.attributes or []]
        return GetRewardResponse(rewards=rewards, scores=raw, extra_logs=logs)

    known_paths.update(getattr(r, "path", None) for r in app.routes)
    return app


def base_app(cfg: ServeConfig, service: Any, api_key: str | None, lifespan: Any, *, title: str,
             description: str) -> tuple[FastAPI, set[str | None]]:  # fmt: skip
    """The app every rewardlab server starts from: JSON errors, the body limit, the key check, metrics, ``/health``
    and ``/metrics``; ``service`` has ``name`` and ``metrics``. Returns the app and the set of known paths, which the
    caller fills once its routes exist (requests to other paths are counted as one route)."""
    import rewardlab

    app = FastAPI(title=title, version=rewardlab.__version__, lifespan=lifespan,
                  description=f'{description} Errors are `{{"error": {{type, message, field}}}}`.')  # fmt: skip
    app.state.service = service

    @app.exception_handler(RequestError)
    async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.field, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", *validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):  # the JSON parser itself gave up
            return error_response(422, "invalid_request", f"malformed JSON: {unparsable_body(exc)}", None)
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, kind, str(exc.detail), None, dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _internal_error(_request: Request, _exc: Exception) -> JSONResponse:
        # Starlette re-raises after this response, and uvicorn logs the traceback (never the request body).
        return error_response(500, "internal", "internal server error (the server log has the details)", None)

    known_paths: set[str | None] = set()
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    if api_key is not None:
        app.add_middleware(BearerAuth, key=api_key)  # outside BodyLimit: bodies of refused requests are never read

    # Outermost: 401s and 413s are counted too.
    app.add_middleware(Observe, metrics=service.metrics, known_paths=known_paths)

    @app.get("/health", response_model=Health, tags=["ops"])
    async def health() -> Health:
        """Liveness and readiness: the model is loaded before the server accepts connections."""
        return Health(status="ok", model=service.name)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app, known_paths


def unparsable_body(exc: BaseException) -> str:
    """Why the JSON parser gave up on a body (FastAPI keeps the parser's exception as the cause)."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, (RecursionError, UnicodeDecodeError)):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, RecursionError):
        return "the body is nested too deeply; send a flat request"
    return "the body is not UTF-8 text"


def split_queries(queries: Sequence[str], prompts: Sequence[str] | None) -> tuple[list[str], list[str], list[float]]:
    """(prompts, responses, unsplit flags) of OpenRLHF queries: with ``prompts``, each query that starts with its
    prompt is split there; otherwise (or without prompts) the whole query is the response, with an empty
    prompt — the same tokens for a decoder RM (format 2 tokenizes prompt + response as one text), a different
    input for an encoder RM, which was trained on a (prompt, response) pair."""
    if prompts is None:
        return [""] * len(queries), list(queries), [0.0] * len(queries)
    out_p, out_r, unsplit = [], [], []
    for q, p in zip(queries, prompts):
        if p and q.startswith(p):
            out_p.append(p), out_r.append(q[len(p) :]), unsplit.append(0.0)
        else:
            out_p.append(""), out_r.append(q), unsplit.append(1.0)
    return out_p, out_r, unsplit


def validation_message(errors: Sequence[dict[str, Any]]) -> tuple[str, str | None]:
    """One message for pydantic's errors, and the first field at fault (``items[0].response``). The failed
    alternatives of a union (text or messages) are merged into one line per field; input values are not echoed."""
    if errors and errors[0].get("type") == "json_invalid":
        position = errors[0].get("loc", ())[-1]
        reason = errors[0].get("ctx", {}).get("error", "cannot be parsed")
        return f"malformed JSON at character {position}: {reason}", None
    by_field: dict[str | None, list[str]] = {}
    for err in errors:
        msg = str(err.get("msg", "invalid"))
        field = _dotted(err.get("loc", ()))
        if msg not in by_field.setdefault(field, []):
            by_field[field].append(msg)
    # A union (text or messages) fails on every branch: when one branch got deeper (a message without a role),
    # its error is the one that helps; "should be a valid string" at the parent is noise.
    deeper = [f for f in by_field if f and any(g and g != f and g.startswith((f + ".", f + "[")) for g in by_field)]
    for f in deeper:
        del by_field[f]
    lines = [f"{field or 'body'}: {' or '.join(msgs)}" for field, msgs in list(by_field.items())[:10]]
    more = f" (and {len(by_field) - 10} more fields)" if len(by_field) > 10 else ""
    return "; ".join(lines) + more, next(iter(by_field), None)


def _dotted(loc: Sequence[Any]) -> str | None:
    """``("body", "items", 0, "response", "str")`` → ``items[0].response`` (union branch tags dropped)."""
    out = ""
    for p in loc:
        if p == "body" or (isinstance(p, str) and ("[" in p or p in UNION_TAGS)):
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


UNION_TAGS = ("str", "int", "float", "bool", "list", "dict", "ImageRef", "Message")


def error_response(status: int, kind: str, message: str, field: str | None,
                   headers: dict[str, str] | None = None) -> JSONResponse:  # fmt: skip
    body = {"error": {"type": kind, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


class BodyLimit:
    """Pure ASGI middleware: bodies over ``max_bytes`` get 413 before the app parses them (a declared
    Content-Length is refused at once; a chunked body is counted as it arrives). Bodies are read as JSON whatever
    their declared content type."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        too_large = error_response(413, "too_large", f"request body over this server's limit of {self.max_bytes:,} "
                                   "bytes; send fewer items per request", None)  # fmt: skip
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False
        if body and not headers.get(b"content-type", b"").startswith(b"application/json"):
            # Bodies are JSON whatever the client declared (curl -d says form data): parse them as such.
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-type"]
                     + [(b"content-type", b"application/json")]}  # fmt: skip

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class Observe:
    """Pure ASGI middleware: counts requests by route and status, and their latency. Unknown paths are counted
    as ``other`` (a raw path as a label would make unbounded series)."""

    def __init__(self, app: Any, metrics: ServerMetrics, known_paths: set[str | None]):
        self.app, self.metrics, self.known_paths = app, metrics, known_paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]

        async def observed_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            path = scope.get("path") if scope.get("path") in self.known_paths else "other"
            self.metrics.observe_request(path, status[0], time.perf_counter() - start)


class BearerAuth:
    """Pure ASGI middleware: every path but :data:`OPEN_PATHS` needs ``Authorization: Bearer <key>``; the key is
    compared in constant time."""

    def __init__(self, app: Any, key: str):
        self.app, self.key = app, key.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.key):
            message = "missing or wrong API key; send the header 'Authorization: Bearer <key>'"
            response = error_response(401, "unauthorized", message, None, {"WWW-Authenticate": "Bearer"})
            return await response(scope, receive, send)
        await self.app(scope, receive, send)


__all__ = ["create_app", "split_queries"]
