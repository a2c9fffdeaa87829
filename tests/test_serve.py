"""`rewardlab serve`: every route over real HTTP (uvicorn on 127.0.0.1, ephemeral port), text and vision,
OpenRLHF's request shape, normalization, auth, limits and a corpus of bad requests."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from rewardlab.cli import main  # noqa: E402
from rewardlab.data.synthetic import make_pairs  # noqa: E402
from rewardlab.errors import ConfigError  # noqa: E402
from rewardlab.models.scorer import Scorer  # noqa: E402
from rewardlab.serving.app import split_queries  # noqa: E402
from tests.servers import ServeProcess, ThreadServer, metric, train_tiny_rm  # noqa: E402
from tests.tiny import make_tiny, write_jsonl  # noqa: E402

PAIRS = make_pairs(24, seed=31)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return train_tiny_rm(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def scorer(model_dir) -> Scorer:
    return Scorer.from_pretrained(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def server(scorer):
    with ThreadServer(scorer) as s:
        yield s


def post(url: str, body, **kw) -> httpx.Response:
    return httpx.post(url, json=body, timeout=120, **kw)


def test_score_compare_rank_and_info_routes(server, scorer):
    prompts = [p.prompt for p in PAIRS[:6]]
    responses = [p.chosen for p in PAIRS[:6]]
    expected = scorer.score(prompts, responses)

    r = post(f"{server.url}/v1/score", {"items": [{"prompt": p, "response": x} for p, x in zip(prompts, responses)]})
    assert r.status_code == 200 and r.json()["normalized"] is False
    assert r.json()["scores"] == pytest.approx(expected, abs=1e-5)

    r = post(
        f"{server.url}/v1/score", {"items": [{"prompt": prompts[0], "response": responses[0]}], "normalize": True}
    )
    mean, std = scorer.normalization.mean, scorer.normalization.std
    assert r.json() == {"scores": [pytest.approx((expected[0] - mean) / std, abs=1e-4)], "normalized": True}

    p = PAIRS[0]
    r = post(f"{server.url}/v1/compare", {"prompt": p.prompt, "a": p.chosen, "b": p.rejected}).json()
    a, b = scorer.score([p.prompt] * 2, [p.chosen, p.rejected])
    assert r["score_a"] == pytest.approx(a, abs=1e-5) and r["score_b"] == pytest.approx(b, abs=1e-5)
    assert r["p_a"] == pytest.approx(1 / (1 + math.exp(b - a)), abs=1e-5) and r["better"] == ("a" if a >= b else "b")

    candidates = [PAIRS[1].chosen, PAIRS[1].rejected, PAIRS[2].chosen]
    r = post(f"{server.url}/v1/rank", {"prompt": PAIRS[1].prompt, "responses": candidates}).json()
    direct = scorer.score(PAIRS[1].prompt, candidates)
    assert [x["index"] for x in r["ranking"]] == sorted(range(3), key=lambda i: -direct[i]) and r[
        "normalized"
    ] is False
    assert [x["score"] for x in r["ranking"]] == pytest.approx(sorted(direct, reverse=True), abs=1e-5)

    # Chat messages are rendered by the model's template, as in training and `rewardlab score`.
    chat_p = [{"role": "user", "content": p.prompt}]
    chat_r = [{"role": "assistant", "content": p.chosen}]
    r = post(f"{server.url}/v1/score", {"items": [{"prompt": chat_p, "response": chat_r}]}).json()
    assert r["scores"] == pytest.approx(scorer.score([chat_p], [chat_r]), abs=1e-5)

    info = httpx.get(f"{server.url}/v1/model").json()
    assert info["modality"] == "text" and info["pooling"] == "last" and info["model_type"] == "qwen2"
    assert info["max_length"] == 96 and info["input_format"]["recipe"] == "tokenizer(prompt + response)"
    assert info["normalization"] == {k: pytest.approx(getattr(scorer.normalization, k)) for k in ("mean", "std")}
    assert info["dtype"] == "float32" and info["limits"]["max_items_per_request"] == 1024
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok", "model": "test-model"}
    openapi = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/score", "/v1/compare", "/v1/rank", "/get_reward", "/health", "/v1/model"} <= set(openapi["paths"])
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_openrlhf_get_reward_contract(server, scorer, caplog):
    """OpenRLHF posts {query, prompts, labels} and reads {rewards, scores, extra_logs}; the query is split at its
    prompt and scored as the model was trained; a trailing EOS of the decoded text is removed."""
    pairs = PAIRS[:4]
    eos = scorer.tokenizer.eos_token
    queries = [p.prompt + p.chosen + eos for p in pairs]
    body = {"query": queries, "prompts": [p.prompt for p in pairs], "labels": [None] * 4}
    r = post(f"{server.url}/get_reward", body)
    assert r.status_code == 200 and set(r.json()) == {"rewards", "scores", "extra_logs"}
    expected = scorer.score([p.prompt for p in pairs], [p.chosen for p in pairs])
    got = r.json()
    assert got["rewards"] == pytest.approx(expected, abs=1e-5) and got["scores"] == got["rewards"]
    assert got["extra_logs"]["rewardlab_unsplit"] == [0.0] * 4

    # Normalized rewards (the flag OpenRLHF's remote path ignores), raw scores beside them.
    mean, std = scorer.normalization.mean, scorer.normalization.std
    got = post(f"{server.url}/get_reward", {**body, "normalize": True}).json()
    assert got["rewards"] == pytest.approx([(s - mean) / std for s in expected], abs=1e-4)
    assert got["scores"] == pytest.approx(expected, abs=1e-5)

    # Without prompts a query is scored whole: for a decoder RM, the same tokens.
    got = post(f"{server.url}/get_reward", {"query": queries}).json()
    assert got["rewards"] == pytest.approx(expected, abs=1e-5)
    # Only a query that does not start with its prompt is worth a warning.
    assert not [r for r in caplog.records if "do not start with their prompt" in r.getMessage()]
    got = post(f"{server.url}/get_reward", {"query": [queries[0], "elsewhere"], "prompts": [pairs[0].prompt] * 2})
    assert got.json()["extra_logs"]["rewardlab_unsplit"] == [0.0, 1.0]
    assert [r.getMessage() for r in caplog.records if "their prompt" in r.getMessage()] == [
        "1 of 2 queries do not start with their prompt; scored whole"
    ]


def test_split_queries_falls_back_to_the_whole_query():
    assert split_queries(["PQ", "xQ", "P"], ["P", "P", "P"]) == (["P", "", "P"], ["Q", "xQ", ""], [0.0, 1.0, 0.0])
    assert split_queries(["PQ"], None) == ([""], ["PQ"], [0.0])


def test_one_score_everywhere(model_dir, scorer, server, tmp_path):
    """The Scorer, `rewardlab score`, `rewardlab eval` and the server give the same number for the same input."""
    pairs = PAIRS[:8]
    direct = scorer.score([p.prompt for p in pairs], [p.chosen for p in pairs])

    rows = write_jsonl(tmp_path / "rows.jsonl", [{"prompt": p.prompt, "response": p.chosen} for p in pairs])
    assert main(["score", "--model", str(model_dir), "--input", str(rows), "--output", str(tmp_path / "s.jsonl")]) == 0
    cli = [json.loads(x)["score"] for x in (tmp_path / "s.jsonl").read_text().splitlines()]

    data = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
                                                   for p in pairs])  # fmt: skip
    cfg = tmp_path / "eval.yaml"
    out = tmp_path / "eval_out"
    cfg.write_text(json.dumps({"model_dirs": [str(model_dir)], "eval_sets": [str(data)], "output_dir": str(out),
                               "per_sample_scores": True, "plots": False}))  # fmt: skip
    assert main(["eval", "--config", str(cfg)]) == 0
    evaluated = json.loads((out / "evaluation_results.json").read_text())["details"][0]["scores"]["chosen"]

    items = [{"prompt": p.prompt, "response": p.chosen} for p in pairs]
    served = post(f"{server.url}/v1/score", {"items": items}).json()["scores"]
    for other in (cli, evaluated, served):
        assert other == pytest.approx(direct, abs=1e-5)


def test_concurrent_requests_are_batched_together(scorer):
    """Requests arriving together are coalesced into model batches; each caller gets its own scores."""
    with ThreadServer(scorer, max_wait_ms=200, max_batch_size=64) as s:
        results: dict[int, list[float]] = {}

        def call(i: int) -> None:
            p = PAIRS[i]
            results[i] = post(f"{s.url}/v1/score", {"items": [{"prompt": p.prompt, "response": p.chosen}]}).json()[
                "scores"
            ]

        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        for i, got in results.items():
            assert got == pytest.approx(scorer.score(PAIRS[i].prompt, [PAIRS[i].chosen]), abs=1e-5)
        assert len(results) == 12
        metrics = httpx.get(f"{s.url}/metrics").text
    count = metric(metrics, "rewardlab_batch_size_count")
    assert metric(metrics, "rewardlab_scored_responses_total") == 12 and count < 12  # fewer model calls than requests
    assert metric(metrics, 'rewardlab_requests_total{route="/v1/score",status="200"}') == 12


def test_overload_answers_503_with_retry_after_and_keeps_serving(scorer):
    with ThreadServer(scorer, max_queue_items=4, max_wait_ms=300, max_batch_size=4) as s:
        codes: list[int] = []
        retry_after: list[str] = []
        items = [{"prompt": p.prompt, "response": p.chosen} for p in PAIRS[:3]]

        def call() -> None:
            r = post(f"{s.url}/v1/score", {"items": items})
            codes.append(r.status_code)
            if r.status_code == 503:
                retry_after.append(r.headers.get("retry-after"))
                assert r.json()["error"]["type"] == "overloaded"

        threads = [threading.Thread(target=call) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert len(codes) == 16 and set(codes) <= {200, 503}
        assert codes.count(503) > 0 and codes.count(200) > 0 and set(retry_after) == {"1"}
        assert post(f"{s.url}/v1/score", {"items": items}).status_code == 200  # still serving


def test_api_key(scorer, monkeypatch):
    monkeypatch.setenv("RL_TEST_KEY", "s3cret")
    with ThreadServer(scorer, api_key_env="RL_TEST_KEY") as s:
        body = {"items": [{"prompt": "p", "response": "r"}]}
        assert post(f"{s.url}/v1/score", body).status_code == 401
        wrong = post(f"{s.url}/v1/score", body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["error"]["message"]
        assert post(f"{s.url}/v1/score", body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{s.url}/metrics").status_code == 401
        assert httpx.get(f"{s.url}/health").status_code == 200  # probes need no key
    monkeypatch.delenv("RL_TEST_KEY")
    with pytest.raises(ConfigError, match="RL_TEST_KEY"):
        ThreadServer(scorer, api_key_env="RL_TEST_KEY")


def png_bytes(color=(200, 30, 30), size=(24, 24)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def vision_scorer(tiny_vlms, tmp_path_factory):
    import torch

    from rewardlab.models.checkpoint import save_reward_model
    from rewardlab.models.export_meta import ExportMeta
    from rewardlab.models.vision import ProcessorBundle
    from tests.test_vision import scorer_for

    scorer = scorer_for(tiny_vlms["qwen2_vl"])
    with torch.no_grad():
        for p in scorer.model.backbone.score.parameters():
            p.add_(0.3)
    bundle = ProcessorBundle(scorer.tokenizer, scorer.transform.image_processor)
    out = save_reward_model(
        scorer.model, bundle, tmp_path_factory.mktemp("vserve") / "model", ExportMeta(max_length=256)
    )
    return Scorer.from_pretrained(str(out), device="cpu")


@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "red.png").write_bytes(png_bytes())
    (root / "sub").mkdir()
    (root / "sub" / "blue.png").write_bytes(png_bytes((20, 20, 220)))
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(png_bytes())
    (root / "escape.png").symlink_to(outside)
    return root


def test_vision_model_scores_base64_paths_and_shares_equal_images(vision_scorer, image_root):
    red, blue = png_bytes(), png_bytes((20, 20, 220))
    with ThreadServer(vision_scorer, image_root=str(image_root)) as s:
        items = [
            {"prompt": "Is the page red?", "response": "yes", "images": [b64(red)]},
            {"prompt": "Is the page red?", "response": "no", "images": [base64.b64encode(red).decode()]},
            {"prompt": "Is the page red?", "response": "yes", "images": [{"path": "sub/blue.png"}]},
            {"prompt": "Is the page red?", "response": "yes", "images": [{"base64": base64.b64encode(blue).decode()}]},
        ]
        r = post(f"{s.url}/v1/score", {"items": items})
        assert r.status_code == 200, r.text
        got = r.json()["scores"]
        expected = vision_scorer.score(
            ["Is the page red?"] * 4,
            ["yes", "no", "yes", "yes"],
            images=[({"bytes": red},), ({"bytes": red},), ({"bytes": blue},), ({"bytes": blue},)],
        )
        assert got == pytest.approx(expected, abs=1e-5)
        assert got[2] == pytest.approx(got[3], abs=1e-6)  # a path and base64 of the same image agree
        info = httpx.get(f"{s.url}/v1/model").json()
        assert info["modality"] == "vision" and info["input_format"]["layout"] == "vision"
        r = post(f"{s.url}/v1/compare", {"prompt": "Is the page red?", "a": "yes", "b": "no", "images": [b64(red)]})
        assert r.json()["score_a"] == pytest.approx(got[0], abs=1e-5)
        assert r.json()["score_b"] == pytest.approx(got[1], abs=1e-5)
    # Equal images in one call are processed once: both items carry the same content key.
    items = vision_scorer.encode(["p", "p"], ["a", "b"], images=[({"bytes": red},), ({"bytes": red},)])
    assert items[0].key == items[1].key is not None


def test_image_urls_only_when_allowed(vision_scorer, tmp_path):
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_):
            pass

    (tmp_path / "red.png").write_bytes(png_bytes())
    files = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{files.server_address[1]}/red.png"
    item = {"prompt": "p", "response": "r", "images": [url]}
    try:
        with ThreadServer(vision_scorer) as s:
            r = post(f"{s.url}/v1/score", {"items": [item]})
            assert r.status_code == 422 and "allow_urls" in r.json()["error"]["message"]
        with ThreadServer(vision_scorer, allow_urls=True) as s:
            r = post(f"{s.url}/v1/score", {"items": [item]})
            assert r.status_code == 200
            assert r.json()["scores"] == pytest.approx(
                vision_scorer.score(["p"], ["r"], images=[({"bytes": png_bytes()},)]), abs=1e-5
            )
    finally:
        files.shutdown()


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


TEXT_CASES = [
    # (name, route, body (dict → JSON; bytes → raw), status, field the error names or None)
    ("malformed JSON", "/v1/score", b'{"items": [{', 422, None),
    ("not UTF-8", "/v1/score", b"\xff\xfe\x00", 422, None),
    ("lone surrogate", "/v1/score", b'{"items": [{"prompt": "p", "response": "r\\ud800"}]}', 422, "items[0]"),
    ("body is a list", "/v1/score", [1, 2], 422, None),
    ("no items", "/v1/score", {}, 422, "items"),
    ("empty items", "/v1/score", {"items": []}, 422, "items"),
    ("items not a list", "/v1/score", {"items": "x"}, 422, "items"),
    ("missing response", "/v1/score", {"items": [{"prompt": "p"}]}, 422, "items[0].response"),
    ("response a number", "/v1/score", {"items": [{"prompt": "p", "response": 5}]}, 422, "items[0].response"),
    ("empty response", "/v1/score", {"items": [{"prompt": "p", "response": ""}]}, 422, "items[0].response"),
    ("unknown field", "/v1/score", {"items": [{"prompt": "p", "response": "r", "x": 1}]}, 422, "items[0].x"),
    (
        "normalize not a bool",
        "/v1/score",
        {"items": [{"prompt": "p", "response": "r"}], "normalize": "y"},
        422,
        "normalize",
    ),
    (
        "message without role",
        "/v1/score",
        {"items": [{"prompt": [{"content": "hi"}], "response": "r"}]},
        422,
        "items[0].prompt[0].role",
    ),
    ("too many items", "/v1/score", {"items": [{"prompt": "p", "response": "r"}] * 5}, 413, "items"),
    ("text too long", "/v1/score", {"items": [{"prompt": "p", "response": "r" * 2001}]}, 422, "items[0].response"),
    ("huge body", "/v1/score", {"items": [{"prompt": "p" * 300_000, "response": "r"}]}, 413, None),
    (
        "images for a text model",
        "/v1/score",
        {"items": [{"prompt": "p", "response": "r", "images": ["aGk="]}]},
        422,
        "items[0].images",
    ),
    ("compare without b", "/v1/compare", {"prompt": "p", "a": "x"}, 422, "b"),
    ("rank without responses", "/v1/rank", {"prompt": "p", "responses": []}, 422, "responses"),
    ("rank too many", "/v1/rank", {"prompt": "p", "responses": ["a"] * 5}, 413, "responses"),
    ("get_reward query not a list", "/get_reward", {"query": "pq"}, 422, "query"),
    ("get_reward prompts mismatch", "/get_reward", {"query": ["a", "b"], "prompts": ["a"]}, 422, "prompts"),
    ("get_reward empty query", "/get_reward", {"query": [""]}, 422, "query[0]"),
    ("get_reward labels not a list", "/get_reward", {"query": ["pq"], "labels": 5}, 422, "labels"),
]


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(scorer, model_dir):
    limits = {"max_items_per_request": 4, "max_text_chars": 2000, "max_body_bytes": 64 * 1024}
    with ThreadServer(scorer, **limits) as s:
        for name, route, body, status, field in TEXT_CASES:
            if isinstance(body, bytes):
                r = httpx.post(s.url + route, content=body, headers={"content-type": "application/json"}, timeout=120)
            else:
                r = post(s.url + route, body)
            assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
            error = r.json()["error"]
            assert error["message"] and "Traceback" not in r.text, name
            if field is not None:
                assert error["field"] == field, f"{name}: {error}"
        deep = httpx.post(s.url + "/v1/score", content=b"[" * 30_000 + b"]" * 30_000,
                          headers={"content-type": "application/json"}, timeout=120)  # fmt: skip
        assert deep.status_code == 422 and "nested too deeply" in deep.json()["error"]["message"], deep.text
        assert httpx.get(f"{s.url}/nope").status_code == 404
        assert httpx.get(f"{s.url}/v1/score").status_code == 405
        assert post(f"{s.url}/v1/score", {"items": [{"prompt": "p", "response": "r"}]}).status_code == 200

    # A model without saved statistics: normalize is refused per request, and at start when it is the default.
    foreign = Scorer.from_pretrained(str(make_tiny(model_dir.parent / "foreign")), device="cpu")
    with ThreadServer(foreign) as s:
        r = post(f"{s.url}/v1/score", {"items": [{"prompt": "p", "response": "r"}], "normalize": True})
        assert r.status_code == 422 and r.json()["error"]["field"] == "normalize"
    with pytest.raises(ConfigError, match="normalization"):
        ThreadServer(foreign, normalize=True)


def test_bad_images_get_a_clear_4xx(vision_scorer, image_root):
    port = _closed_port()
    cases = [
        ("bad base64", ["data:image/png;base64,@@@"], 422),
        ("not an image", [base64.b64encode(b"hello, not an image").decode()], 422),
        ("path outside the root", [{"path": "../outside/secret.png"}], 422),
        ("symlink out of the root", [{"path": "escape.png"}], 422),
        ("absolute path elsewhere", [{"path": "/etc/passwd"}], 422),
        ("missing file", [{"path": "nope.png"}], 422),
        ("unreachable URL", [f"http://127.0.0.1:{port}/x.png"], 422),
        ("two sources in one image", [{"base64": "aGk=", "path": "red.png"}], 422),
        ("image too large", [b64(png_bytes(size=(600, 600)) + b"\0" * 40_000)], 413),
        ("no image for a vision model", [], 422),
    ]
    with ThreadServer(vision_scorer, image_root=str(image_root), allow_urls=True, max_image_bytes=40_000) as s:
        for name, images, status in cases:
            r = post(f"{s.url}/v1/score", {"items": [{"prompt": "p", "response": "r", "images": images}]})
            assert r.status_code == status, f"{name}: {r.status_code} {r.text}"
            error = r.json()["error"]
            assert (error["field"] or "").startswith("items[0]") and "Traceback" not in r.text, f"{name}: {error}"
            assert str(image_root.parent) not in error["message"], f"{name} leaks a server path"
        ok = post(f"{s.url}/v1/score", {"items": [{"prompt": "p", "response": "r", "images": [{"path": "red.png"}]}]})
        assert ok.status_code == 200


@pytest.mark.slow
def test_serve_command_drains_on_sigterm_and_keeps_payloads_out_of_the_log(model_dir, tmp_path):
    """`rewardlab serve` end to end: a config file plus key=value overrides, a request in flight when SIGTERM
    arrives still gets its answer, the process exits 0, and no request text reaches the log."""
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("max_batch_size: 2\nmax_wait_ms: 1\ngraceful_shutdown_s: 600\n")
    log = tmp_path / "serve.log"
    marker = "zebra-unicorn-marker"
    with ServeProcess("--model", str(model_dir.parent), "--config", str(cfg), "max_batch_size=1", log=log) as proc:
        info = httpx.get(f"{proc.url}/v1/model").json()
        assert info["name"] == "run" and info["limits"]["max_batch_size"] == 1
        items = [{"prompt": f"{marker} {i}", "response": "r " * 40} for i in range(1000)]
        answer: dict = {}

        def call() -> None:
            answer["r"] = post(f"{proc.url}/v1/score", {"items": items})

        caller = threading.Thread(target=call)
        caller.start()
        start = time.monotonic()
        while "rewardlab_queue_responses 1000.0" not in httpx.get(f"{proc.url}/metrics", timeout=60).text:
            assert time.monotonic() - start < 600, "the request never reached the queue"
            time.sleep(0.05)
        code = proc.stop()
        caller.join(300)
    assert code == 0
    assert answer["r"].status_code == 200 and len(answer["r"].json()["scores"]) == 1000
    assert marker not in log.read_text()


def test_serve_command_errors_exit_2(tmp_path, capsys, model_dir, monkeypatch):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    assert main(["serve", "--model", str(model_dir), "--api-key-env", "NO_SUCH_KEY_VAR"]) == 2
    assert "NO_SUCH_KEY_VAR" in capsys.readouterr().err
    assert main(["serve", "--model", str(model_dir), "batch_sise=3"]) == 2
    assert "batch_size" in capsys.readouterr().err  # did you mean
    assert main(["serve", "--model", str(model_dir), "image_root=" + str(tmp_path / "none")]) == 2
    assert os.path.basename(str(tmp_path / "none")) in capsys.readouterr().err


def test_remote_reward_sends_an_images_column_to_a_vision_server(vision_scorer):
    """rewardlab.rl.RemoteReward as TRL calls it: chat prompts and completions, and the dataset's images column
    (PIL images) — the vision RM scores each completion against its image."""
    from PIL import Image

    from rewardlab.rl import RemoteReward

    red, blue = Image.new("RGB", (24, 24), (200, 30, 30)), Image.new("RGB", (24, 24), (20, 20, 220))
    prompts = [[{"role": "user", "content": "Is the page red?"}]] * 2
    completions = [[{"role": "assistant", "content": "yes"}]] * 2
    with ThreadServer(vision_scorer) as s:
        reward = RemoteReward(s.url)
        got = reward(prompts, completions, images=[[red], [blue]], trainer_state=None)
        reward.close()
    want = vision_scorer.score(["Is the page red?"] * 2, ["yes"] * 2, images=[(red,), (blue,)])
    assert got == pytest.approx(want, abs=1e-5) and abs(got[0] - got[1]) > 1e-6


def test_a_failing_model_call_is_a_500_without_details_and_the_server_keeps_serving(model_dir):
    scorer = Scorer.from_pretrained(str(model_dir), device="cpu")
    real, calls = scorer.score_items, []

    def flaky(items, on_batch=None, **limits):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(items, on_batch, **limits)

    scorer.score_items = flaky
    with ThreadServer(scorer) as s:
        body = {"items": [{"prompt": "p", "response": "r"}]}
        first = post(f"{s.url}/v1/score", body)
        assert first.status_code == 500 and first.json()["error"]["type"] == "internal"
        assert "out of memory" not in first.text and "Traceback" not in first.text
        assert post(f"{s.url}/v1/score", body).status_code == 200
