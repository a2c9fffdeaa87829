"""A judge wherever a reward model goes: ``judge:SPEC`` (a local chat model, an endpoint, a judge file) in
``eval``, ``bench``, ``score``/``rank`` and ``serve`` — each checked against the judge's own verdicts."""

from __future__ import annotations

import json
import math

import httpx
import pytest

from rewardlab.cli import main
from rewardlab.errors import ConfigError
from tests.test_judges import chat_lm, endpoint  # noqa: F401  (fixtures)
from tests.tiny import write_jsonl

PAIRS = [
    {"prompt": "What colour is the sky?", "chosen": "The sky is blue.", "rejected": "Green, mostly."},
    {"prompt": "Say hello.", "chosen": "Hello there!", "rejected": "No."},
    {"prompt": "Name a fruit.", "chosen": "An apple.", "rejected": "A hammer, of course."},
]
GROUP = {"prompt": "Pick a colour.", "responses": ["blue", "green", "red"], "ranks": [1, 2, 3]}


def test_a_judge_spec_names_a_model_an_endpoint_or_a_file(tmp_path, monkeypatch):
    from rewardlab.judges.spec import read_spec

    assert read_spec("judge:some/dir").path == "some/dir"
    remote = read_spec("judge:http://127.0.0.1:9/v1#qwen3-8b")
    assert (remote.url, remote.model) == ("http://127.0.0.1:9/v1", "qwen3-8b")
    with pytest.raises(ConfigError, match="after '#'"):
        read_spec("judge:http://127.0.0.1:9/v1")
    (tmp_path / "rubric.j2").write_text("Rate {{ response }} for {{ prompt }} from {{ low }} to {{ high }}.")
    (tmp_path / "judge.yaml").write_text(
        "path: model\nmode: pointwise\ncache: cache/verdicts.sqlite\ntemplate: {pointwise: rubric.j2}\nscale: [1, 5]\n"
    )
    (tmp_path / "model").mkdir()
    spec = read_spec(f"judge:{tmp_path / 'judge.yaml'}")  # relative paths are the file's folder's
    assert spec.path == str(tmp_path / "model") and spec.cache == str(tmp_path / "cache/verdicts.sqlite")
    assert spec.template == {"pointwise": str(tmp_path / "rubric.j2")} and spec.scale == (1, 5)
    (tmp_path / "bad.yaml").write_text("path: model\nshedule: swiss\n")
    with pytest.raises(ConfigError, match=r"(?s)bad.yaml.*shedule.*did you mean 'schedule'"):
        read_spec(str(tmp_path / "bad.yaml"))
    (tmp_path / "both.yaml").write_text("path: model\nurl: http://127.0.0.1:9/v1\nmodel: m\n")
    with pytest.raises(ConfigError, match="not both"):
        read_spec(str(tmp_path / "both.yaml"))


def test_commands_exit_2_on_a_bad_judge(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("path: x\ntemplate: '{{ prompt }} {{ response_a }}'\n")
    args = ["compare", "--prompt", "q", "--a", "x", "--b", "y", "--model"]
    assert main([*args, f"judge:{tmp_path / 'bad.yaml'}"]) == 2
    assert "must use {{ response_b }}" in capsys.readouterr().err  # the template is checked before any model loads
    assert main([*args, f"judge:{tmp_path / 'missing.yaml'}"]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main([*args, "judge:http://127.0.0.1:9/v1"]) == 2
    assert "after '#'" in capsys.readouterr().err


def test_eval_judges_pairs_in_both_orders_and_reads_its_probability_as_the_margin(chat_lm, tmp_path):  # noqa: F811
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.judges.judge import Judge
    from rewardlab.judges.scoring import logit

    write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    write_jsonl(tmp_path / "groups.jsonl", [GROUP])
    config = {"model_dirs": [f"judge:{chat_lm}"], "output_dir": str(tmp_path / "out"), "device": "cpu",
              "per_sample_scores": True, "plots": False,
              "eval_sets": [str(tmp_path / "pairs.jsonl"), str(tmp_path / "groups.jsonl")]}  # fmt: skip
    (tmp_path / "eval.yaml").write_text(json.dumps(config))
    assert main(["eval", "--config", str(tmp_path / "eval.yaml")]) == 0
    result = json.loads((tmp_path / "out" / "evaluation_results.json").read_text())
    rows = {r["eval_set"]: r for r in result["rows"]}
    judge = Judge(LocalBackend(str(chat_lm)))
    verdicts = judge.prefer_many([(p["prompt"], p["chosen"], p["rejected"]) for p in PAIRS])
    pairs = rows["pairs"]
    assert pairs["status"] == "ok" and pairs["model"] == "judge-chat" and pairs["checkpoint"] == "judge"
    wins = [1.0 if v.p_a > 0.5 else 0.5 if v.p_a == 0.5 else 0.0 for v in verdicts]
    assert pairs["accuracy"] == pytest.approx(sum(wins) / len(wins))
    assert pairs["margin_mean"] == pytest.approx(sum(logit(v.p_a) for v in verdicts) / 3, abs=1e-6)
    assert pairs["judge_pairs"] == 3 and pairs["judge_calls"] == 6  # both orders
    assert pairs["order_disagreement"] == pytest.approx(sum(v.disagree for v in verdicts) / 3)
    detail = next(d for d in result["details"] if d["eval_set"] == "pairs")
    margins = [c - r for c, r in zip(detail["scores"]["chosen"], detail["scores"]["rejected"])]
    assert [1 / (1 + math.exp(-m)) for m in margins] == pytest.approx([v.p_a for v in verdicts], abs=1e-6)
    strengths = judge.group_rewards(GROUP["prompt"], GROUP["responses"]).rewards
    group = next(d for d in result["details"] if d["eval_set"] == "groups")
    assert group["scores"]["groups"][0]["scores"] == pytest.approx(strengths, abs=1e-6)
    assert rows["groups"]["n_groups"] == 1 and rows["groups"]["judge_calls"] == 6  # 3 pairs, both orders


def test_bench_and_rank_take_an_endpoint_judge_through_a_judge_file(endpoint, tmp_path, capsys):  # noqa: F811
    from tests.test_bench_suites import RB1_ROWS

    fake, url = endpoint
    spec = tmp_path / "judge.json"
    spec.write_text(json.dumps({"url": url, "model": "m", "api_key_env": "JUDGE_KEY", "cache": "verdicts.sqlite"}))
    rows = [{**r, "chosen": "blue " + r["chosen"]} for r in RB1_ROWS]  # the fake judge prefers "blue"
    data = write_jsonl(tmp_path / "rb.jsonl", rows)
    args = ["bench", "--model", f"judge:{spec}", "--suite", "rewardbench", "--data", f"rewardbench={data}", "--out"]
    assert main([*args, str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "bench.json").read_text())["results"][0]
    n = len(rows)  # the fake judge follows the content, never the position
    assert result["judge"] == {"pairs": n, "orders_disagree": 0, "calls": 2 * n, "cache_hits": 0, "unparseable": 0}
    assert fake.requests == 2 * len(rows) and (tmp_path / "verdicts.sqlite").is_file()
    overall = next(r for r in result["rows"] if r["level"] == "overall")
    assert overall["value"] == 1.0
    assert overall["longer_chars"] is not None and overall["longer_tokens"] is None  # no tokenizer behind an endpoint
    assert main([*args, str(tmp_path / "again")]) == 0
    assert fake.requests == 2 * len(rows)  # the judge file's cache: no second call
    again = json.loads((tmp_path / "again" / "bench.json").read_text())["results"][0]["judge"]
    assert (again["calls"], again["cache_hits"]) == (0, 2 * n)
    capsys.readouterr()
    assert main(["rank", "--model", f"judge:{spec}", "--prompt", "Sky?", "--response", "green", "--response",
                 "blue sky"]) == 0  # fmt: skip
    ranked = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in ranked] == [1, 0] and ranked[0]["score"] > 0 > ranked[1]["score"]


def test_serve_a_judge_to_the_rewardlab_client_and_openrlhf(chat_lm, tmp_path):  # noqa: F811
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.judges.judge import Judge
    from rewardlab.serving.client import RewardClient
    from tests.servers import ServeProcess

    judge = Judge(LocalBackend(str(chat_lm)))
    with ServeProcess("--model", f"judge:{chat_lm}", log=tmp_path / "serve.log") as server:
        info = httpx.get(server.url + "/v1/model", timeout=60).json()
        assert info["kind"] == "judge" and info["mode"] == "pairwise" and info["backend"] == "local"
        with RewardClient(server.url) as client:
            scores = client.score("Sky?", ["blue", "green"])
            assert scores == pytest.approx(judge.score("Sky?", ["blue", "green"]), abs=1e-5)
            compared = client.compare("Sky?", "blue", "green")
            verdict = judge.prefer("Sky?", "blue", "green")
            assert compared["p_a"] == pytest.approx(verdict.p_a, abs=1e-5)
            assert compared["orders_disagree"] == verdict.disagree
            assert compared["score_a"] - compared["score_b"] == pytest.approx(
                math.log(verdict.p_a / (1 - verdict.p_a)), abs=1e-4
            )
            ranked = client.rank("Sky?", ["blue", "green", "red"])
            strengths = judge.group_rewards("Sky?", ["blue", "green", "red"]).rewards
            assert [r["index"] for r in ranked] == sorted(range(3), key=lambda i: -strengths[i])
        # OpenRLHF: two prompts' queries interleaved; each prompt's completions are judged together.
        prompts = ["Sky? ", "Tea? ", "Sky? ", "Tea? ", "Sun? "]
        answers = ["blue", "hot", "green", "cold", "bright"]
        body = {"query": [p + a for p, a in zip(prompts, answers)], "prompts": prompts}
        got = httpx.post(server.url + "/get_reward", json=body, timeout=120).json()
        sky = judge.group_rewards("Sky? ", ["blue", "green"]).rewards
        tea = judge.group_rewards("Tea? ", ["hot", "cold"]).rewards
        assert got["rewards"] == pytest.approx([sky[0], tea[0], sky[1], tea[1], 0.0], abs=1e-5)
        refused = httpx.post(server.url + "/get_reward", json={"query": body["query"]}, timeout=60)
        assert refused.status_code == 422 and refused.json()["error"]["field"] == "prompts"
        weighted = httpx.post(server.url + "/v1/score", json={"items": [{"prompt": "q", "response": "a"}],
                                                              "weights": {"reward": 1}}, timeout=60)  # fmt: skip
        assert weighted.status_code == 422 and "a judge has none" in weighted.json()["error"]["message"]
        assert server.stop() == 0


def test_a_pointwise_judge_file_ranks_and_rewards_by_its_ratings(chat_lm, tmp_path):  # noqa: F811
    from rewardlab.config.schema import ServeConfig
    from rewardlab.judges.backends import LocalBackend
    from rewardlab.judges.judge import Judge
    from rewardlab.judges.scoring import JudgeScorer
    from rewardlab.serving.judge_app import create_judge_app
    from tests.servers import AppServer

    (tmp_path / "judge.yaml").write_text(f"path: {chat_lm}\nmode: pointwise\nscale: [1, 5]\n")
    scorer = JudgeScorer(f"judge:{tmp_path / 'judge.yaml'}")
    judge = Judge(LocalBackend(str(chat_lm)), scale=(1, 5))
    ratings = judge.score("Sky?", ["blue", "green", "red"])
    assert scorer.score_groups([("Sky?", ["blue", "green", "red"])])[0] == pytest.approx(ratings, abs=1e-6)
    with AppServer(create_judge_app(scorer, ServeConfig(model="judge", port=0))) as server:
        got = httpx.post(server.url + "/get_reward", json={"query": ["blue", "green", "red"]}, timeout=60).json()
        no_prompt = judge.score("", ["blue", "green", "red"])
        assert got["rewards"] == pytest.approx(no_prompt, abs=1e-5)  # pointwise: no prompts needed
        compared = httpx.post(server.url + "/v1/compare", json={"prompt": "Sky?", "a": "blue", "b": "green"},
                              timeout=60).json()  # fmt: skip
        assert compared["p_a"] == pytest.approx(1 / (1 + math.exp(ratings[1] - ratings[0])), abs=1e-5)
        assert "orders_disagree" not in compared  # one rating per response: no order to swap
