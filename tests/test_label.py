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


# Label Studio's JSON export, as 1.23 writes it: a list of tasks, each with its data and annotations.
def ls_task(task_id: int, data: dict, annotations: list[dict]) -> dict:
    return {"id": task_id, "data": data, "annotations": annotations, "drafts": [], "predictions": [], "meta": {},
            "inner_id": task_id, "total_annotations": len(annotations), "project": 1}  # fmt: skip


def ls_annotation(who: int, *results: dict, cancelled: bool = False, updated: str | None = None) -> dict:
    stamp = updated or "2025-06-01T10:00:00.000000Z"
    return {"id": 100 + who, "completed_by": who, "result": list(results), "was_cancelled": cancelled,
            "ground_truth": False, "created_at": stamp, "updated_at": stamp, "lead_time": 4.2, "task": 1,
            "project": 1, "updated_by": who}  # fmt: skip


def ls_pick(side: str) -> dict:
    return {"id": "pw", "type": "pairwise", "from_name": "comparison", "to_name": "text1", "origin": "manual",
            "value": {"selected": side}}  # fmt: skip


def ls_tie() -> dict:
    return {"id": "tie", "type": "choices", "from_name": "tie", "to_name": "prompt", "origin": "manual",
            "value": {"choices": ["Both equal"]}}  # fmt: skip


def ls_ranker(ranker: dict) -> dict:
    return {"id": "rk", "type": "ranker", "from_name": "rank", "to_name": "responses", "origin": "manual",
            "value": {"ranker": ranker}}  # fmt: skip


def to_label_studio(tmp_path: Path, capsys, rows: list[dict], *extra: str) -> tuple[Path, str]:
    """``rows`` written as Label Studio tasks to ``tmp_path/ls`` by the CLI; the folder and what it printed to
    stderr."""
    data = write_jsonl(tmp_path / f"{len(list(tmp_path.iterdir()))}.jsonl", rows)
    db = tmp_path / f"{data.stem}.sqlite"
    assert main(["label", str(data), "--db", str(db), "--to-label-studio", str(tmp_path / "ls"), *extra]) == 0
    return tmp_path / "ls", capsys.readouterr().err


def test_label_studio_tasks_out_and_its_export_back_as_records(tmp_path, capsys):
    """Items written as Label Studio tasks (Pairwise with a tie box; List + Ranker showing "Response 1", …); an
    export in Label Studio's format — a cancelled annotation, two annotators — reads back as records, winners and
    ranks right."""
    ls, _ = to_label_studio(tmp_path, capsys, pair_rows(make_pairs(2, seed=5)))
    _, err = to_label_studio(tmp_path, capsys, [{"id": "g", "prompt": "Rank.", "responses": ["x", "y", "z"]}])
    assert "rewardlab label: 1 ranking tasks" in err
    pair_tasks = json.loads((ls / "tasks_pairwise.json").read_text())
    rank_tasks = json.loads((ls / "tasks_ranking.json").read_text())
    pairwise = (ls / "config_pairwise.xml").read_text()
    assert len(pair_tasks) == 2 and "<Pairwise" in pairwise
    assert '<Choices name="tie" toName="prompt">' in pairwise and '<Choice value="Both equal"/>' in pairwise
    assert rank_tasks[0]["data"]["items"] == [{"id": "Response 1", "body": "x"}, {"id": "Response 2", "body": "y"},
                                              {"id": "Response 3", "body": "z"}]  # fmt: skip
    assert (
        "<Ranker" in (ls / "config_ranking.xml").read_text()
        and "<Bucket" not in (ls / "config_ranking.xml").read_text()
    )
    assert "<Image" not in pairwise + (ls / "config_ranking.xml").read_text()

    data = pair_tasks[0]["data"]
    annotations = [ls_annotation(7, ls_pick("right")), ls_annotation(8, ls_pick("left"), cancelled=True),
                   ls_annotation(9, ls_pick("left"))]  # fmt: skip
    (tmp_path / "ls_pairs.json").write_text(json.dumps([ls_task(1, data, annotations)]))
    records, report = read_records(DataSource(path=str(tmp_path / "ls_pairs.json")))
    assert [(r.chosen, r.rejected) for r in records] == [
        (data["text2"], data["text1"]),
        (data["text1"], data["text2"]),
    ]
    assert records[0].prompt == data["prompt"] and [r.id for r in records] == [f"{data['rewardlab_id']}#7",
                                                                             f"{data['rewardlab_id']}#9"]  # fmt: skip
    assert report.counts["pair_skip"] == 1
    order = {"rank": ["Response 3", "Response 1", "Response 2"]}  # dragged: z, x, y
    (tmp_path / "ls_ranks.json").write_text(json.dumps([ls_task(2, rank_tasks[0]["data"],
                                                                [ls_annotation(7, ls_ranker(order))])]))  # fmt: skip
    groups_read, _ = read_records(DataSource(path=str(tmp_path / "ls_ranks.json")))
    assert [(g.responses, g.ranks) for g in groups_read] == [(("x", "y", "z"), (2, 3, 1))]


def test_label_studio_ties_are_counted_as_the_labeling_app_counts_them(tmp_path, capsys):
    """The tie box reads back as a tie: counted (pair_tie) and not exported, as `label export` treats the app's
    ties; a tie with a side picked as well contradicts itself and is counted apart. The import prints the counts."""
    ls, _ = to_label_studio(tmp_path, capsys, pair_rows(make_pairs(1, seed=5)))
    data = json.loads((ls / "tasks_pairwise.json").read_text())[0]["data"]
    annotations = [ls_annotation(1, ls_tie()), ls_annotation(2, ls_tie(), ls_pick("left")),
                   ls_annotation(3, ls_pick("left"))]  # fmt: skip
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task(1, data, annotations)]))
    assert main(["label", "--from-label-studio", str(export), "--out", str(tmp_path / "prefs.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["records"] == 1 and summary["files"] == [str(tmp_path / "prefs.jsonl")]
    assert summary["counts"]["pair_tie"] == 1 and summary["counts"]["pair_tie_and_side"] == 1
    (pair,) = read_records(DataSource(path=str(tmp_path / "prefs.jsonl")))[0]
    assert (pair.chosen, pair.rejected, pair.id) == (data["text1"], data["text2"], f"{data['rewardlab_id']}#3")


def test_label_studio_buckets_from_the_cli_read_back_as_tiers_and_an_unplaced_item_is_skipped(tmp_path, capsys):
    """`--ls-ranking buckets` writes Ranker with Best/OK/Worst buckets and tasks that name them; responses in one
    bucket are tied, ranks follow the tiers whatever the order of the keys in the export (a database may reorder
    them), and an annotation that leaves a response unplaced is skipped with a count — the others still read."""
    rows = [{"id": "g", "prompt": "Rank.", "responses": ["w", "x", "y", "z"]}]
    ls, _ = to_label_studio(tmp_path, capsys, rows, "--ls-ranking", "buckets")
    config = (ls / "config_ranking.xml").read_text()
    buckets = [line.strip() for line in config.splitlines() if "<Bucket" in line]
    assert buckets == ['<Bucket name="best" title="Best"/>', '<Bucket name="ok" title="OK"/>',
                       '<Bucket name="worst" title="Worst"/>']  # fmt: skip
    data = json.loads((ls / "tasks_ranking.json").read_text())[0]["data"]
    assert data["buckets"] == ["best", "ok", "worst"]
    r1, r2, r3, r4 = (item["id"] for item in data["items"])
    tiers = {"worst": [r1], "_": [], "ok": [r2, r4], "best": [r3]}
    unplaced = {"_": [r4], "best": [r1, r2], "ok": [], "worst": [r3]}
    annotations = [ls_annotation(1, ls_ranker(tiers)), ls_annotation(2, ls_ranker(unplaced))]
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task(1, data, annotations)]))
    assert main(["label", "--from-label-studio", str(export), "--out", str(tmp_path / "prefs.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == [str(tmp_path / "prefs.groups.jsonl")] and summary["counts"]["rank_unplaced"] == 1
    (group,) = read_records(DataSource(path=str(tmp_path / "prefs.groups.jsonl")))[0]
    assert (group.responses, group.ranks, group.id) == (("w", "x", "y", "z"), (3, 2, 1, 2), "g#1")


def test_label_studio_skipped_empty_and_unlabeled_are_counted_and_reported(tmp_path, capsys, caplog):
    """Cancelled (Label Studio's Skip) and empty annotations, and tasks nobody labeled, give no record but are
    counted: in the import summary, in the reader's counts, and in a warning when training reads the export."""
    ls, _ = to_label_studio(tmp_path, capsys, pair_rows(make_pairs(3, seed=5)))
    tasks = json.loads((ls / "tasks_pairwise.json").read_text())
    export = tmp_path / "export.json"
    export.write_text(json.dumps([
        ls_task(1, tasks[0]["data"], [ls_annotation(1, ls_pick("left")), ls_annotation(2, cancelled=True)]),
        ls_task(2, tasks[1]["data"], [ls_annotation(1)]),  # submitted with nothing picked
        ls_task(3, tasks[2]["data"], []),
    ]))  # fmt: skip
    assert main(["label", "--from-label-studio", str(export), "--out", str(tmp_path / "prefs.jsonl")]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert {k: counts[k] for k in ("pair_skip", "pair_empty", "pair_unlabeled")} == {
        "pair_skip": 1, "pair_empty": 1, "pair_unlabeled": 1}  # fmt: skip
    caplog.clear()
    records, report = read_records(DataSource(path=str(export)))
    assert len(records) == 1 and report.counts["pair_skip"] == 1
    assert "annotations left out: pair_skip 1, pair_empty 1, pair_unlabeled 1" in caplog.text
    # Nothing left to read is an error that says why, not an empty dataset.
    export.write_text(json.dumps([ls_task(1, tasks[0]["data"], [ls_annotation(2, cancelled=True)])]))
    assert main(["label", "--from-label-studio", str(export), "--out", str(tmp_path / "none.jsonl")]) == 2
    assert "no annotation gives a record (pair_skip 1)" in capsys.readouterr().err
    assert not (tmp_path / "none.jsonl").exists()


def test_label_studio_an_annotator_who_labels_twice_keeps_the_last_label(tmp_path, capsys):
    """Two annotations of one item by one annotator are one label, the last: the latest `updated_at` (here the
    first in the file), else the last in the file; the others are counted, and every record id is unique — also
    when the task was imported twice."""
    ls, _ = to_label_studio(tmp_path, capsys, pair_rows(make_pairs(1, seed=5)))
    data = json.loads((ls / "tasks_pairwise.json").read_text())[0]["data"]
    later = ls_annotation(1, ls_pick("right"), updated="2025-06-02T09:00:00Z")
    earlier = ls_annotation(1, ls_pick("left"), updated="2025-06-01T09:00:00.123456Z")
    other = ls_annotation(2, ls_pick("left"))
    undated = {**ls_annotation(2, ls_pick("right")), "updated_at": None, "created_at": None}
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task(1, data, [later, other, earlier]), ls_task(2, data, [undated])]))
    assert main(["label", "--from-label-studio", str(export), "--out", str(tmp_path / "prefs.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["duplicates_dropped"] == 2
    records, _ = read_records(DataSource(path=str(tmp_path / "prefs.jsonl")))
    key = data["rewardlab_id"]
    assert sorted((r.id, r.chosen) for r in records) == [(f"{key}#1", data["text2"]), (f"{key}#2", data["text2"])]


def test_label_studio_shows_images_and_leaves_description_checks_out_with_a_count(tmp_path, capsys):
    """Items with images go to their own project whose config shows the image (a local file as Label Studio's
    local-files URL); the read-back keeps the images. Description checks have no Label Studio config: they are left
    out, and the command says how many and why."""
    (tmp_path / "shots").mkdir()
    shot = "shots/page 1.png"
    rows = [{"id": "p1", "prompt": "Which fits the page?", "chosen": "A blue header.", "rejected": "A red header.",
             "images": [shot]},
            {"id": "c1", "prompt": "Describe it.", "images": [shot], "descriptions": ["A", "B"]}]  # fmt: skip
    ls, err = to_label_studio(tmp_path, capsys, rows)
    assert "1 pairwise tasks with images" in err and "1 description-check items left out" in err
    assert sorted(p.name for p in ls.iterdir()) == ["config_pairwise_images.xml", "tasks_pairwise_images.json"]
    assert '<Image name="image" value="$image"/>' in (ls / "config_pairwise_images.xml").read_text()
    data = json.loads((ls / "tasks_pairwise_images.json").read_text())[0]["data"]
    shot = tmp_path / "shots" / "page 1.png"
    assert data["images"] == [str(shot)]
    assert data["image"] == "/data/local-files/?d=" + str(shot).lstrip("/").replace(" ", "%20")
    export = tmp_path / "export.json"
    export.write_text(json.dumps([ls_task(1, data, [ls_annotation(1, ls_pick("left"))])]))
    (pair,) = read_records(DataSource(path=str(export)))[0]
    assert pair.images == (str(shot),)


@pytest.mark.parametrize(
    ("ranker", "buckets", "message"),
    [
        ({"best": ["Response 1"], "meh": ["Response 2"]}, ["best", "ok", "worst"], "buckets ['meh'] are not the task"),
        ({"best": ["Response 1"], "worst": ["Response 2"]}, None, "needs their order"),
        ({"rank": ["Response 1", "Response 9"]}, None, "items the task does not have (Response 9"),
    ],
)
def test_a_label_studio_result_that_does_not_fit_its_task_is_a_clear_error(tmp_path, capsys, ranker, buckets,
                                                                          message):  # fmt: skip
    """A ranking that names unknown buckets or items, or buckets whose order the task does not give, fails with
    file, row and field; exit 2 and nothing written."""
    data = {"rewardlab_id": "g", "prompt": "Rank.", "items": [{"id": "Response 1", "body": "x"},
                                                               {"id": "Response 2", "body": "y"}]}  # fmt: skip
    if buckets:
        data["buckets"] = buckets
    export = tmp_path / "export.json"
    fits = {"best": ["Response 2"], "worst": ["Response 1"]} if buckets else {"rank": ["Response 2", "Response 1"]}
    good = ls_annotation(1, ls_ranker(fits))
    export.write_text(json.dumps([ls_task(1, data, [good]), ls_task(2, data, [ls_annotation(2, ls_ranker(ranker))])]))
    assert main(["label", "--from-label-studio", str(export), "--out", str(tmp_path / "prefs.jsonl")]) == 2
    err = capsys.readouterr().err
    assert f"{export}:2:annotations[0]: " in err and message in err
    assert list(tmp_path.iterdir()) == [export]


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
