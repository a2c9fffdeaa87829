"""`rewardlab capture` in headless Chromium against a real local HTTP server (127.0.0.1, ephemeral port) serving
generated pages: screenshots and manifest, viewports, a failing page recorded (not fatal), rerun skips what is done,
`block_external`, HTML folders, bad input."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import threading
from pathlib import Path

import pytest

from rewardlab.cli import main

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="playwright is not installed ([collect])"
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (apt-get install chromium)"),
]


def page(title: str, colour: str, extra: str = "") -> str:
    head = f"<!doctype html><html><head><title>{title}</title></head><body style='margin:0'>"
    return head + f"<header style='background:{colour};height:80px'>{title}</header>{extra}</body></html>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    (root / "red.html").write_text(page("Red shop", "#d22"))
    (root / "blue.html").write_text(page("Blue blog", "#22d"))
    # A page that asks for a resource on another origin (an unreachable one): blocked with block_external.
    (root / "external.html").write_text(page("External", "#2d2", "<img src='http://10.255.255.1/x.png'>"))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def manifest(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]


def test_capture_urls_with_two_viewports_a_failure_and_a_rerun(site, tmp_path, capsys):
    from PIL import Image

    root, base = site
    urls = tmp_path / "urls.txt"
    urls.write_text(f"# pages\n{base}/red.html\n\n{base}/blue.html\n{base}/missing.html\n")
    out = tmp_path / "shots"
    args = ["capture", str(urls), "--out", str(out), "--viewport", "800x600", "--viewport", "400x300",
            "retries=0", "parallel=3"]  # fmt: skip
    assert main(args) == 0
    rows = manifest(out)
    assert len(rows) == 6
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and {r["title"] for r in ok} == {"Red shop", "Blue blog"}
    for r in ok:
        w, h = (int(x) for x in r["viewport"].split("x"))
        with Image.open(out / r["image"]) as img:
            assert img.size == (w, h)
            if r["title"] == "Red shop":
                assert img.getpixel((5, 60))[:3] == (0xDD, 0x22, 0x22)  # the header's colour, rendered
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 2 and all("404" in r["error"] for r in failed)
    assert "4 captured, 2 failed" in capsys.readouterr().out
    # A rerun skips what is done and retries what failed.
    assert main(args) == 0
    assert "0 captured, 2 failed, 4 already done" in capsys.readouterr().out


def test_html_folder_full_page_and_block_external(site, tmp_path, capsys):
    root, _ = site
    out = tmp_path / "local"
    assert main(["capture", str(root), "--out", str(out), "--full-page", "--block-external", "--timeout-s", "60"]) == 0
    rows = manifest(out)
    assert {r["title"] for r in rows} == {"Red shop", "Blue blog", "External"}
    assert all(r["status"] == "ok" and r["url"].startswith("file://") for r in rows)
    assert {r["title"]: r["blocked_requests"] for r in rows} == {"Red shop": 0, "Blue blog": 0, "External": 1}


def test_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "urls.txt"
    bad.write_text("http://127.0.0.1:9/ok\nnot a url\n")
    assert main(["capture", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "urls.txt:2" in capsys.readouterr().err
    assert main(["capture", str(tmp_path / "none.txt"), "--out", str(tmp_path / "o")]) == 2
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert main(["capture", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .html files" in capsys.readouterr().err
    assert main(["capture", str(bad), "--out", str(tmp_path / "o"), "--viewport", "big"]) == 2
    assert main(["capture", str(bad), "--out", str(tmp_path / "o"), "--browser", str(tmp_path / "nochrome")]) == 2
    assert not (tmp_path / "o").exists()
