"""LLM judges (``rewardlab.judges``): templates and their checks, expected scores from answer log-probabilities,
pairwise verdicts in both orders, schedules and their cost, the Bradley–Terry fit, and the SQLite cache — on a tiny
causal chat model built from a config."""

from __future__ import annotations

import math

import pytest

from rewardlab.errors import ConfigError
from rewardlab.judges.aggregate import bradley_terry, calls_per_group, schedule, swiss_pairs, win_rate
from rewardlab.judges.judge import expected_value
from rewardlab.judges.templates import Template


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    """A tiny random Qwen2 causal LM with a chat template; its tokenizer knows the answer tokens A, B, 1..9."""
    import torch
    from transformers import AutoModelForCausalLM

    from rewardlab.models.tiny import tiny_config, train_tokenizer

    texts = ["Which response is better? Answer with a single letter: A or B.", "Rate it from 1 to 9."] * 50
    texts += [" ".join("AB123456789") + " hello world the sky is blue answer response request"] * 50
    tokenizer = train_tokenizer(texts, 300)
    config = tiny_config("qwen2", len(tokenizer), tokenizer, hidden=32, layers=2, heads=2)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    path = tmp_path_factory.mktemp("judge") / "chat"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_templates_render_and_refuse_missing_or_unknown_fields(tmp_path):
    text = Template(None, "pairwise").render(prompt="Q?", response_a="one", response_b="two")
    assert "[Response A]\none" in text and "[Response B]\ntwo" in text and "Q?" in text
    assert "from 1 (useless" in Template(None, "pointwise").render(prompt="Q", response="R", low=1, high=9)
    with pytest.raises(ConfigError, match=r"must use \{\{ response_b \}\}"):
        Template("{{ prompt }} {{ response_a }}", "pairwise")
    with pytest.raises(ConfigError, match="names reference, which a pointwise judge does not give"):
        Template("{{ prompt }} {{ response }} {{ reference }}", "pointwise")
    path = tmp_path / "rubric.j2"
    path.write_text("Score {{ response }} for {{ prompt }} on {{ low }}-{{ high }}.")
    assert Template(str(path), "pointwise").render(prompt="p", response="r", low=1, high=5) == "Score r for p on 1-5."
    with pytest.raises(ConfigError, match="no such file"):
        Template(str(tmp_path / "missing.j2"), "pointwise")


def test_expected_value_on_hand_set_logprobs():
    assert expected_value([math.log(0.2), math.log(0.8)], [1, 2]) == pytest.approx(1.8)
    # Unnormalized log-probabilities are renormalized among the answers: 1:2:1 over 1, 2, 3 → 2.
    assert expected_value([math.log(1), math.log(2), math.log(1)], [1, 2, 3]) == pytest.approx(2.0)


def test_local_backend_scores_batched_left_padded_messages_as_it_scores_each_alone(chat_lm):
    import torch

    from rewardlab.judges.backends import LocalBackend

    backend = LocalBackend(str(chat_lm), batch_size=4)
    messages = ["Rate it.", "Which response is better? Answer with a single letter: A or B.", "hello world"]
    batched = backend.answer_logprobs(messages, ["A", "B"])
    tokens = backend.answer_tokens(["A", "B"])
    for message, got in zip(messages, batched):
        text = backend.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                     add_generation_prompt=True)  # fmt: skip
        ids = backend.tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
        with torch.no_grad():
            alone = torch.log_softmax(backend.model(ids).logits[0, -1].float(), -1)[tokens].tolist()
        assert got == pytest.approx(alone, abs=1e-5)
    assert backend.calls == 3
    with pytest.raises(ConfigError, match="distinct tokens"):
        backend.answer_tokens(["A", "A"])


def test_swapping_the_two_responses_flips_the_preference_exactly(chat_lm):
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.judges.judge import Judge

    judge = Judge(LocalBackend(str(chat_lm)))
    ab = judge.prefer("Name the sky's colour.", "blue", "the sky is blue")
    ba = judge.prefer("Name the sky's colour.", "the sky is blue", "blue")
    assert ab.p_a == pytest.approx(1 - ba.p_a, abs=1e-12)
    assert ab.first == pytest.approx(1 - ba.second, abs=1e-12) and ab.second == pytest.approx(1 - ba.first, abs=1e-12)
    assert ab.p_a == pytest.approx((ab.first + ab.second) / 2)
    scores = judge.score("Name the sky's colour.", ["blue", "the sky is blue"])
    assert all(1 <= s <= 9 for s in scores) and scores[0] != scores[1]


def test_bradley_terry_recovers_known_strengths_from_a_synthetic_win_matrix():
    theta = [1.0, 0.0, -1.0, 0.5, -0.5]
    g = len(theta)
    verdicts = {(i, j): 1 / (1 + math.exp(theta[j] - theta[i])) for i in range(g) for j in range(i + 1, g)}
    fitted = bradley_terry(g, verdicts, prior=0.0)
    assert fitted == pytest.approx(theta, abs=1e-6)  # theta has mean 0, as the fit is centred
    shrunk = bradley_terry(g, verdicts, prior=0.5)  # the prior pulls towards 0 but keeps the order
    assert sorted(range(g), key=shrunk.__getitem__) == sorted(range(g), key=theta.__getitem__)
    assert all(abs(s) < abs(t) for s, t in zip(shrunk, theta) if t)
    unbeaten = bradley_terry(3, {(0, 1): 1.0, (0, 2): 1.0, (1, 2): 0.5})
    assert all(math.isfinite(x) for x in unbeaten) and unbeaten[0] > unbeaten[1] == pytest.approx(unbeaten[2])
    assert win_rate(3, {(0, 1): 1.0, (0, 2): 0.75, (1, 2): 0.5}) == [0.875, 0.25, 0.375]


def test_schedules_and_their_cost_per_group():
    assert schedule(4, "all") == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert schedule(4, "reference") == [(0, 1), (0, 2), (0, 3)]
    assert schedule(6, "round_robin", rounds=1) == [(0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]
    # calls (both orders) at G = 4, 8, 16 — the table in docs
    assert [calls_per_group(g, "all") for g in (4, 8, 16)] == [12, 56, 240]
    assert [calls_per_group(g, "round_robin", rounds=2) for g in (4, 8, 16)] == [12, 32, 64]
    assert [calls_per_group(g, "reference") for g in (4, 8, 16)] == [6, 14, 30]
    assert [calls_per_group(g, "swiss", rounds=3) for g in (4, 8, 16)] == [12, 24, 48]
    played = swiss_pairs(8, lambda i, j: 1.0 if i < j else 0.0, rounds=3)
    assert len(played) == 12 and len(set(played)) == 12  # no pair twice


def test_group_rewards_and_the_cache_make_no_second_call(chat_lm, tmp_path):
    from rewardlab.judges.backends import CachedBackend, LocalBackend
    from rewardlab.judges.judge import Judge

    completions = ["blue", "the sky is blue", "green", "hello world"]
    cached = CachedBackend(LocalBackend(str(chat_lm)), tmp_path / "judge.sqlite")
    judge = Judge(cached)
    first = judge.group_rewards("Name the sky's colour.", completions)
    assert first.calls == 12 and len(first.verdicts) == 6 and sum(first.rewards) == pytest.approx(0, abs=1e-9)
    again = Judge(CachedBackend(LocalBackend(str(chat_lm)), tmp_path / "judge.sqlite"))
    second = again.group_rewards("Name the sky's colour.", completions)
    assert second.calls == 0 and second.rewards == first.rewards and again.backend.hits == 12
    other = Judge(again.backend, pairwise="Better? {{ prompt }} A: {{ response_a }} B: {{ response_b }}")
    assert other.group_rewards("Name the sky's colour.", completions[:2]).calls == 2  # a new template: new calls
    rates = judge.group_rewards("Name the sky's colour.", completions, how="win_rate", schedule_kind="reference")
    assert rates.calls == 0 and len(rates.verdicts) == 3  # its pairs were all judged before


def test_a_model_without_a_chat_template_is_refused(tmp_path):
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.models.tiny import train_tokenizer

    tokenizer = train_tokenizer(["plain text only"] * 20, 280, chat_template=False)
    tokenizer.save_pretrained(tmp_path / "base")
    with pytest.raises(ConfigError, match="no chat template, so it is not a chat model"):
        LocalBackend(str(tmp_path / "base"))


def test_a_two_step_grpo_run_with_a_pairwise_judge_reward(chat_lm, tmp_path):
    """GRPO's groups of completions are judged pair by pair and fitted into one reward each (a few seconds)."""
    pytest.importorskip("trl")
    from rewardlab.cli import main
    from tests.test_rl import make_policy, metrics, rl_config
    from tests.tiny import write_jsonl

    make_policy(tmp_path)
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Describe tea in {n} words."} for n in range(2, 14)])
    cache = tmp_path / "verdicts.sqlite"
    rewards = [{"type": "judge", "path": str(chat_lm), "name": "judge", "judge": {"cache": str(cache)}},
               {"type": "judge", "path": str(chat_lm), "name": "rating", "weight": 0.1,
                "judge": {"mode": "pointwise", "scale": [1, 5]}}]  # fmt: skip
    assert main(["rl", "--config", str(rl_config(tmp_path, "run", rewards=rewards))]) == 0
    train = [r for r in metrics(tmp_path / "run") if "rewards/judge/mean" in r]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert r["rewards/judge/mean"] == pytest.approx(0, abs=1e-6)  # Bradley–Terry strengths are centred per group
        assert 1 <= r["rewards/rating/mean"] <= 5
    assert cache.is_file()


def test_judge_rewards_group_consecutive_completions_of_one_prompt(chat_lm):
    from rewardlab.config.schema import RewardSource
    from rewardlab.rl.rewards import JudgeReward

    func = JudgeReward.from_source(RewardSource(type="judge", path=str(chat_lm), judge={"schedule": "reference"}))
    prompts = ["p1"] * 3 + ["p2"] * 2 + ["p3"]
    rewards = func(prompts, ["a", "b", "c", "d", "e", "f"])
    assert rewards[5] == 0.0  # alone: nothing to compare with
    assert sum(rewards[:3]) == pytest.approx(0, abs=1e-9) and sum(rewards[3:5]) == pytest.approx(0, abs=1e-9)
    assert func.calls == 2 * (2 + 1)  # reference schedule: G - 1 pairs, both orders
    with pytest.raises(ValueError, match="a judge reward takes none of"):
        RewardSource(type="judge", path=str(chat_lm), normalize=True)


class FakeEndpoint:
    """An OpenAI-compatible chat endpoint for tests: prefers the response that mentions "blue" (A/B log-probabilities
    -0.1 / -2.4), rates "blue" 5 on a 1–5 scale; ``fail`` answers 503 that many times first; ``plain`` returns text
    without log-probabilities (``reply``); checks the bearer key."""

    def __init__(self, key: str = "secret"):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.requests, self.fail, self.plain, self.reply = 0, 0, False, "A"

        async def complete(request):
            if request.headers.get("authorization") != f"Bearer {key}":
                return JSONResponse({"error": "bad key"}, status_code=401)
            self.requests += 1
            if self.fail:
                self.fail -= 1
                return JSONResponse({"error": "busy"}, status_code=503, headers={"Retry-After": "0"})
            body = await request.json()
            text = body["messages"][0]["content"]
            if self.plain:
                return JSONResponse({"choices": [{"message": {"role": "assistant", "content": self.reply}}]})
            if "[Response A]" in text:
                a_part = text.split("[Response A]")[1].split("[Response B]")[0]
                top = {"A": -0.1, "B": -2.4} if "blue" in a_part else {"A": -2.4, "B": -0.1}
            else:
                top = {"5": -0.2, "1": -1.8} if "blue" in text.split("[Response]")[1] else {"1": -0.2, "5": -1.8}
            tops = [{"token": t, "logprob": lp} for t, lp in top.items()]
            first = max(top, key=top.get)
            return JSONResponse({"choices": [{"message": {"role": "assistant", "content": first},
                                              "logprobs": {"content": [{"token": first, "logprob": top[first],
                                                                        "top_logprobs": tops}]}}]})  # fmt: skip

        self.app = Starlette(routes=[Route("/v1/chat/completions", complete, methods=["POST"])])


@pytest.fixture
def endpoint(monkeypatch):
    from tests.servers import AppServer

    monkeypatch.setenv("JUDGE_KEY", "secret")
    fake = FakeEndpoint()
    with AppServer(fake.app) as server:
        yield fake, server.url + "/v1"


def test_an_openai_compatible_endpoint_judges_from_its_logprobs_with_a_cache(endpoint, tmp_path):
    from rewardlab.judges.backends import CachedBackend, EndpointBackend, normalized
    from rewardlab.judges.judge import Judge

    fake, url = endpoint
    judge = Judge(EndpointBackend(url, "judge-model", api_key_env="JUDGE_KEY"), scale=(1, 5))
    verdict = judge.prefer("Colour of the sky?", "blue", "green")
    expected = normalized([-0.1, -2.4])[0]
    assert verdict.first == pytest.approx(expected) and verdict.second == pytest.approx(expected)
    assert not verdict.disagree and fake.requests == 2
    scores = judge.score("Colour of the sky?", ["blue", "green"])
    floor = -2.4 - 10  # answers 2-4 are not among the top log-probabilities
    assert scores[0] > 4 and scores[1] < 2
    assert scores[0] == pytest.approx(sum(k * p for k, p in zip(range(1, 6), normalized([-1.8, floor + 0.6, floor +
                                      0.6, floor + 0.6, -0.2]))), abs=1e-3)  # fmt: skip
    cached = Judge(CachedBackend(EndpointBackend(url, "judge-model", api_key_env="JUDGE_KEY"), tmp_path / "c.sqlite"))
    cached.group_rewards("Colour of the sky?", ["blue", "green", "red"])
    before = fake.requests
    again = cached.group_rewards("Colour of the sky?", ["blue", "green", "red"])
    assert fake.requests == before and again.calls == 0 and again.rewards[0] == max(again.rewards)


def test_endpoint_retries_busy_answers_and_respects_its_rate(endpoint):
    import time

    from rewardlab.judges.backends import EndpointBackend

    fake, url = endpoint
    fake.fail = 2
    backend = EndpointBackend(url, "m", api_key_env="JUDGE_KEY", concurrency=1)
    assert backend.answer_logprobs(["[Response A] blue [Response B] green"], ["A", "B"]) == [[-0.1, -2.4]]
    assert fake.requests == 3 and [ok for _, ok in backend.log] == [False, False, True]
    limited = EndpointBackend(url, "m", api_key_env="JUDGE_KEY", concurrency=4, rate=20.0)
    start = time.monotonic()
    limited.answer_logprobs(["[Response A] blue [Response B] green"] * 8, ["A", "B"])
    sent = sorted(limited.sent)
    assert all(
        t - start >= k / 20.0 - 1e-6 for k, t in enumerate(sent)
    )  # the k-th request left no earlier than k/rate


def test_endpoint_without_logprobs_parses_the_reply_and_counts_unparseable_ones(endpoint):
    from rewardlab.judges.backends import EndpointBackend
    from rewardlab.judges.judge import Judge

    fake, url = endpoint
    fake.plain = True
    judge = Judge(EndpointBackend(url, "m", api_key_env="JUDGE_KEY"))
    assert judge.prefer("q", "x", "y").first == 1.0  # "A": the first shown wins, for certain
    fake.reply = "I cannot decide"
    verdict = judge.prefer("q", "x", "y")
    assert verdict.p_a == 0.5 and judge.backend.unparseable == 2


def test_endpoint_bad_key_missing_key_and_no_server_are_clear_errors(endpoint, monkeypatch):
    from rewardlab.errors import ModelError
    from rewardlab.judges.backends import EndpointBackend

    _, url = endpoint
    monkeypatch.setenv("WRONG_KEY", "nope")
    with pytest.raises(ConfigError, match=r"refused the key \(HTTP 401\); check WRONG_KEY"):
        EndpointBackend(url, "m", api_key_env="WRONG_KEY").answer_logprobs(["hi"], ["A", "B"])
    with pytest.raises(ConfigError, match="UNSET_KEY is empty or unset"):
        EndpointBackend(url, "m", api_key_env="UNSET_KEY")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = EndpointBackend(f"http://127.0.0.1:{port}/v1", "m", retries=1)  # one retry, after a 0.5 s backoff
    with pytest.raises(ModelError, match="no answer after 2 tries"):
        dead.answer_logprobs(["hi"], ["A", "B"])


def test_a_judge_reward_on_an_endpoint_and_its_config_checks(endpoint):
    from rewardlab.config.schema import RewardSource
    from rewardlab.rl.rewards import JudgeReward

    fake, url = endpoint
    src = RewardSource(type="judge", url=url, api_key_env="JUDGE_KEY", judge={"model": "m", "schedule": "all"})
    func = JudgeReward.from_source(src)
    rewards = func(["Colour of the sky?"] * 3, ["green", "blue", "red"])
    assert rewards[1] == max(rewards) and fake.requests == 6 and func.calls == 6
    with pytest.raises(ValueError, match="needs judge.model"):
        RewardSource(type="judge", url=url)
    with pytest.raises(ValueError, match="not both"):
        RewardSource(type="judge", url=url, path="x", judge={"model": "m"})


def test_judge_benchmark_quick_run_prints_throughput_and_the_call_table():
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "bench" / "bench_judge.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick"],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip  (the timeout is a hang guard)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {line.split("|")[1].strip(): line for line in proc.stdout.splitlines() if line.startswith("| ")}
    for label in ("local", "local, cache warm", "endpoint", "endpoint, cache cold", "endpoint, cache warm"):
        assert label in rows, proc.stdout
    assert rows["all"].split("|")[2:5] == [" 12 ", " 56 ", " 240 "]


def test_bench_takes_a_judge_as_a_model_and_scores_by_both_orders(chat_lm, tmp_path):
    import json

    from rewardlab.cli import main
    from rewardlab.judges.aggregate import bradley_terry
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.judges.judge import Judge
    from tests.test_bench_suites import RB1_ROWS
    from tests.tiny import write_jsonl

    data = write_jsonl(tmp_path / "rb.jsonl", RB1_ROWS)
    row = {"id": "1", "subset": "Focus", "prompt": "Say hi.", "chosen": ["Hello!"], "rejected": ["No.", "Bye.", "Go"]}
    rb2 = write_jsonl(tmp_path / "rb2.jsonl", [row])
    out = tmp_path / "out"
    suites = ["--suite", "rewardbench,rewardbench2", "--data", f"rewardbench={data}", "--data", f"rewardbench2={rb2}"]
    assert main(["bench", "--model", f"judge:{chat_lm}", *suites, "--out", str(out), "--device", "cpu"]) == 0
    results = {r["suite"]: r for r in json.loads((out / "bench.json").read_text())["results"]}
    assert results["rewardbench"]["model"] == "judge-chat" and results["rewardbench"]["inputs"].startswith("judge:")
    judge = Judge(LocalBackend(str(chat_lm), batch_size=16))  # the bench's batch: the same padded rows
    verdicts = judge.prefer_many([(row["prompt"], row["chosen"], row["rejected"]) for row in RB1_ROWS])
    for verdict, entry in zip(verdicts, results["rewardbench"]["scores"]):
        chosen, rejected = entry["chosen"][0], entry["rejected"][0]
        assert (chosen > rejected) == (verdict.p_a > 0.5)  # the pair's strengths follow P(chosen ≻ rejected)
        assert [chosen, rejected] == pytest.approx(bradley_terry(2, {(0, 1): verdict.p_a}), abs=1e-9)
    four = results["rewardbench2"]["scores"][0]
    assert len(four["chosen"]) == 1 and len(four["rejected"]) == 3
    assert sum(four["chosen"] + four["rejected"]) == pytest.approx(0, abs=1e-9)  # one group's centred strengths


def test_score_compare_and_rank_take_a_judge(chat_lm, tmp_path, capsys):
    import json

    from rewardlab.cli import main
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.judges.judge import Judge

    model = f"judge:{chat_lm}"
    judge = Judge(LocalBackend(str(chat_lm)))
    assert main(["compare", "--model", model, "--prompt", "Sky?", "--a", "blue", "--b", "green"]) == 0
    out = json.loads(capsys.readouterr().out)
    verdict = judge.prefer("Sky?", "blue", "green")
    assert out["p_a"] == pytest.approx(verdict.p_a, abs=1e-6) and out["orders_disagree"] == verdict.disagree
    assert out["better"] == ("a" if verdict.p_a > 0.5 else "b")
    assert main(["rank", "--model", model, "--prompt", "Sky?", "--response", "blue", "--response", "green",
                 "--response", "red"]) == 0  # fmt: skip
    ranked = json.loads(capsys.readouterr().out)
    strengths = judge.group_rewards("Sky?", ["blue", "green", "red"]).rewards
    assert [r["index"] for r in ranked] == sorted(range(3), key=lambda i: -strengths[i])
    rows = tmp_path / "in.jsonl"
    rows.write_text('{"prompt": "Sky?", "response": "blue"}\n{"prompt": "Sky?", "response": "green"}\n')
    assert main(["score", "--model", model, "--input", str(rows), "--output", str(tmp_path / "out.jsonl")]) == 0
    scores = [json.loads(line)["score"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert scores == pytest.approx(judge.score("Sky?", ["blue", "green"]), abs=1e-6)
    capsys.readouterr()
    assert main(["compare", "--model", model, "--prompt", "q", "--a", "x", "--b", "y", "--weights", "reward=1"]) == 2
    assert "a judge has none" in capsys.readouterr().err


def test_rl_refuses_a_judge_that_cannot_judge_before_writing_anything(chat_lm, tmp_path, capsys):
    pytest.importorskip("trl")
    import socket

    from rewardlab.cli import main
    from rewardlab.models.tiny import train_tokenizer
    from tests.test_rl import make_policy, rl_config
    from tests.tiny import write_jsonl

    make_policy(tmp_path)
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Describe tea in {n} words."} for n in range(2, 14)])
    train_tokenizer(["plain text"] * 20, 280, chat_template=False).save_pretrained(tmp_path / "base")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    cases = [
        ({"type": "judge", "path": str(tmp_path / "base")}, "not a chat model"),
        ({"type": "judge", "path": str(chat_lm), "judge": {"template": "{{ prompt }} {{ response_a }}"}},
         "must use {{ response_b }}"),
        ({"type": "judge", "url": dead, "judge": {"model": "m"}}, "cannot be reached"),
        ({"type": "judge", "url": dead, "api_key_env": "NO_SUCH_KEY_VAR", "judge": {"model": "m"}}, "NO_SUCH_KEY_VAR"),
    ]  # fmt: skip
    for i, (source, says) in enumerate(cases):
        assert main(["rl", "--config", str(rl_config(tmp_path, f"bad{i}", rewards=[source]))]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and not (tmp_path / f"bad{i}").exists(), err
