"""The HTTP server of an LLM judge: ``create_judge_app(scorer, cfg)`` (``rewardlab serve --model judge:SPEC``).

The routes, errors, limits, key check and metrics are the reward model server's (:mod:`~rewardlab.serving.app`),
so every client of ``rewardlab serve`` — rewardlab's own, OpenRLHF's ``/get_reward``, RL's remote reward — calls a
judge the same way:

- ``/v1/score``: each item rated alone (pointwise), its expected rating on the judge's scale;
- ``/v1/compare``: a pairwise judge's P(a ≻ b), both orders (``p_a`` their mean; ``score_a − score_b`` its
  log-odds); a pointwise judge's σ of the ratings' difference;
- ``/v1/rank`` and ``/get_reward``: one score per response of a prompt as the judge file says (pairwise: its
  schedule's pairs, both orders, aggregated; pointwise: the ratings). ``/get_reward`` groups the queries of one
  prompt wherever they sit in the request, so a pairwise judge needs ``prompts``; a prompt with one query gets 0.

Judging runs in worker threads; a local model judges one request at a time (its batches are the judge's), an
endpoint as many as its ``concurrency`` allows.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from rewardlab.config.schema import ServeConfig
from rewardlab.data.records import plain_text
from rewardlab.errors import ConfigError
from rewardlab.judges.judge import judge_rewards
from rewardlab.judges.scoring import JudgeScorer, logit, prompt_text
from rewardlab.serving.app import (
    API_VERSION,
    ERRORS,
    RETRY_AFTER_S,
    Limits,
    api_key_from_env,
    base_app,
    split_queries,
    strip_suffixes,
)
from rewardlab.serving.errors import RequestError
from rewardlab.serving.metrics import ServerMetrics
from rewardlab.serving.schemas import (
    CompareRequest,
    CompareResponse,
    GetRewardRequest,
    GetRewardResponse,
    JudgeInfo,
    RankRequest,
    RankResponse,
    ScoreRequest,
    ScoreResponse,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")


class JudgeService(Limits):
    """What the judge's routes share: the judge, its lock (a local model), the limits, the metrics."""

    def __init__(self, scorer: JudgeScorer, cfg: ServeConfig, name: str):
        self.scorer, self.cfg, self.name = scorer, cfg, name
        self.pending = 0  # responses admitted and not yet judged
        self.metrics = ServerMetrics(queue_depth=lambda: self.pending)
        self.local = scorer.settings.url is None
        self._model_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.suffixes = strip_suffixes(scorer.tokenizer, cfg)

    def refuse_extras(self, *, images: list[Any], weights: Any = None, normalize: bool | None = None) -> None:
        if images:
            raise RequestError(422, "this judge reads text only; send no images", field="images")
        if weights is not None:
            raise RequestError(422, "weights combine a reward model's attribute heads; a judge has none",
                               field="weights")  # fmt: skip
        if normalize:
            raise RequestError(422, "a judge has no normalization statistics; send normalize=false", field="normalize")

    async def run(self, n: int, work: Callable[[], T]) -> T:
        """``work()`` (judging ``n`` responses) in a worker thread; 503 when the queue is full."""
        with self._count_lock:
            if self.pending + n > self.cfg.max_queue_items:
                raise RequestError(503, "the server is at capacity; retry shortly", type="overloaded",
                                   headers={"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
            self.pending += n

        def guarded() -> T:
            start = time.perf_counter()
            if self.local:
                with self._model_lock:
                    out = work()
            else:
                out = work()
            self.metrics.observe_batch(n, time.perf_counter() - start)
            return out

        try:
            return await run_in_threadpool(guarded)
        except RequestError:
            raise
        except Exception:
            logger.exception("judging failed")
            raise RequestError(500, "judging failed on the server (see its log)", type="internal") from None
        finally:
            with self._count_lock:
                self.pending -= n

    def info(self) -> JudgeInfo:
        import rewardlab

        s, cfg = self.scorer.settings, self.cfg
        return JudgeInfo(
            name=self.name, judge=self.scorer.describe(), backend="local" if self.local else "endpoint", mode=s.mode,
            schedule=s.schedule, aggregation=s.aggregation, scale=s.scale, cached=s.cache is not None,
            rewardlab_version=rewardlab.__version__,
            limits={"max_items_per_request": cfg.max_items_per_request, "max_text_chars": cfg.max_text_chars,
                    "max_body_bytes": cfg.max_body_bytes},
        )  # fmt: skip


def create_judge_app(scorer: JudgeScorer, cfg: ServeConfig, *, name: str | None = None) -> FastAPI:
    """The server for the judge ``scorer``; ``cfg`` sets limits and security as for a reward model (batching
    settings do not apply: the judge's own batch size and concurrency do)."""
    api_key = api_key_from_env(cfg)
    if cfg.normalize:
        raise ConfigError("normalize=true: a judge has no normalization statistics; serve it with normalize=false")
    default = os.path.basename(os.path.normpath(scorer.settings.path or scorer.settings.model or "judge"))
    service = JudgeService(scorer, cfg, name or cfg.name or f"judge-{default}")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        logger.info("serving %s: %s", service.name, scorer.describe())
        try:
            yield
        finally:
            logger.info("%s: judge usage %s", service.name, scorer.usage())
            scorer.close()

    app, known_paths = base_app(cfg, service, api_key, lifespan, title="rewardlab judge server",
                                description="Scores responses with an LLM judge.")  # fmt: skip

    @app.get(f"/{API_VERSION}/model", response_model=JudgeInfo, tags=["ops"])
    async def model_info() -> JudgeInfo:
        return service.info()

    @app.post(f"/{API_VERSION}/score", response_model=ScoreResponse, response_model_exclude_none=True,
              responses=ERRORS, tags=["score"])  # fmt: skip
    async def score(req: ScoreRequest) -> ScoreResponse:
        """Each item rated alone: the expected rating on the judge's scale, in request order."""
        service.check_count(len(req.items), "items")
        service.refuse_extras(images=[im for it in req.items for im in it.images], weights=req.weights,
                              normalize=req.normalize)  # fmt: skip
        fields = [f"items[{i}]" for i in range(len(req.items))]
        prompts = [prompt_text(service.text(it.prompt, f"{f}.prompt", allow_empty=True))
                   for it, f in zip(req.items, fields)]  # fmt: skip
        responses = [plain_text(service.text(it.response, f"{f}.response")) for it, f in zip(req.items, fields)]
        scores = await service.run(len(responses), lambda: scorer.judge.score(prompts, responses))
        return ScoreResponse(scores=scores, normalized=False)

    @app.post(f"/{API_VERSION}/compare", response_model=CompareResponse, response_model_exclude_none=True,
              responses=ERRORS, tags=["score"])  # fmt: skip
    async def compare(req: CompareRequest) -> CompareResponse:
        """Which of two responses the judge prefers: P(a ≻ b), a pairwise judge's over both orders."""
        service.refuse_extras(images=list(req.images), weights=req.weights)
        prompt = service.text(req.prompt, "prompt", allow_empty=True)
        a, b = service.text(req.a, "a"), service.text(req.b, "b")
        v = (await service.run(2, lambda: scorer.prefer_pairs([(prompt, a, b)])))[0]
        half = logit(v.p_a) / 2
        pairwise = not scorer.pointwise
        return CompareResponse(
            better="a" if v.p_a >= 0.5 else "b", p_a=v.p_a, score_a=half, score_b=-half,
            **({"p_a_a_first": v.first, "p_a_b_first": v.second, "orders_disagree": v.disagree} if pairwise else {}),
        )  # fmt: skip

    @app.post(f"/{API_VERSION}/rank", response_model=RankResponse, response_model_exclude_none=True,
              responses=ERRORS, tags=["score"])  # fmt: skip
    async def rank(req: RankRequest) -> RankResponse:
        """Best-of-N: the responses by the judge's score (pairwise: the schedule's pairs, aggregated), best first."""
        service.check_count(len(req.responses), "responses")
        service.refuse_extras(images=list(req.images), weights=req.weights, normalize=req.normalize)
        prompt = service.text(req.prompt, "prompt", allow_empty=True)
        responses = [service.text(r, f"responses[{i}]") for i, r in enumerate(req.responses)]
        scores = (await service.run(len(responses), lambda: scorer.score_groups([(prompt, responses)])))[0]
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return RankResponse(ranking=[{"index": i, "score": scores[i]} for i in order], normalized=False)

    @app.post("/get_reward", response_model=GetRewardResponse, responses=ERRORS, tags=["openrlhf"])
    async def get_reward(req: GetRewardRequest) -> GetRewardResponse:
        """OpenRLHF's remote reward model contract: one reward per query, the queries of one prompt judged
        together (a pairwise judge needs `prompts`)."""
        service.check_count(len(req.query), "query")
        service.refuse_extras(images=[], normalize=req.normalize)
        if req.prompts is not None and len(req.prompts) != len(req.query):
            raise RequestError(422, f"{len(req.prompts)} prompts for {len(req.query)} queries; send one prompt per "
                               "query", field="prompts")  # fmt: skip
        if req.prompts is None and not scorer.pointwise:
            raise RequestError(422, "a pairwise judge compares the responses to one prompt: send `prompts` (one per "
                               "query; OpenRLHF does)", field="prompts")  # fmt: skip
        _, responses, unsplit = split_queries(req.query, req.prompts)
        prompts = list(req.prompts) if req.prompts is not None else [""] * len(req.query)
        if service.suffixes:
            responses = [service.strip_special(r) for r in responses]
        for i, (p, r) in enumerate(zip(prompts, responses)):
            service.text(p, f"prompts[{i}]", allow_empty=True)
            service.text(r, f"query[{i}]", allow_empty=True)
        if any(unsplit):
            logger.warning("%d of %d queries do not start with their prompt; judged whole", sum(unsplit), len(unsplit))
        settings = scorer.settings
        rewards = await service.run(len(responses), lambda: judge_rewards(scorer.judge, settings, prompts, responses))
        return GetRewardResponse(rewards=rewards, scores=rewards, extra_logs={"rewardlab_unsplit": unsplit})

    known_paths.update(getattr(r, "path", None) for r in app.routes)
    return app
