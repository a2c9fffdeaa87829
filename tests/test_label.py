"""`rewardlab label`: the store and export (pairs, ranked groups, agreement), a scripted annotator in a real browser
(keyboard labels, an undo, export, and the export trains a tiny RM), 20 concurrent annotators losing no label, and
bad input."""

from __future__ import annotations

import importlib.util
import json
import math
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from rewardlab.cli import main  # noqa: E402
from rewardlab.collection.label_app import create_label_app  # noqa: E402
from rewardlab.collection.label_export import export_labels  # noqa: E402
from rewardlab.collection.label_store import LabelStore  # noqa: E402
from rewardlab.config.schema import DataSource  # noqa: E402
from rewardlab.data.readers import read_records  # noqa: E402
from rewardlab.data.synthetic import make_pairs  # noqa: E402
from rewardlab.errors import DataError  # noqa: E402
from tests.servers import AppServer  # noqa: E402
from tests.tiny import pair_rows, write_jsonl  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


def rows_of(path: Path) -> list[tuple[int, dict]]:
    return [(n, json.loads(line)) for n, line in enumerate(path.read_text().splitlines(), 1)]


def test_store_labels_undo_export_and_agreement(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(make_pairs(4, seed=1)))
    groups = write_jsonl(tmp_path / "groups.jsonl", [{"id": "g1", "prompt": "p", "responses": ["x", "y", "z"]}])
    store = LabelStore(tmp_path / "db.sqlite")
    assert store.add_rows(rows_of(pairs), str(pairs)) == 4 and store.add_rows(rows_of(pairs), str(pairs)) == 0
    store.add_rows(rows_of(groups), str(groups))
    items = [store.next_item("ann", 1)]
    assert items[0].task == "pair" and len(items[0].responses) == 2
    # Two annotators on every pair (agreement), one ranks the group; one label undone and given again.
    for item_id in (1, 2, 3, 4):
        store.add_label(item_id, "ann", "a")
        store.add_label(item_id, "bob", "a" if item_id < 4 else "b")
    assert store.undo("bob") == 4 and store.add_label(4, "bob", "tie")
    store.add_label(3, "ann", "a")  # a retried post replaces the standing label: no second record
    store.add_label(5, "ann", [2, 1, 2])
    with pytest.raises(DataError, match="rank from 1 to 3"):
        store.add_label(5, "bob", [1, 2])
    with pytest.raises(DataError, match="one of a, b, tie, skip"):
        store.add_label(1, "bob", "c")
    with pytest.raises(DataError, match="no item 99"):
        store.add_label(99, "bob", "a")
    summary = export_labels(store, tmp_path / "prefs.jsonl")
    assert summary["counts"] == {"pairs": 7, "pair_tie": 1, "groups": 1}
    records, _ = read_records(DataSource(path=str(tmp_path / "prefs.jsonl")))
    assert len(records) == 7
    first = store.item(1)
    assert records[0].chosen == first.responses[0] and records[0].rejected == first.responses[1]  # "a" picks A
    ranked, _ = read_records(DataSource(path=str(tmp_path / "prefs.groups.jsonl")))
    assert ranked[0].ranks == (2, 1, 2) and ranked[0].responses == ("x", "y", "z")
    agree = summary["agreement"]
    # ann: a a a a; bob: a a a tie -> kappa on 4 items = (0.75 - 0.75) / (1 - 0.75) = 0
    assert agree["pairwise_cohen_kappa"]["items"] == 4 and agree["pairwise_cohen_kappa"]["kappa"] == pytest.approx(0)
    assert math.isfinite(agree["pairwise_krippendorff_alpha"])


def test_rankings_alone_go_to_the_groups_file(tmp_path, capsys):
    """Ranked groups always go to OUT.groups.jsonl and pairs to OUT, whichever occur (only rankings labeled wrote
    them to OUT itself)."""
    groups = write_jsonl(tmp_path / "groups.jsonl", [{"id": "g1", "prompt": "p", "responses": ["x", "y", "z"]}])
    store = LabelStore(tmp_path / "db.sqlite")
    store.add_rows(rows_of(groups), str(groups))
    store.add_label(1, "ann", [1, 3, 2])
    store.close()
    out = tmp_path / "prefs.jsonl"
    assert main(["label", "export", "--db", str(tmp_path / "db.sqlite"), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["files"] == [str(tmp_path / "prefs.groups.jsonl")]
    assert not out.exists()
    ranked, _ = read_records(DataSource(path=str(tmp_path / "prefs.groups.jsonl")))
    assert ranked[0].ranks == (1, 3, 2)


def test_description_check_exports_pairs_with_the_image(tmp_path):
    """A screenshot with candidate descriptions: marked correct or wrong, a better one typed in; the export has a
    pair for every (correct or typed, wrong) description, with the image."""
    review = write_jsonl(tmp_path / "review.jsonl", [
        {"id": "shot1", "prompt": "Describe this web page.", "images": ["shot1.png"],
         "descriptions": ["A red header.", "A blue header.", "A green header."]}])  # fmt: skip
    store = LabelStore(tmp_path / "db.sqlite")
    store.add_rows(rows_of(review), str(review))
    item = store.next_item("ann", 1)
    assert item.task == "check" and item.images == [str(tmp_path / "shot1.png")]  # stored absolute
    with pytest.raises(DataError, match="description check"):
        store.add_label(item.id, "ann", {"correct": [True, False]})
    store.add_label(item.id, "ann", {"correct": [True, False, False], "better": "A red header and a form."})
    summary = export_labels(store, tmp_path / "prefs.jsonl")
    assert summary["counts"] == {"pairs": 4, "checked": 1}
    pairs, _ = read_records(DataSource(path=str(tmp_path / "prefs.jsonl")))
    assert {(p.chosen, p.rejected) for p in pairs} == {
        (good, bad)
        for good in ("A red header.", "A red header and a form.")
        for bad in ("A blue header.", "A green header.")
    }
    assert all(p.images == ("shot1.png",) for p in pairs)  # relative to the export, which lies beside it


def test_an_export_written_anywhere_finds_every_image(tmp_path):
    """Images named relative to the labeled file (and one absolute path elsewhere): exported into another folder,
    into the data folder and below it, every path resolves from the export's folder (``inspect`` and training's
    reader find each image); relative where the image is inside the export's folder, absolute otherwise."""
    from PIL import Image

    from rewardlab.config.schema import InspectConfig
    from rewardlab.data.prepare import read_source
    from rewardlab.recipes.inspect import run_inspect

    (tmp_path / "data" / "shots").mkdir(parents=True)
    (tmp_path / "other").mkdir()
    for name in ("data/shots/a.png", "data/shots/b.png", "other/c.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    data = write_jsonl(tmp_path / "data" / "rows.jsonl", [
        {"id": "1", "prompt": "p", "chosen": "x", "rejected": "y", "images": ["shots/a.png"]},
        {"id": "2", "prompt": "q", "chosen": "x", "rejected": "y", "images": "./shots/../shots/b.png"},
        {"id": "3", "prompt": "r", "chosen": "x", "rejected": "y", "images": [str(tmp_path / "other" / "c.png")]},
        {"id": "4", "prompt": "s", "responses": ["x", "y", "z"], "images": ["shots/a.png"]}])  # fmt: skip
    db = tmp_path / "db.sqlite"
    store = LabelStore(db)
    store.add_rows(rows_of(data), str(data))
    for item_id in (1, 2, 3):
        store.add_label(item_id, "ann", "a")
    store.add_label(4, "ann", [1, 2, 3])
    wanted = {"1": [tmp_path / "data/shots/a.png"], "2": [tmp_path / "data/shots/b.png"],
              "3": [tmp_path / "other/c.png"], "4": [tmp_path / "data/shots/a.png"]}  # fmt: skip
    for out in (tmp_path / "elsewhere" / "prefs.jsonl", tmp_path / "data" / "prefs.jsonl",
                tmp_path / "data" / "shots" / "prefs.jsonl"):  # fmt: skip
        assert main(["label", "export", "--db", str(db), "--out", str(out)]) == 0
        groups = out.with_name("prefs.groups.jsonl")
        for path in (out, groups):
            assert run_inspect(InspectConfig(data=DataSource(path=str(path))))["images"]["problems"] == 0, path
        records = read_source(DataSource(path=str(out)))[0] + read_source(DataSource(path=str(groups)))[0]
        assert {r.id.split("#")[0]: [Path(i) for i in r.images] for r in records} == wanted
    written = {r["id"]: r["images"] for r in map(json.loads, out.read_text().splitlines())}
    assert written == {"1#ann": ["a.png"], "2#ann": ["b.png"], "3#ann": [str(tmp_path / "other" / "c.png")]}


HH, AS = "\n\nHuman: ", "\n\nAssistant:"
IMPLICIT_ROWS = [
    {"chosen": f"{HH}Hi{AS} Hello there.", "rejected": f"{HH}Hi{AS} Go away."},
    {"chosen": f"{HH}Tea?{AS} Yes.{HH}Green?{AS} Sencha, then.", "rejected": f"{HH}Tea?{AS} Yes.{HH}Green?{AS} No."},
    {"chosen": f"{HH}Rain?{AS} Maybe.{HH}When?{AS} Soon.", "rejected": f"{HH}Rain?{AS} Never."},  # prefixes differ
    {"chosen": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Blue."}],
     "rejected": [{"role": "user", "content": "Sky?"}, {"role": "assistant", "content": "Green."}]},
]  # fmt: skip


def label_as_the_data_says(tmp_path: Path, rows: list[tuple[int, dict]], source: str) -> list:
    """Load implicit-prompt rows into a store, label every item with the file's own preference, export, and read
    the export back."""
    store = LabelStore(tmp_path / "db.sqlite")
    assert store.add_rows(rows, source) == len(rows)
    original, _ = read_records(DataSource(path=source))
    for item, pair in zip(store.all_items(), original):
        assert item.prompt == pair.prompt and set(map(json.dumps, item.responses)) == {
            json.dumps(pair.chosen), json.dumps(pair.rejected)}  # fmt: skip
        store.add_label(item.id, "ann", "a" if item.responses[0] == pair.chosen else "b")
    assert export_labels(store, tmp_path / "prefs.jsonl")["counts"] == {"pairs": len(rows)}
    exported, _ = read_records(DataSource(path=str(tmp_path / "prefs.jsonl")))
    assert [(p.prompt, p.chosen, p.rejected) for p in exported] == [(p.prompt, p.chosen, p.rejected) for p in original]
    return exported


def test_implicit_prompt_pairs_are_labeled_as_training_reads_them(tmp_path, caplog):
    """hh-rlhf transcripts and conversations without a prompt column (the form ``train`` and ``inspect`` read):
    ``label`` splits them with the readers' function, so the export's prompt and responses are training's."""
    data = write_jsonl(tmp_path / "hh.jsonl", IMPLICIT_ROWS)
    exported = label_as_the_data_says(tmp_path, rows_of(data), str(data))
    assert exported[0].prompt == f"{HH}Hi{AS}" and exported[0].chosen == " Hello there."
    assert exported[2].prompt == f"{HH}Rain?{AS}" and exported[2].rejected == " Never."  # the common prefix
    assert exported[3].prompt == [{"role": "user", "content": "Sky?"}]
    assert "1 implicit-prompt pairs whose transcripts differ" in caplog.text
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"chosen": "text", "rejected": [{"role": "user", "content": "x"}]}])
    with pytest.raises(DataError, match=r"mixed.jsonl:1:chosen: chosen and rejected must both be strings"):
        LabelStore(tmp_path / "m.sqlite").add_rows(rows_of(mixed), str(mixed))


def test_real_hh_rlhf_transcripts_label_as_training_reads_them(tmp_path, shared_data_dir):
    from rewardlab.data.readers import iter_rows

    source = str(shared_data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz")
    label_as_the_data_says(tmp_path, list(iter_rows(DataSource(path=source))), source)


def test_twenty_annotators_post_a_thousand_labels_and_none_is_lost(tmp_path):
    """20 concurrent annotators, 50 items each (1,000 labels over HTTP on 127.0.0.1): the export holds exactly
    what was posted."""
    import httpx

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(make_pairs(50, seed=2)))
    store = LabelStore(tmp_path / "db.sqlite")
    store.add_rows(rows_of(data), str(data))
    posted: dict[str, list[tuple[int, str]]] = {}
    with AppServer(create_label_app(store, per_item=20)) as server:

        def annotate(name: str) -> None:
            mine = []
            with httpx.Client(base_url=server.url, timeout=120) as http:
                for item_id in range(1, 51):
                    value = "a" if (item_id + len(name)) % 3 else "b"
                    r = http.post("/api/label", json={"item_id": item_id, "annotator": name, "value": value})
                    assert r.status_code == 200, r.text
                    mine.append((item_id, value))
            posted[name] = mine

        threads = [threading.Thread(target=annotate, args=(f"annotator-{k:02d}",)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
    assert sum(len(v) for v in posted.values()) == 1000
    summary = export_labels(LabelStore(tmp_path / "db.sqlite"), tmp_path / "out.jsonl")
    assert summary["counts"] == {"pairs": 1000}
    exported = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    got = sorted((r["annotator"], r["id"].split("#")[0]) for r in exported)
    assert len(set(got)) == 1000 and summary["agreement"]["items_labeled_twice_or_more"] == 50


def test_bad_requests_and_images_only_when_registered(tmp_path, capsys):
    import httpx

    (tmp_path / "data").mkdir()
    (tmp_path / "secret.png").write_bytes(b"not for you")
    (tmp_path / "data" / "page.png").write_bytes(b"\x89PNG fake")
    data = write_jsonl(tmp_path / "data" / "rows.jsonl", [
        {"prompt": "p", "chosen": "x", "rejected": "y", "images": ["page.png"]},
        {"prompt": "r", "chosen": "x", "rejected": "y", "images": [str(tmp_path / "secret.png")]},
        {"prompt": "s", "chosen": "x", "rejected": "y", "images": [str(tmp_path / "data" / "page.png")]}])  # fmt: skip
    store = LabelStore(tmp_path / "db.sqlite")
    store.add_rows(rows_of(data), str(data))
    app = create_label_app(store, image_root=str(tmp_path / "data"))
    with AppServer(app) as server, httpx.Client(base_url=server.url, timeout=120) as http:
        assert http.get("/images/1/0").content == b"\x89PNG fake"
        assert http.get("/images/2/0").status_code == 404  # registered, but an absolute path outside the data folder
        assert http.get("/images/3/0").content == b"\x89PNG fake"  # an absolute path inside it is served
        assert http.get("/images/1/5").status_code == 404
        assert http.post("/api/label", json={"item_id": 77, "annotator": "x", "value": "a"}).status_code == 404
        r = http.post("/api/label", json={"item_id": 1, "annotator": "x", "value": "maybe"})
        assert r.status_code == 422 and "a, b, tie, skip" in r.json()["error"]["message"]
        assert http.post("/api/label", json={"item_id": 1, "annotator": "", "value": "a"}).status_code == 422
        assert http.post("/api/label", json={"item_id": 1, "annotator": "   ", "value": "a"}).status_code == 422
        assert http.post("/api/label", json={"item_id": 10**30, "annotator": "x", "value": "a"}).status_code == 422
        assert http.post("/api/label", json={"item_id": 1, "annotator": "x", "value": [True, 1, 1]}).status_code == 422
        page = http.get("/label", params={"annotator": "x"})
        assert page.status_code == 200 and 'src="images/1/0"' in page.text and "0/3 items" in page.text
    climbs = write_jsonl(tmp_path / "data" / "climbs.jsonl", [
        {"prompt": "q", "chosen": "x", "rejected": "y", "images": ["../secret.png"]}])  # fmt: skip
    assert main(["label", str(climbs), "--db", str(tmp_path / "climbs.sqlite")]) == 2  # read as the readers read it
    assert "climbs.jsonl:1:images: image ../secret.png resolves outside the data folder" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "responses": ["only one"]}])
    assert main(["label", str(bad), "--db", str(tmp_path / "other.sqlite")]) == 2
    assert not (tmp_path / "other.sqlite").exists()  # no usable rows: no empty database left behind
    (tmp_path / "notes.txt").write_text("not a database, but long enough to have a header " * 4)
    export = ["label", "export", "--out", str(tmp_path / "o.jsonl")]
    for args, db in ((["label", str(data)], tmp_path / "notes.txt"), (export, tmp_path / "notes.txt"),
                     (["label", str(data)], tmp_path / "notes.txt" / "db.sqlite")):  # fmt: skip
        assert main([*args, "--db", str(db)]) == 2, (args, db)  # not SQLite; in a "folder" that is a file
        assert "cannot be used as a label database" in capsys.readouterr().err
    assert main(["label", "export", "--db", str(tmp_path / "missing.sqlite"), "--out", str(tmp_path / "o.jsonl")]) == 2


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed ([collect])")
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not found (apt-get install chromium)")
def test_a_scripted_annotator_labels_with_the_keyboard_and_the_export_trains(tmp_path):
    """In headless Chromium: pairwise items labeled with a/b/t, one label undone (u) and given again, u and s pressed
    in a rank box (undo, skip), a ranking typed and saved with Enter, the done page; the export reads back and trains
    a tiny RM."""
    from playwright.sync_api import sync_playwright

    from tests.test_cli import write_config
    from tests.tiny import make_tiny

    pairs = make_pairs(12, seed=3)
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(pairs))
    groups = write_jsonl(
        tmp_path / "groups.jsonl", [{"id": "g", "prompt": "Rank these.", "responses": ["x", "y", "z"]}]
    )
    store = LabelStore(tmp_path / "db.sqlite")
    check = write_jsonl(tmp_path / "check.jsonl", [{"id": "c", "prompt": "Describe it.",
                                                   "descriptions": ["Right one.", "Wrong one."]}])  # fmt: skip
    store.add_rows(rows_of(data), str(data))
    store.add_rows(rows_of(groups), str(groups))
    store.add_rows(rows_of(check), str(check))
    with AppServer(create_label_app(store)) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])  # fmt: skip
        try:
            page = browser.new_page()
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(server.url) else r.abort())
            page.goto(server.url + "/")
            page.fill("#annotator", "tester")
            page.press("#annotator", "Enter")
            for n in range(12):
                page.wait_for_selector("#prompt")
                shown = page.inner_text("#response-0").strip()
                key = "t" if n == 5 else ("a" if n % 2 == 0 else "b")
                with page.expect_navigation():
                    page.keyboard.press(key)
                if n == 3:  # undo the fourth label: the same item comes back
                    with page.expect_navigation():
                        page.keyboard.press("u")
                    assert page.inner_text("#response-0").strip() == shown
                    with page.expect_navigation():
                        page.keyboard.press("b")
            page.wait_for_selector("#rank-0")
            page.fill("#rank-0", "3")
            with page.expect_navigation():  # u in a rank box undoes the last pairwise label (no Esc first)
                page.press("#rank-0", "u")
            page.wait_for_selector("#response-0")
            assert page.query_selector("#rank-0") is None
            with page.expect_navigation():
                page.keyboard.press("a")
            page.wait_for_selector("#rank-0")
            with page.expect_navigation():  # s in a rank box skips the ranking ...
                page.press("#rank-1", "s")
            page.wait_for_selector("#correct-0")
            with page.expect_navigation():  # ... and u on the next page brings it back
                page.keyboard.press("u")
            for k, rank in enumerate((3, 1, 2)):
                page.fill(f"#rank-{k}", str(rank))
            with page.expect_navigation():
                page.press("#rank-2", "Enter")
            page.wait_for_selector("#correct-0")  # the description check: key 1 marks the first correct
            page.keyboard.press("1")
            page.fill("#better", "An even better one.")
            with page.expect_navigation():
                page.press("#better", "Control+Enter")
            assert "Nothing left" in page.inner_text("#done")
        finally:
            browser.close()
    summary = export_labels(LabelStore(tmp_path / "db.sqlite"), tmp_path / "prefs.jsonl")
    assert summary["counts"] == {"pairs": 13, "pair_tie": 1, "groups": 1, "checked": 1}
    ranked, _ = read_records(DataSource(path=str(tmp_path / "prefs.groups.jsonl")))
    assert ranked[0].ranks == (3, 1, 2)
    # The export trains a tiny RM end to end.
    make_tiny(tmp_path / "base", "qwen2")
    labeled = [json.loads(x) for x in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    assert {(r["chosen"], r["rejected"]) for r in labeled if r["prompt"] == "Describe it."} == {
        ("Right one.", "Wrong one."),
        ("An even better one.", "Wrong one."),
    }
    write_jsonl(tmp_path / "train.jsonl", labeled)
    write_jsonl(tmp_path / "eval.jsonl", pair_rows(make_pairs(8, seed=4)))
    cfg = write_config(tmp_path, "rm", max_steps=2, save_strategy="no", eval_strategy="no")
    assert main(["train", "--config", str(cfg)]) == 0
    assert (tmp_path / "rm" / "model" / "rewardlab.json").is_file()


def test_label_studio_tasks_out_and_its_export_back_as_records(tmp_path, capsys):
    """Items written as Label Studio tasks (pairwise and ranker configs); an export in Label Studio's format —
    with a cancelled annotation, two annotators, and a bucketed ranking with a tie — reads back as records."""
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(make_pairs(2, seed=5)))
    assert (
        main(["label", str(pairs), "--db", str(tmp_path / "p.sqlite"), "--to-label-studio", str(tmp_path / "ls")]) == 0
    )
    groups = write_jsonl(tmp_path / "groups.jsonl", [{"id": "g", "prompt": "Rank.", "responses": ["x", "y", "z"]}])
    assert (
        main(["label", str(groups), "--db", str(tmp_path / "g.sqlite"), "--to-label-studio", str(tmp_path / "ls")])
        == 0
    )
    pair_tasks = json.loads((tmp_path / "ls" / "tasks_pairwise.json").read_text())
    rank_tasks = json.loads((tmp_path / "ls" / "tasks_ranking.json").read_text())
    assert len(pair_tasks) == 2 and "<Pairwise" in (tmp_path / "ls" / "config_pairwise.xml").read_text()
    assert [i["body"] for i in rank_tasks[0]["data"]["items"]] == ["x", "y", "z"]
    assert "<Ranker" in (tmp_path / "ls" / "config_ranking.xml").read_text()

    def pick(who, side, cancelled=False):
        result = [{"type": "pairwise", "value": {"selected": side}}]
        return {"completed_by": who, "was_cancelled": cancelled, "result": result}

    def ranking(who, ranker):
        return {"completed_by": who, "result": [{"type": "ranker", "value": {"ranker": ranker}}]}

    pair_export = [
        {
            "id": 1,
            "data": pair_tasks[0]["data"],
            "annotations": [pick(7, "right"), pick(8, "left", cancelled=True), pick(9, "left")],
        }
    ]
    rank_export = [{"id": 2, "data": rank_tasks[0]["data"],
                    "annotations": [ranking(7, {"responses": ["r2", "r0", "r1"]}),
                                    ranking(9, {"best": ["r1", "r2"], "worst": ["r0"]})]}]  # fmt: skip
    (tmp_path / "ls_pairs.json").write_text(json.dumps(pair_export))
    records, _ = read_records(DataSource(path=str(tmp_path / "ls_pairs.json")))
    data = pair_tasks[0]["data"]
    assert [(r.chosen, r.rejected) for r in records] == [
        (data["text2"], data["text1"]),
        (data["text1"], data["text2"]),
    ]
    assert records[0].prompt == data["prompt"] and records[0].id.endswith("#7")
    (tmp_path / "ls_ranks.json").write_text(json.dumps(rank_export))
    groups_read, _ = read_records(DataSource(path=str(tmp_path / "ls_ranks.json")))
    assert [g.ranks for g in groups_read] == [(2, 3, 1), (2, 1, 1)]


def test_a_token_guards_every_request(tmp_path):
    import httpx

    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(make_pairs(2, seed=6)))
    store = LabelStore(tmp_path / "db.sqlite")
    store.add_rows(rows_of(data), str(data))
    with AppServer(create_label_app(store, token="s3cret")) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/").status_code == 401
        assert http.get("/label", params={"annotator": "x", "token": "nope"}).status_code == 401
        page = http.get("/label", params={"annotator": "x", "token": "s3cret"})
        assert page.status_code == 200 and '"s3cret"' in page.text  # the page passes it on to the API
        body = {"item_id": 1, "annotator": "x", "value": "a"}
        assert http.post("/api/label", json=body).status_code == 401
        assert http.post("/api/label", json=body, headers={"X-Label-Token": "s3cret"}).status_code == 200
