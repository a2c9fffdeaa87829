"""The serving client: proportional shards without empty slices, failover when a server dies mid-run, 4xx
surfaced at once, both protocols, the async twin, TRL's GRPOTrainer with a remote reward — and a load test."""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from rewardlab.data.synthetic import make_pairs  # noqa: E402
from rewardlab.models.scorer import Scorer  # noqa: E402
from rewardlab.serving.client import (  # noqa: E402
    AsyncRewardClient,
    RemoteScoringError,
    RequestRejected,
    RewardClient,
    parse_endpoint,
    split_proportionally,
)
from tests.servers import ServeProcess, ThreadServer, metric, train_tiny_rm  # noqa: E402

PAIRS = make_pairs(64, seed=41)
PROMPTS = [p.prompt for p in PAIRS]
RESPONSES = [p.chosen for p in PAIRS]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_tiny_rm(tmp_path_factory.mktemp("client"))


@pytest.fixture(scope="module")
def scorer(model_dir):
    return Scorer.from_pretrained(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def expected(scorer):
    return scorer.score(PROMPTS, RESPONSES)


def test_split_proportionally_never_sends_an_empty_slice():
    assert split_proportionally(1, [1, 1]) == [1, 0]  # OpenRLHF sends the second server an empty slice here
    assert split_proportionally(5, [1, 1]) == [3, 2]
    assert split_proportionally(10, [3, 1]) == [8, 2]  # 7.5 / 2.5: largest remainder
    assert split_proportionally(2, [1, 5, 1]) == [0, 2, 0]
    assert split_proportionally(0, [1, 1]) == [0, 0]
    for n in range(1, 40):
        for weights in ([1], [1, 1], [1, 2, 3], [10, 1, 1], [1] * 5):
            shares = split_proportionally(n, weights)
            assert sum(shares) == n and all(s >= 0 for s in shares)
            assert all(abs(s - n * w / sum(weights)) < 1 for s, w in zip(shares, weights))  # proportional
            if len(set(weights)) == 1:
                assert sum(1 for s in shares if s) == min(n, len(weights))  # equal servers all get work


def test_endpoint_urls_pick_the_protocol():
    assert parse_endpoint("http://h:1/get_reward", "auto", 1).protocol == "openrlhf"
    e = parse_endpoint("http://h:1/v1/score/", "auto", 1)
    assert (e.base, e.protocol) == ("http://h:1", "rewardlab")
    assert parse_endpoint("http://h:1", "openrlhf", 1).path == "/get_reward"
    with pytest.raises(ValueError, match="http"):
        parse_endpoint("h:1", "auto", 1)


def test_client_batches_and_matches_the_scorer_on_both_protocols(scorer, expected):
    with ThreadServer(scorer) as s:
        with RewardClient(s.url, max_items_per_request=10) as client:
            assert client.score(PROMPTS, RESPONSES) == pytest.approx(expected, abs=1e-5)
            mean, std = scorer.normalization.mean, scorer.normalization.std
            got = client.score(PROMPTS[:3], RESPONSES[:3], normalize=True)
            assert got == pytest.approx([(x - mean) / std for x in expected[:3]], abs=1e-4)
            cmp = client.compare(PROMPTS[0], RESPONSES[0], PAIRS[0].rejected)
            assert cmp["score_a"] == pytest.approx(expected[0], abs=1e-5)
            ranking = client.rank(PROMPTS[0], [PAIRS[0].rejected, RESPONSES[0]])
            assert {r["index"] for r in ranking} == {0, 1}
            with pytest.raises(RequestRejected, match="items\\[0\\].response") as info:
                client.score(["p"], [""])
            assert info.value.status == 422
        with RewardClient(f"{s.url}/get_reward") as client:  # OpenRLHF's contract, as OpenRLHF users write the URL
            assert client.score(PROMPTS[:8], RESPONSES[:8]) == pytest.approx(expected[:8], abs=1e-5)
        metrics = httpx.get(f"{s.url}/metrics").text
    # 64 samples in requests of at most 10: 7 requests, not 64.
    assert 'rewardlab_requests_total{route="/v1/score",status="200"} 8.0' in metrics


def test_async_client(scorer, expected):
    async def run(url):
        async with AsyncRewardClient([url, url], max_items_per_request=16) as client:
            return await client.score(PROMPTS, RESPONSES)

    with ThreadServer(scorer) as s:
        assert asyncio.run(run(s.url)) == pytest.approx(expected, abs=1e-5)


def test_all_servers_down_raises_after_trying_each(scorer):
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    client = RewardClient([f"http://127.0.0.1:{p}" for p in ports], backoff_s=0.01)
    with client, pytest.raises(RemoteScoringError, match="every server failed") as info:
        client.score(PROMPTS[:4], RESPONSES[:4])
    assert all(str(p) in str(info.value) for p in ports)


@pytest.mark.slow
def test_two_servers_one_killed_mid_run_every_sample_still_scored(model_dir, expected):
    """Scale-out as docs/serving.md shows it: N `rewardlab serve` processes behind the client. One dies mid-run
    (SIGKILL, as a crashed GPU worker): its share is retried on the other, and no sample is lost."""
    with ServeProcess("--model", str(model_dir)) as a, ServeProcess("--model", str(model_dir)) as b:
        client = RewardClient([a.url, b.url], max_items_per_request=16, backoff_s=0.05, retries=1)
        with client:
            for call in range(12):
                if call == 4:
                    b.kill()
                got = client.score(PROMPTS, RESPONSES)
                assert got == pytest.approx(expected, abs=1e-5), f"call {call}"
        a_metrics = httpx.get(f"{a.url}/metrics").text
    served_by_a = metric(a_metrics, "rewardlab_scored_responses_total")
    assert 4 * 32 <= served_by_a < 12 * 64  # a took b's share after the kill, and only half before it


@pytest.mark.slow
def test_load_many_concurrent_clients_no_errors_no_mixups(model_dir, expected):
    """100 concurrent clients for 60 s (REWARDLAB_LOAD_TEST_S) against one server: every answer is checked
    against the client's own expected scores; 0 errors, 0 lost or mismatched responses."""
    duration = float(os.environ.get("REWARDLAB_LOAD_TEST_S", "60"))
    clients = 100
    counts = {"ok": 0, "errors": 0, "mismatched": 0}
    per_client = [0] * clients

    async def one_client(k: int, url: str, http: httpx.AsyncClient, stop_at: float) -> None:
        rng = random.Random(k)
        while time.monotonic() < stop_at:
            idx = rng.sample(range(len(PAIRS)), rng.randint(1, 4))
            body = {"items": [{"prompt": PROMPTS[i], "response": RESPONSES[i]} for i in idx]}
            try:
                r = await http.post(f"{url}/v1/score", json=body)
            except httpx.HTTPError:
                counts["errors"] += 1
                continue
            if r.status_code != 200:
                counts["errors"] += 1
                continue
            got = r.json()["scores"]
            if len(got) != len(idx) or any(abs(g - expected[i]) > 1e-5 for g, i in zip(got, idx)):
                counts["mismatched"] += 1
            else:
                counts["ok"] += 1
                per_client[k] += 1

    async def run(url: str) -> None:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:
            stop_at = time.monotonic() + duration
            await asyncio.gather(*(one_client(k, url, http, stop_at) for k in range(clients)))

    with ServeProcess("--model", str(model_dir), "max_batch_size=64") as server:
        asyncio.run(run(server.url))
        metrics = httpx.get(f"{server.url}/metrics").text
    assert counts["errors"] == 0 and counts["mismatched"] == 0, counts
    assert all(n >= 1 for n in per_client), "a client never got an answer"
    batches = metric(metrics, "rewardlab_batch_size_count")
    assert batches < counts["ok"]  # requests were coalesced


@pytest.mark.slow
def test_trl_grpo_trains_two_steps_with_a_remote_reward(scorer, model_dir, tmp_path):
    """TRL's GRPOTrainer with rewardlab.rl.RemoteReward pointed at a running server: two optimizer steps, the
    rewards TRL logs are the server's scores."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoConfig, AutoTokenizer, Qwen2ForCausalLM
    from trl import GRPOConfig, GRPOTrainer

    from rewardlab.rl import RemoteReward
    from tests.tiny import make_tiny

    policy = tmp_path / "policy"
    config = AutoConfig.from_pretrained(make_tiny(tmp_path / "policy_base", "qwen2"))
    Qwen2ForCausalLM(config).save_pretrained(policy)
    AutoTokenizer.from_pretrained(tmp_path / "policy_base").save_pretrained(policy)
    with ThreadServer(scorer) as s:
        reward = RemoteReward(s.url)
        seen: list[tuple[list, list, list]] = []

        def recording(prompts, completions, **kw):
            scores = reward(prompts, completions, **kw)
            seen.append((list(prompts), list(completions), scores))
            return scores

        recording.__name__ = "remote_rm"
        args = GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=4,
                          max_completion_length=6, max_steps=2, report_to=[], use_cpu=True, bf16=False,
                          logging_steps=1, save_strategy="no")  # fmt: skip
        data = Dataset.from_list([{"prompt": p} for p in PROMPTS[:8]])
        trainer = GRPOTrainer(model=str(policy), reward_funcs=[recording], args=args, train_dataset=data)
        trainer.train()
        reward.close()
    assert trainer.state.global_step == 2 and len(seen) >= 2
    prompts, completions, scores = seen[0]
    assert scores == pytest.approx(scorer.score(prompts, completions), abs=1e-5)
    logged = [h for h in trainer.state.log_history if "rewards/remote_rm/mean" in h]
    assert logged and all(isinstance(h["rewards/remote_rm/mean"], float) for h in logged)
