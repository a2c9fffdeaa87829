"""Attribute heads wherever scores go: `score`/`compare`/`rank` print each response's attributes and, with
`--weights`, the combined reward they then order by; the server returns them beside the scores (and /get_reward in
its extra_logs); RL reads one head as a reward source. Every value is checked against
:meth:`Scorer.score_with_attributes` and :func:`combine_attributes`."""

from __future__ import annotations

import json
import math

import pytest

from tests.test_attributes import ATTRIBUTES, PROMPT, RESPONSES, train_heads_and_plain

WEIGHTS = {"reward": 1.0, "words": -2.0, "quality": 0.5}
WEIGHTS_FLAG = "reward=1,words=-2,quality=0.5"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny decoder RM with attribute heads (quality, words) and one without: (attribute export, plain export)."""
    return train_heads_and_plain(tmp_path_factory.mktemp("attributes-use"))


@pytest.fixture(scope="module")
def expected(models):
    """The Scorer's scores and attributes of PROMPT × RESPONSES, and the combined rewards of WEIGHTS."""
    from rewardlab.models.scorer import Scorer, combine_attributes

    scores, attributes = Scorer.from_pretrained(str(models[0])).score_with_attributes(PROMPT, RESPONSES)
    combined = [combine_attributes(s, a, WEIGHTS) for s, a in zip(scores, attributes)]
    # The weights must reorder: otherwise "ranked by combined" would be indistinguishable from "by score".
    assert sorted(range(4), key=lambda i: -combined[i]) != sorted(range(4), key=lambda i: -scores[i])
    return scores, attributes, combined


def hand_combined(score: float, attributes: dict[str, float]) -> float:
    return 1.0 * score - 2.0 * attributes["words"] + 0.5 * attributes["quality"]


def test_score_writes_the_attributes_and_the_combined_reward(models, expected, tmp_path, capsys):
    from rewardlab.cli import main

    scores, attributes, combined = expected
    rows = tmp_path / "in.jsonl"
    rows.write_text("".join(json.dumps({"prompt": PROMPT, "response": r}) + "\n" for r in RESPONSES))
    out = tmp_path / "out.jsonl"
    assert main(["score", "--model", str(models[0]), "--input", str(rows), "--output", str(out)]) == 0
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["score"] for r in got] == pytest.approx(scores, abs=1e-6)
    for r, attrs in zip(got, attributes):
        assert list(r["attributes"]) == list(ATTRIBUTES) and r["attributes"] == pytest.approx(attrs, abs=1e-6)
        assert "combined" not in r
    capsys.readouterr()
    argv = ["score", "--model", str(models[0]), "--input", str(rows), "--output", str(out), "--weights", WEIGHTS_FLAG]
    assert main(argv) == 0
    assert "combined = 1·reward - 2·words + 0.5·quality" in capsys.readouterr().err
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["score"] for r in got] == pytest.approx(scores, abs=1e-6)  # the score is never weighted
    assert [r["combined"] for r in got] == pytest.approx([hand_combined(s, a) for s, a in zip(scores, attributes)],
                                                         abs=1e-5)  # fmt: skip
    plain = tmp_path / "plain.jsonl"
    assert main(["score", "--model", str(models[1]), "--input", str(rows), "--output", str(plain)]) == 0
    assert all("attributes" not in json.loads(line) for line in plain.read_text().splitlines())


def test_rank_and_compare_order_by_the_combined_reward_with_weights(models, expected, capsys):
    from rewardlab.cli import main

    scores, attributes, combined = expected
    argv = ["rank", "--model", str(models[0]), "--prompt", PROMPT, *[x for r in RESPONSES for x in ("--response", r)]]
    assert main(argv) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -scores[i])
    assert {r["index"]: r["attributes"]["words"] for r in ranked} == pytest.approx(
        {i: a["words"] for i, a in enumerate(attributes)}, abs=1e-6
    )
    assert main([*argv, "--weights", "reward=1,words=-2", "--weights", "quality=0.5"]) == 0  # the flag repeats
    text = capsys.readouterr().out
    ranked = json.loads(text)
    assert len(text.splitlines()) == len(RESPONSES) + 2  # one line per response
    assert [r["index"] for r in ranked] == sorted(range(4), key=lambda i: -combined[i])
    assert [r["combined"] for r in ranked] == pytest.approx(sorted(combined, reverse=True), abs=1e-5)
    assert [r["score"] for r in ranked] == pytest.approx([scores[r["index"]] for r in ranked], abs=1e-6)

    # a and b where the score and the combined reward disagree: the weights decide `better` and `p_a`.
    a, b = next((i, j) for i in range(4) for j in range(4) if scores[i] > scores[j] and combined[i] < combined[j])
    base = ["compare", "--model", str(models[0]), "--prompt", PROMPT, "--a", RESPONSES[a], "--b", RESPONSES[b]]
    assert main(base) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["better"] == "a" and c["attributes_a"] == pytest.approx(attributes[a], abs=1e-6) and "combined_a" not in c
    assert main([*base, "--weights", WEIGHTS_FLAG]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["better"] == "b" and c["score_a"] == pytest.approx(scores[a], abs=1e-6)
    assert c["combined_a"] == pytest.approx(combined[a], abs=1e-5)
    assert c["p_a"] == pytest.approx(1 / (1 + math.exp(-(combined[a] - combined[b]))), abs=1e-5)


@pytest.mark.parametrize(
    ("which", "weights", "says"),
    [
        (0, "verbosity=1", "unknown weight 'verbosity': the model scores reward, quality, words"),
        (0, "quality", "'quality' is not NAME=WEIGHT"),
        (0, "quality=high", "quality='high' is not a number"),
        (0, "quality=1,quality=2", "'quality' is given twice"),
        (0, "quality=nan", "quality=nan is not a finite number"),
        (1, "reward=1", "this model has no attribute heads"),
    ],
)
def test_bad_weights_exit_2_with_one_message_and_write_nothing(models, tmp_path, capsys, which, weights, says):
    from rewardlab.cli import main

    rows = tmp_path / "in.jsonl"
    rows.write_text(json.dumps({"prompt": PROMPT, "response": RESPONSES[0]}) + "\n")
    out = tmp_path / "out.jsonl"
    model = str(models[which])
    for argv in (["score", "--input", str(rows), "--output", str(out)],
                 ["rank", "--prompt", PROMPT, "--response", "a", "--response", "b"],
                 ["compare", "--prompt", PROMPT, "--a", "a", "--b", "b"]):  # fmt: skip
        assert main([*argv, "--model", model, "--weights", weights]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and "Traceback" not in captured.err
        assert captured.err.count("error:") == 1 and f"--weights: {says}" in captured.err
    assert not out.exists()


def test_the_server_returns_the_attributes_and_combines_weights(models, expected):
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from rewardlab.models.scorer import Scorer
    from rewardlab.serving.client import RewardClient
    from tests.servers import ThreadServer

    scores, attributes, combined = expected
    with ThreadServer(Scorer.from_pretrained(str(models[0]))) as server:
        info = httpx.get(f"{server.url}/v1/model", timeout=120).json()
        assert info["attributes"] == ATTRIBUTES and list(info["attributes"]) == ["quality", "words"]
        items = [{"prompt": PROMPT, "response": r} for r in RESPONSES]
        r = httpx.post(f"{server.url}/v1/score", json={"items": items}, timeout=120).json()
        assert r["scores"] == pytest.approx(scores, abs=1e-5) and "combined" not in r
        assert [list(a) for a in r["attributes"]] == [["quality", "words"]] * 4
        assert r["attributes"] == [pytest.approx(a, abs=1e-5) for a in attributes]
        r = httpx.post(f"{server.url}/v1/score", json={"items": items, "weights": WEIGHTS}, timeout=120).json()
        assert r["scores"] == pytest.approx(scores, abs=1e-5)  # `scores` keep their meaning; `combined` is added
        assert r["combined"] == pytest.approx([hand_combined(s, a) for s, a in zip(scores, attributes)], abs=1e-5)
        body = {"prompt": PROMPT, "responses": RESPONSES, "weights": WEIGHTS}
        ranking = httpx.post(f"{server.url}/v1/rank", json=body, timeout=120).json()["ranking"]
        assert [x["index"] for x in ranking] == sorted(range(4), key=lambda i: -combined[i])
        assert [x["combined"] for x in ranking] == pytest.approx(sorted(combined, reverse=True), abs=1e-5)
        body = {"prompt": PROMPT, "a": RESPONSES[0], "b": RESPONSES[1], "weights": WEIGHTS}
        c = httpx.post(f"{server.url}/v1/compare", json=body, timeout=120).json()
        assert c["combined_b"] == pytest.approx(combined[1], abs=1e-5)
        assert c["p_a"] == pytest.approx(1 / (1 + math.exp(-(combined[0] - combined[1]))), abs=1e-5)
        body = {"query": [PROMPT + x for x in RESPONSES], "prompts": [PROMPT] * 4}
        g = httpx.post(f"{server.url}/get_reward", json=body, timeout=120).json()
        assert g["rewards"] == pytest.approx(scores, abs=1e-5) and all(isinstance(x, float) for x in g["rewards"])
        for name in ATTRIBUTES:
            assert g["extra_logs"][f"rewardlab_attribute_{name}"] == pytest.approx([a[name] for a in attributes],
                                                                                    abs=1e-5)  # fmt: skip
        for bad, says in (({"verbosity": 1}, "unknown weight 'verbosity'"), ({"quality": "x"}, "valid number")):
            r = httpx.post(f"{server.url}/v1/score", json={"items": items, "weights": bad}, timeout=120)
            assert r.status_code == 422 and says in r.json()["error"]["message"]
            assert r.json()["error"]["field"].startswith("weights")
        with RewardClient(server.url) as client:
            got_scores, got_attrs = client.score_with_attributes(PROMPT, RESPONSES)
            assert got_scores == pytest.approx(scores, abs=1e-5)
            assert got_attrs == [pytest.approx(a, abs=1e-5) for a in attributes]
            assert client.score(PROMPT, RESPONSES, weights=WEIGHTS) == pytest.approx(combined, abs=1e-5)
            assert [x["index"] for x in client.rank(PROMPT, RESPONSES, weights=WEIGHTS)] == sorted(
                range(4), key=lambda i: -combined[i]
            )
        with RewardClient(f"{server.url}/get_reward") as client:  # OpenRLHF's contract: attributes from extra_logs
            assert client.score_with_attributes(PROMPT, RESPONSES)[1] == [pytest.approx(a, abs=1e-5)
                                                                          for a in attributes]  # fmt: skip
            with pytest.raises(ValueError, match="carries no attribute weights"):
                client.score(PROMPT, RESPONSES, weights=WEIGHTS)
    with ThreadServer(Scorer.from_pretrained(str(models[1]))) as server:
        assert httpx.get(f"{server.url}/v1/model", timeout=120).json()["attributes"] is None
        r = httpx.post(f"{server.url}/v1/score", json={"items": items}, timeout=120).json()
        assert "attributes" not in r
        r = httpx.post(f"{server.url}/v1/rank", json={"prompt": PROMPT, "responses": RESPONSES,
                                                      "weights": {"reward": 1}}, timeout=120)  # fmt: skip
        assert r.status_code == 422 and "no attribute heads" in r.json()["error"]["message"]
        with RewardClient(server.url) as client:
            assert client.score_with_attributes(PROMPT, RESPONSES)[1] == [{}] * 4


def test_each_attribute_is_its_own_rl_reward_source_from_one_loaded_model(models, expected, monkeypatch):
    pytest.importorskip("trl")
    from rewardlab.config.schema import RewardSource
    from rewardlab.errors import ConfigError
    from rewardlab.models.scorer import Scorer
    from rewardlab.rl.sources import build_rewards

    scores, attributes, _ = expected
    path = str(models[0])
    sources = [RewardSource(type="model", path=path, name="rm"),
               RewardSource(type="model", path=path, attribute="quality", weight=0.5),
               RewardSource(type="model", path=path, attribute="words", weight=-2.0)]  # fmt: skip
    funcs, weights = build_rewards(sources)
    assert [f.__name__ for f in funcs] == ["rm", "quality", "words"] and weights == [1.0, 0.5, -2.0]
    assert funcs[1].scorer is funcs[0].scorer is funcs[2].scorer  # one copy of the weights
    calls = []
    original = Scorer.score_items
    monkeypatch.setattr(Scorer, "score_items", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    prompts, completions = [PROMPT] * len(RESPONSES), list(RESPONSES)
    values = [f(prompts=prompts, completions=completions) for f in funcs]
    assert len(calls) == 1  # one forward pass a step for the three sources
    assert values[0] == pytest.approx(scores, abs=1e-6)
    assert values[1] == pytest.approx([a["quality"] for a in attributes], abs=1e-6)
    assert values[2] == pytest.approx([a["words"] for a in attributes], abs=1e-6)
    with pytest.raises(ConfigError, match=r"attribute 'verbosity': .* has no such head \(its attribute heads: "
                       r"quality, words\)"):  # fmt: skip
        build_rewards([RewardSource(type="model", path=path, attribute="verbosity")])
    with pytest.raises(ConfigError, match=r"its attribute heads: none"):
        build_rewards([RewardSource(type="model", path=str(models[1]), attribute="quality")])
    for bad, says in (({"type": "rule", "rule": "length"}, "a rule has none"),
                      ({"type": "model", "path": path, "normalize": True}, "0–1 scale"),
                      ({"type": "model", "path": path, "uncertainty_penalty": 1}, "do not combine"),
                      ({"type": "remote", "url": "http://127.0.0.1:1/get_reward"}, "not .../get_reward")):  # fmt: skip
        with pytest.raises(ValueError, match=says):
            RewardSource(**bad, attribute="quality")


def test_an_attribute_the_model_lacks_exits_2_before_the_run(models, tmp_path, capsys):
    pytest.importorskip("trl")
    from rewardlab.cli import main
    from tests.test_rl import rl_config
    from tests.tiny import write_jsonl

    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Describe tea."}] * 4)
    (tmp_path / "policy").mkdir()  # never loaded: the check comes first
    for model, heads in ((models[0], "quality, words"), (models[1], "none")):
        rewards = [{"type": "model", "path": str(model), "attribute": "verbosity"}]
        assert main(["rl", "--config", str(rl_config(tmp_path, "run", rewards=rewards))]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and f"has no such head (its attribute heads: {heads}" in err
        assert not (tmp_path / "run").exists()


def test_a_remote_attribute_source_reads_the_served_head(models, expected):
    pytest.importorskip("fastapi")
    pytest.importorskip("trl")
    from rewardlab.config.schema import RewardSource, RLConfig
    from rewardlab.errors import ConfigError
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.rl import check_remote_rewards
    from rewardlab.rl.sources import build_rewards
    from tests.servers import ThreadServer

    _, attributes, _ = expected
    with ThreadServer(Scorer.from_pretrained(str(models[0]))) as server:
        source = RewardSource(type="remote", url=server.url, attribute="words", weight=-1.0)
        check_remote_rewards(RLConfig.model_construct(rewards=[source]))
        funcs, weights = build_rewards([source])
        assert funcs[0].__name__ == "words" and weights == [-1.0]
        got = funcs[0](prompts=[PROMPT] * len(RESPONSES), completions=list(RESPONSES))
        funcs[0].close()
        assert got == pytest.approx([a["words"] for a in attributes], abs=1e-5)
        bad = RewardSource(type="remote", url=server.url, attribute="verbosity")
        with pytest.raises(ConfigError, match=r"has no such head \(its attribute heads: quality, words"):
            check_remote_rewards(RLConfig.model_construct(rewards=[bad]))


def test_a_two_step_grpo_run_logs_two_attribute_rewards_apart(models, tmp_path):
    """A few seconds on CPU (a tiny policy, 4 completions a step): not marked slow."""
    pytest.importorskip("trl")
    from rewardlab.cli import main
    from tests.test_rl import make_policy, metrics, rl_config
    from tests.tiny import write_jsonl

    make_policy(tmp_path)
    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"Describe tea in {n} words."} for n in range(2, 14)])
    rewards = [{"type": "model", "path": str(models[0]), "attribute": "quality", "weight": 1.0},
               {"type": "model", "path": str(models[0]), "attribute": "words", "weight": -0.5}]  # fmt: skip
    assert main(["rl", "--config", str(rl_config(tmp_path, "run", rewards=rewards))]) == 0
    train = [r for r in metrics(tmp_path / "run") if "rewards/quality/mean" in r]
    assert [r["step"] for r in train] == [1, 2]
    for r in train:
        assert "rewards/words/mean" in r and "rewards/quality/std" in r
        assert r["reward"] == pytest.approx(r["rewards/quality/mean"] - 0.5 * r["rewards/words/mean"], abs=1e-4)
