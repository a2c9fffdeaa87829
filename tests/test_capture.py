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
    import socket

    with socket.socket() as sock:  # a port nothing listens on: the page is unreachable
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    urls.write_text(
        f"# pages\n{base}/red.html\n\n{base}/blue.html\n{base}/missing.html\nhttp://127.0.0.1:{closed}/x\n"
    )
    out = tmp_path / "shots"
    args = ["capture", str(urls), "--out", str(out), "--viewport", "800x600", "--viewport", "400x300",
            "retries=0", "parallel=3"]  # fmt: skip
    assert main(args) == 0
    rows = manifest(out)
    assert len(rows) == 8
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and {r["title"] for r in ok} == {"Red shop", "Blue blog"}
    for r in ok:
        w, h = (int(x) for x in r["viewport"].split("x"))
        with Image.open(out / r["image"]) as img:
            assert img.size == (w, h)
            if r["title"] == "Red shop":
                assert img.getpixel((5, 60))[:3] == (0xDD, 0x22, 0x22)  # the header's colour, rendered
    failed = [r for r in rows if r["status"] != "ok"]
    assert len(failed) == 4 and sum("404" in r["error"] for r in failed) == 2
    assert sum("ERR_CONNECTION_REFUSED" in r["error"] for r in failed) == 2  # recorded, not the end of the run
    assert "4 captured, 4 failed" in capsys.readouterr().out
    # A rerun skips what is done and retries what failed.
    assert main(args) == 0
    assert "0 captured, 4 failed, 4 already done" in capsys.readouterr().out


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
    (tmp_path / "shot.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe binary")
    assert main(["capture", str(tmp_path / "shot.png"), "--out", str(tmp_path / "o")]) == 2
    assert "not a text file of URLs" in capsys.readouterr().err
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert main(["capture", str(empty), "--out", str(tmp_path / "o")]) == 2
    assert "no .html files" in capsys.readouterr().err
    assert main(["capture", str(bad), "--out", str(tmp_path / "o"), "--viewport", "big"]) == 2
    assert main(["capture", str(bad), "--out", str(tmp_path / "o"), "--browser", str(tmp_path / "nochrome")]) == 2
    (tmp_path / "not_executable").write_text("#!/bin/sh\n")
    assert (
        main(["capture", str(bad), "--out", str(tmp_path / "o"), "--browser", str(tmp_path / "not_executable")]) == 2
    )
    assert "is not executable" in capsys.readouterr().err
    good = tmp_path / "good.txt"
    good.write_text("http://127.0.0.1:9/ok\n")
    assert main(["capture", str(good), "--out", str(tmp_path / "o"), "--browser", "/bin/true"]) == 2
    err = capsys.readouterr().err
    assert "/bin/true did not start as a Chromium" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_describe_recovers_the_facts_of_pages_built_from_the_synthetic_layouts(tmp_path, capsys):
    """40 pages rendered as HTML from random PageSpecs (the screenshot generator's layouts), served over HTTP and
    captured with --describe: the facts read from each page's DOM give back its spec (target >= 95 % of facts),
    and descriptions.jsonl is a pair file with the screenshots that the readers take as it is."""
    import dataclasses
    import random

    from rewardlab.collection.describe import spec_from_facts
    from rewardlab.config.schema import DataSource
    from rewardlab.data.readers import read_records
    from rewardlab.data.screenshots import ATTRIBUTES, describe, random_page, render_html

    rng = random.Random(7)
    specs = {}
    site = tmp_path / "site"
    site.mkdir()
    for i in range(40):
        spec = dataclasses.replace(random_page(rng), variant=i)
        (site / f"page{i:02d}.html").write_text(render_html(spec, title=f"Page {i}"))
        specs[f"Page {i}"] = spec
    out = tmp_path / "shots"
    assert main(["capture", str(site), "--out", str(out), "--describe", "--viewport", "1024x768", "parallel=4"]) == 0
    rows = manifest(out)
    assert len(rows) == 40 and all(r["status"] == "ok" for r in rows)
    right = total = 0
    for r in rows:
        got, want = spec_from_facts(r["facts"]), specs[r["title"]]
        for attribute in ATTRIBUTES:
            if attribute == "button_colour" and want.button_count == 0:
                continue  # not visible, not described
            total += 1
            right += getattr(got, attribute) == getattr(want, attribute)
    share = right / total
    print(f"facts recovered: {right}/{total} = {share:.3f}")
    assert share >= 0.95
    pairs, _ = read_records(DataSource(path=str(out / "descriptions.jsonl")))
    assert len(pairs) == 120 and all(p.chosen != p.rejected and len(p.images) == 1 for p in pairs)
    assert all((out / p.images[0]).is_file() for p in pairs)  # relative to the file, as readers resolve them
    by_image = {r["image"]: specs[r["title"]] for r in rows}
    exact = sum(p.chosen == describe(by_image[p.images[0]]) for p in pairs) / len(pairs)
    assert exact >= 0.95
    # review.jsonl: each page's drafts, ready for the labeling UI's description check.
    pytest.importorskip("fastapi")
    from rewardlab.collection.label_store import LabelStore

    review = [(n, json.loads(x)) for n, x in enumerate((out / "review.jsonl").read_text().splitlines(), 1)]
    store = LabelStore(tmp_path / "review.sqlite")
    assert store.add_rows(review, str(out / "review.jsonl")) == 40
    item = store.next_item("someone", 1)
    shown = by_image[Path(item.images[0]).relative_to(out).as_posix()]  # the store keeps image paths absolute
    assert item.task == "check" and len(item.responses) == 4 and describe(shown) in item.responses


HEAD = (
    "<!doctype html><html><head><title>{title}</title><style>body{{margin:0;font:16px sans-serif}}{css}</style></head>"
)
TOP = (
    "<header style='background:#2255cc;color:#fff;height:70px;display:flex;gap:40px'><b>Site</b><a>Home</a>"
    "<a>About</a></header>"
)
BOTTOM = (
    "<footer style='display:flex;justify-content:space-around;height:90px'><ul><li>Terms</li></ul><ul><li>Privacy"
    "</li></ul><ul><li>Contact</li></ul></footer>"
)
TEXT = "<p>" + "A sentence about the page's subject that wraps over the width of its column. " * 6 + "</p>"
LINKS = "<ul>" + "".join(f"<li><a>Section {i}</a></li>" for i in range(6)) + "</ul>"
# Hand-written layouts as people write them (not the generator's), with the columns a person sees.
LAYOUTS = {
    "flex sidebar": (
        2,
        "",
        f"<div style='display:flex;gap:24px'><aside style='width:240px'>{LINKS}</aside>"
        f"<div style='flex:1'><h1>Flex</h1>{TEXT * 3}</div></div>",
    ),
    "grid article and aside": (
        2,
        "main{display:grid;grid-template-columns:2fr 1fr;gap:24px}",
        f"<main><article><h1>Grid</h1>{TEXT * 3}</article><aside>{TEXT}</aside></main>",
    ),
    "float sidebar": (
        2,
        "nav{float:left;width:22%}article{margin-left:25%}",
        f"<nav>{LINKS}</nav><article><h1>Float</h1>{TEXT * 4}</article><div style='clear:both'></div>",
    ),
    "table layout": (
        2,
        "",
        f"<table width='100%'><tr><td width='220' valign='top'>{LINKS}</td>"
        f"<td><h1>Table</h1>{TEXT * 3}</td></tr></table>",
    ),
    "nav beside main": (
        2,
        ".wrap{display:flex}.wrap>nav{width:20%}.wrap>main{flex:1}",
        f"<div class='wrap'><nav>{LINKS}</nav><main><h1>Main</h1>{TEXT * 2}{TEXT}</main></div>",
    ),
    "multi-column text": (2, "article{column-count:2;column-gap:32px}", f"<article>{TEXT * 5}</article>"),
    "single article": (
        1,
        "main{max-width:720px;margin:0 auto}.row{display:flex;gap:12px}",
        f"<main><h1>Article</h1>{TEXT * 2}<div class='row'><button>Buy</button><button>Save</button>"
        f"</div><form class='row'><label>Name</label><input></form>{TEXT}<table><tr><th>a</th><th>b"
        f"</th><th>c</th><th>d</th></tr><tr><td>1</td><td>2</td><td>3</td><td>4</td></tr></table>"
        f"{TEXT * 2}</main>",
    ),
    "cards in a column": (
        1,
        ".cards{display:grid;grid-template-columns:repeat(3,1fr);gap:16px}",
        f"<main><h1>Cards</h1>{TEXT * 3}<div class='cards'><div>Card one</div><div>Card two</div>"
        f"<div>Card three</div></div>{TEXT * 3}</main>",
    ),
}


def test_describe_counts_the_columns_of_hand_written_layouts(tmp_path):
    """Grid, flex, float, table-cell and multi-column layouts (a sidebar outside ``main`` included) read as two
    columns, and a single column with button rows, a form row, a data table, a card row and a footer's link lists as
    one (the main element's child edges, used before, called a two-column flex page single-column)."""
    site = tmp_path / "site"
    site.mkdir()
    for n, (title, (_, css, body)) in enumerate(LAYOUTS.items()):
        html = HEAD.format(title=title, css=css) + f"<body>{TOP}{body}{BOTTOM}</body></html>"
        (site / f"layout{n}.html").write_text(html)
    out = tmp_path / "shots"
    assert main(["capture", str(site), "--out", str(out), "--describe", "--viewport", "1280x800"]) == 0
    got = {r["title"]: r["facts"]["columns"] for r in manifest(out)}
    assert got == {title: want for title, (want, _, _) in LAYOUTS.items()}
