"""Readers: every format and record form, every validation error (exact file:row:field), and the real data sets."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rewardlab.config.schema import DataSource
from rewardlab.data.prompts import extract_prompt, split_common_messages
from rewardlab.data.readers import read_records
from rewardlab.data.records import PreferencePair, RankedGroup
from rewardlab.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "readers"
HH = "\n\nHuman: "
AS = "\n\nAssistant:"


def read(path: Path | str, **options: Any):
    return read_records(DataSource(path=str(path), **options))


def read_error(path: Path | str, **options: Any) -> str:
    with pytest.raises(DataError) as caught:
        read(path, **options)
    return str(caught.value)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- formats

ROWS = [
    {"id": "1", "prompt": "2+2?", "chosen": "4", "rejected": "5", "margin": 1.5, "subset": "math", "images": "a.png"},
    {
        "id": "2",
        "prompt": "Sky?",
        "chosen": "Blue",
        "rejected": "Green",
        "margin": None,
        "subset": "sci",
        "images": None,
    },
]
EXPECTED = [
    PreferencePair("2+2?", "4", "5", images=("a.png",), margin=1.5, id="1", subset="math"),
    PreferencePair("Sky?", "Blue", "Green", id="2", subset="sci"),
]


def _jsonl(d: Path) -> dict[str, Any]:
    return {"path": write_jsonl(d / "data.jsonl", ROWS)}


def _jsonl_gz(d: Path) -> dict[str, Any]:
    (d / "data.jsonl.gz").write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode()))
    return {"path": d / "data.jsonl.gz"}


def _json_list(d: Path) -> dict[str, Any]:
    (d / "data.json").write_text(json.dumps(ROWS, indent=2))
    return {"path": d / "data.json"}


def _json_lines(d: Path) -> dict[str, Any]:
    return {"path": write_jsonl(d / "data.json", ROWS)}


def _json_gz(d: Path) -> dict[str, Any]:
    (d / "data.json.gz").write_bytes(gzip.compress(json.dumps(ROWS).encode()))
    return {"path": d / "data.json.gz"}


def _csv_text() -> str:
    lines = [",".join(ROWS[0])] + [",".join("" if v is None else str(v) for v in row.values()) for row in ROWS]
    return "\n".join(lines) + "\n"


def _csv(d: Path) -> dict[str, Any]:
    (d / "data.csv").write_text(_csv_text())
    return {"path": d / "data.csv"}


def _csv_gz(d: Path) -> dict[str, Any]:
    (d / "data.csv.gz").write_bytes(gzip.compress(_csv_text().encode()))
    return {"path": d / "data.csv.gz"}


def _parquet(d: Path) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(ROWS), d / "data.parquet")
    return {"path": d / "data.parquet"}


def _dataset_dir(d: Path) -> dict[str, Any]:
    import datasets

    datasets.Dataset.from_list(ROWS).save_to_disk(str(d / "ds"))
    return {"path": d / "ds"}


def _dataset_dict_dir(d: Path) -> dict[str, Any]:
    import datasets

    other = datasets.Dataset.from_list(ROWS[:1])
    datasets.DatasetDict({"train": other, "test": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(d / "dd"))
    return {"path": d / "dd", "split": "test"}


def _hub_local_dir(d: Path) -> dict[str, Any]:
    (d / "hub").mkdir()
    write_jsonl(d / "hub" / "train.jsonl", ROWS)
    return {"path": d / "hub", "format": "hub"}


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    """Keep `datasets` offline and its cache inside the test's temporary directory."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)


@pytest.mark.parametrize(
    ("writer", "fmt"),
    [
        (_jsonl, "jsonl"),
        (_jsonl_gz, "jsonl"),
        (_json_list, "json"),
        (_json_lines, "json"),
        (_json_gz, "json"),
        (_csv, "csv"),
        (_csv_gz, "csv"),
        (_parquet, "parquet"),
        (_dataset_dir, "datasets_dir"),
        (_dataset_dict_dir, "datasets_dir"),
        (_hub_local_dir, "hub"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_every_format_gives_the_same_records(tmp_path, datasets_cache, writer, fmt):
    records, report = read_records(DataSource(**{k: str(v) for k, v in writer(tmp_path).items()}))
    assert records == EXPECTED
    assert (report.format, report.rows, report.records) == (fmt, 2, 2)
    assert report.counts == {"images": 1, "margin": 1}


def test_hub_name_goes_to_load_dataset_with_name_and_split(monkeypatch):
    import datasets

    calls = []

    def fake_load_dataset(path, name, split):
        calls.append((path, name, split))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    records, report = read("some-org/some-prefs", name="harmless", split="test")
    assert calls == [("some-org/some-prefs", "harmless", "test")]
    assert records == EXPECTED and report.format == "hub"


def test_hub_unknown_split_is_a_data_error(tmp_path, datasets_cache):
    path = _hub_local_dir(tmp_path)["path"]
    assert read_error(path, format="hub", split="validation").startswith(f"{path}: cannot load it as a hub dataset")


# ---------------------------------------------------------------------------------------------- pair forms


def test_explicit_pairs_with_margin_images_id_and_subset():
    records, report = read(FIXTURES / "pairs_explicit.jsonl")
    assert records == [
        PreferencePair(
            "What is 2+2?", "4", "5", images=("img/a.png", "img/b.png"), margin=2.0, id="a1", subset="math"
        ),
        PreferencePair("Capital of France?", "Paris", "Lyon", images=("img/c.png",), id="a2", subset="geo"),
        PreferencePair("", "Hello there", "Go away"),
    ]
    assert (report.rows, report.records, report.counts) == (3, 3, {"margin": 1, "images": 2})


def test_implicit_prompt_from_transcripts_and_plain_strings(tmp_path):
    rows = [
        {"chosen": f"{HH}Hi{AS} Hello!{HH}Joke?{AS} Knock knock.", "rejected": f"{HH}Hi{AS} Hello!{HH}Joke?{AS} No."},
        {"chosen": "The answer is yes", "rejected": "The answer is no"},
        {"chosen": "Yes", "rejected": "No"},
    ]
    records, report = read(write_jsonl(tmp_path / "implicit.jsonl", rows))
    assert [(r.prompt, r.chosen, r.rejected) for r in records] == [
        (f"{HH}Hi{AS} Hello!{HH}Joke?{AS}", " Knock knock.", " No."),
        ("The answer is", " yes", " no"),
        ("", "Yes", "No"),
    ]
    assert report.counts == {"implicit_prompt": 3, "implicit_prompt_empty": 1}


def test_conversational_implicit_prompt_is_the_common_leading_messages():
    records, report = read(FIXTURES / "conversational.jsonl")
    assert records[0] == PreferencePair(
        prompt=[{"role": "user", "content": "Hi"}],
        chosen=[{"role": "assistant", "content": "Hello! How can I help?"}],
        rejected=[{"role": "assistant", "content": "What."}],
    )
    assert records[1].prompt == [{"role": "user", "content": "2+2?"}]
    assert records[1].rejected == [{"role": "assistant", "content": "5"}]
    assert report.counts == {"implicit_prompt": 2}


def test_conversational_explicit_prompt_is_kept(tmp_path):
    user = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    row = {
        "prompt": user,
        "chosen": [{"role": "assistant", "content": "Hi!"}],
        "rejected": [{"role": "assistant", "content": "Go."}],
    }
    (record,), report = read(write_jsonl(tmp_path / "conv.jsonl", [row]))
    assert record == PreferencePair(user, row["chosen"], row["rejected"]) and report.counts == {}


MISMATCH = {"chosen": f"{HH}A{AS} x{HH}B{AS} y", "rejected": f"{HH}A{AS} z"}


@pytest.mark.parametrize(
    ("policy", "n", "counts"),
    [
        ("common_prefix", 2, {"implicit_prompt": 2, "prefix_mismatch_common_prefix": 1}),
        ("drop", 1, {"implicit_prompt": 1, "prefix_mismatch_dropped": 1}),
    ],
)
def test_prefix_mismatch_policies(tmp_path, policy, n, counts):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": f"{HH}Q{AS} a", "rejected": f"{HH}Q{AS} b"}, MISMATCH])
    records, report = read(path, prefix_mismatch=policy)
    assert len(records) == n and report.counts == counts and report.rows == 2
    if policy == "common_prefix":
        assert (records[1].prompt, records[1].chosen, records[1].rejected) == (f"{HH}A{AS}", f" x{HH}B{AS} y", " z")


def test_prefix_mismatch_error_names_the_row(tmp_path):
    path = write_jsonl(tmp_path / "hh.jsonl", [{"chosen": f"{HH}Q{AS} a", "rejected": f"{HH}Q{AS} b"}, MISMATCH])
    message = read_error(path, prefix_mismatch="error")
    assert (
        message.startswith(f"{path}:2:chosen: chosen and rejected transcripts differ") and "prefix_mismatch" in message
    )


def test_column_mapping():
    path = FIXTURES / "mapped.csv"
    records, _ = read(path, columns={"prompt": "question", "chosen": "answer_a", "rejected": "answer_b"})
    assert records == [PreferencePair("Is water wet?", "Yes.", "No.")]
    message = read_error(path)
    assert message.startswith(
        f"{path}:2: cannot read records from the columns found ('question', 'answer_a', 'answer_b')"
    )
    assert "`columns:" in message


def test_max_samples_keeps_the_first_records():
    records, report = read(FIXTURES / "pairs_explicit.jsonl", max_samples=2)
    assert [r.id for r in records] == ["a1", "a2"] and (report.rows, report.records) == (2, 2)
    groups, report = read(FIXTURES / "ranked.csv", max_samples=1)
    assert [g.prompt for g in groups] == ["Name a fruit."] and (report.rows, report.records) == (5, 1)


# ---------------------------------------------------------------------------------------------- prompt extraction


def test_extract_prompt_cases():
    assert extract_prompt(f"{HH}Hi{AS} A", f"{HH}Hi{AS} B") == (f"{HH}Hi{AS}", " A", " B", True)
    assert extract_prompt("Hi there", "Hi there friend") == ("Hi", " there", " there friend", True)
    assert extract_prompt("abc", "abd") == ("", "abc", "abd", True)
    # one transcript, one not: no shared marker, so the prompt is empty and the prefixes do not match
    assert extract_prompt(f"{HH}a{AS} b", "plain") == ("", f"{HH}a{AS} b", "plain", False)
    # different number of turns: the common prefix is cut back to the last marker inside it
    assert extract_prompt(f"{HH}a{AS} b{HH}c{AS} d", f"{HH}a{AS} e") == (f"{HH}a{AS}", f" b{HH}c{AS} d", " e", False)


@pytest.mark.parametrize(
    ("chosen", "rejected"),
    [(f"{HH}a{AS} b{HH}c{AS} d", f"{HH}a{AS} b{HH}x{AS} d"), ("same words here", "same words there"), ("", "x")],
)
def test_extract_prompt_reassembles_the_inputs(chosen, rejected):
    prompt, c, r, _ = extract_prompt(chosen, rejected)
    assert (prompt + c, prompt + r) == (chosen, rejected)


def test_split_common_messages():
    u, a, b = (
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
        {"role": "assistant", "content": "b"},
    )
    assert split_common_messages([u, a], [u, b]) == ([u], [a], [b])
    assert split_common_messages([a], [b]) == ([], [a], [b])


# ---------------------------------------------------------------------------------------------- ranked data


def test_ranked_csv_groups_by_prompt_with_ties_and_gaps():
    groups, report = read(FIXTURES / "ranked.csv")
    assert groups == [
        RankedGroup("Name a fruit.", ("apple", "rock,\nstone", "banana"), (1, 3, 1), id="2"),
        RankedGroup("Best colour?", ("blue", "grey"), (1, 2), id="5"),
    ]
    # apple and banana tie (rank 1): no pair between them; both beat rock (rank 3, a gap after 1)
    assert [(p.chosen, p.rejected) for p in groups[0].to_pairs()] == [
        ("apple", "rock,\nstone"),
        ("banana", "rock,\nstone"),
    ]
    assert report.rows == 5 and report.counts == {"groups": 2, "ranked_pairs": 3, "ties": 1}


def test_ranked_without_ties_expands_to_all_ordered_pairs(tmp_path):
    path = tmp_path / "ranked.csv"
    path.write_text("prompt,answer,rank\n" + "".join(f"q,r{rank},{rank}\n" for rank in (3, 1, 4, 2)))
    (group,), report = read(path)
    pairs = group.to_pairs()
    assert len(pairs) == 4 * 3 // 2 == report.counts["ranked_pairs"] and "ties" not in report.counts
    assert all(int(p.chosen[1:]) < int(p.rejected[1:]) for p in pairs)


def test_ranked_jsonl_groups_both_forms():
    groups, report = read(FIXTURES / "groups.jsonl")
    assert groups == [
        RankedGroup("Say hi.", ("Hi!", "hi", "..."), (1, 2, 3), id="7", subset="helpful"),
        RankedGroup("Count to 2.", ("1 2", "1", "2 1", "one two"), (1, 2, 3, 1), id="g2"),
    ]
    assert [len(g.to_pairs()) for g in groups] == [3, 5]
    assert report.counts == {"groups": 2, "ranked_pairs": 8, "ties": 1}
    assert read(FIXTURES / "groups.jsonl", kind="ranked")[0] == groups


# ---------------------------------------------------------------------------------------------- validation

OK = '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
USER = {"role": "user", "content": "q"}

# (file name, content, options, expected start "row:field: message" after "<path>:")
ERRORS = [
    (
        "missing.jsonl",
        OK + '{"prompt": "p", "chosen": "a", "answer": "b"}\n',
        {},
        "2:rejected: missing required field 'rejected' (columns found: 'prompt', 'chosen', 'answer')",
    ),
    (
        "empty.jsonl",
        OK + "\n" + '{"prompt": "p", "chosen": "", "rejected": "b"}\n',
        {},
        "3:chosen: is an empty string",
    ),
    (
        "empty_list.jsonl",
        json.dumps({"prompt": [USER], "chosen": [], "rejected": [{"role": "assistant", "content": "x"}]}) + "\n",
        {},
        "1:chosen: is an empty list of messages",
    ),
    (
        "number.jsonl",
        '{"prompt": "p", "chosen": 3, "rejected": "b"}\n',
        {},
        "1:chosen: must be a string or a list of chat messages, got a number (3)",
    ),
    ("null_prompt.jsonl", '{"prompt": null, "chosen": "a", "rejected": "b"}\n', {}, "1:prompt: is null"),
    (
        "mixed.jsonl",
        '{"prompt": "p", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]}\n',
        {},
        "1:rejected: is a list but 'chosen' is a string",
    ),
    (
        "message.jsonl",
        '{"chosen": [{"role": "user"}], "rejected": [{"role": "user", "content": "b"}]}\n',
        {},
        "1:chosen[0]: is not a chat message",
    ),
    (
        "margin.jsonl",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}\n',
        {},
        "1:margin: margin must be a finite number, got 'big'",
    ),
    (
        "margin.csv",
        "prompt,chosen,rejected,margin\np,a,b,0.5\np,a,b,abc\n",
        {},
        "3:margin: margin must be a finite number",
    ),
    (
        "images.jsonl",
        '{"prompt": "p", "chosen": "a", "rejected": "b", "images": ["x.png", 1]}\n',
        {},
        "1:images[1]: must be an image path or URL",
    ),
    (
        "id.jsonl",
        '{"id": [1], "prompt": "p", "chosen": "a", "rejected": "b"}\n',
        {},
        "1:id: must be a string or an integer",
    ),
    (
        "same.jsonl",
        OK + '{"prompt": "p", "chosen": "a", "rejected": "a"}\n',
        {},
        "2:chosen: chosen and rejected are identical",
    ),
    (
        "same_implicit.jsonl",
        json.dumps({"chosen": f"{HH}q{AS} a", "rejected": f"{HH}q{AS} a"}) + "\n",
        {},
        "1:chosen: chosen and rejected are identical (after removing the shared prompt)",
    ),
    (
        "empty_after.jsonl",
        json.dumps({"chosen": f"{HH}q{AS}", "rejected": f"{HH}q{AS} a"}) + "\n",
        {},
        "1:chosen: is empty after removing the shared prompt",
    ),
    (
        "later_prompt.jsonl",
        '{"chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": "a", "rejected": "b"}\n',
        {},
        "2:prompt: has a prompt but the first row has none",
    ),
    ("malformed.jsonl", OK + '{"prompt": "p", "chosen": "a",\n', {}, "2: malformed JSON"),
    ("not_object.jsonl", "[1, 2]\n", {}, "1: expected a JSON object, got a list"),
    ("not_list.json", '{"data": []}', {}, " a .json file must hold a list of objects"),
    ("numbers.json", "[1, 2]", {}, "1: list item is a number, expected an object"),
    ("broken.json", '[{"a": 1},\n', {}, "2: malformed JSON"),
    ("empty.jsonl", "", {}, " has no rows"),
    ("blank.jsonl", "\n\n", {}, " has no rows"),
    ("empty.json", "[]", {}, " has no rows"),
    ("header_only.csv", "prompt,chosen,rejected\n", {}, " has no rows"),
    ("empty.csv", "", {}, " has no rows"),
    ("ragged.csv", "prompt,chosen,rejected\np,a,b,c\n", {}, "2: has 4 fields but the header (line 1) has 3"),
    ("multiline.csv", 'prompt,chosen,rejected\n"two\nlines",a,b\np,,b\n', {}, "4:chosen: is an empty string"),
    (
        "rank.csv",
        "prompt,answer,rank\nq,a,1\nq,b,high\n",
        {},
        "3:rank: rank must be an integer ≥ 1 (1 = best), got 'high'",
    ),
    ("rank0.csv", "prompt,answer,rank\nq,a,1\nq,b,0\n", {}, "3:rank: rank must be an integer ≥ 1"),
    (
        "ranks.jsonl",
        '{"prompt": "q", "responses": ["a", "b"], "ranks": [1, 1.5]}\n',
        {},
        "1:ranks[1]: rank must be an integer ≥ 1 (1 = best), got 1.5",
    ),
    (
        "nranks.jsonl",
        '{"prompt": "q", "responses": ["a", "b"], "ranks": [1]}\n',
        {},
        "1:ranks: must be a list of 2 integer ranks (one per response, 1 = best), got 1 ranks",
    ),
    (
        "one.csv",
        "prompt,answer,rank\nq,a,1\nr,b,1\nr,c,2\n",
        {},
        "2:answer: a ranked group needs at least 2 responses, got 1",
    ),
    (
        "one.jsonl",
        '{"prompt": "q", "responses_best_to_worst": ["a"]}\n',
        {},
        "1:responses_best_to_worst: a ranked group needs at least 2 responses, got 1",
    ),
    (
        "dupe.jsonl",
        '{"prompt": "q", "responses": ["a", "a"], "ranks": [1, 2]}\n',
        {},
        "1:responses: responses 0 and 1 are identical but ranked 1 and 2",
    ),
    (
        "kind.jsonl",
        '{"question": "q", "answer_a": "a"}\n',
        {},
        "1: cannot read records from the columns found ('question', 'answer_a')",
    ),
    ("ranked_kind.jsonl", OK, {"kind": "ranked"}, "1: cannot read ranked data from the columns found"),
    ("pairs_kind.csv", "prompt,answer,rank\nq,a,1\n", {"kind": "pairs"}, "2:chosen: missing required field 'chosen'"),
    ("data.txt", OK, {}, " cannot tell the format from the suffix '.txt'"),
    ("data.parquet.gz", OK, {}, " cannot tell the format from the suffix '.parquet.gz'"),
]


@pytest.mark.parametrize(("name", "content", "options", "expected"), ERRORS, ids=[e[0] for e in ERRORS])
def test_invalid_input_raises_data_error_with_file_row_field(tmp_path, name, content, options, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert read_error(path, **options).startswith(f"{path}:{expected}")


def test_missing_field_error_hints_the_columns_mapping(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "a", "answer": "b"}])
    assert "map it in the config, e.g. `columns: {rejected: your_column}`" in read_error(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_non_utf8_bytes_name_the_line(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    header = b"prompt,chosen,rejected\np,a,b\n" if suffix == ".csv" else OK.encode() * 2
    path.write_bytes(header + b"p,caf\xe9,b\n")
    assert read_error(path).startswith(f"{path}:3: line 3 is not valid UTF-8 (byte 0xe9)")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(OK.encode() * 50)[:40])
    assert read_error(path).startswith(f"{path}: cannot decompress the gzip file")


def test_parquet_errors_give_the_record_position(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "", "rejected": "b"}]
        ),
        path,
    )
    assert read_error(path).startswith(f"{path}:2:chosen: is an empty string")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    assert read_error(tmp_path / "junk.parquet").startswith(
        f"{tmp_path / 'junk.parquet'}: not a readable Parquet file"
    )


@pytest.mark.parametrize("path", ["missing.jsonl", "data/missing.csv.gz", "./missing", "a/b/c"])
def test_missing_paths_that_look_like_files_are_not_sent_to_the_hub(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    assert read_error(path).startswith(f"{path}: file not found")


def test_directory_errors(tmp_path):
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "dd"))
    assert read_error(tmp_path / "dd", split="validation").startswith(
        f"{tmp_path / 'dd'}: has no split 'validation' (splits: train)"
    )
    (tmp_path / "plain").mkdir()
    assert "is not a directory written by `save_to_disk`" in read_error(tmp_path / "plain", format="datasets_dir")
    assert "is a directory, but `format: csv` needs a file" in read_error(tmp_path / "plain", format="csv")


# ---------------------------------------------------------------------------------------------- real data


def test_hh_rlhf_harmless_test_default_policy(shared_data_dir):
    path = shared_data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    pairs, report = read(path)
    assert len(pairs) == 2312 and report.rows == 2312
    assert report.counts["prefix_mismatch_common_prefix"] == 5 and report.counts["implicit_prompt"] == 2312
    assert all(isinstance(p, PreferencePair) and p.prompt.endswith(AS) for p in pairs)
    assert not any(p.chosen == p.rejected for p in pairs)
    assert all(p.chosen.startswith(" ") and p.rejected.startswith(" ") for p in pairs)


def test_hh_rlhf_harmless_test_drop_and_error(shared_data_dir):
    path = shared_data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
    pairs, report = read(path, prefix_mismatch="drop")
    assert len(pairs) == 2307 and report.counts["prefix_mismatch_dropped"] == 5
    assert read_error(path, prefix_mismatch="error").startswith(f"{path}:1255:chosen: chosen and rejected transcripts")


def test_hhh_alignment_rankings(shared_data_dir):
    groups, report = read(shared_data_dir / "hhh-alignment" / "hhh_alignment_rankings.jsonl")
    assert len(groups) == 100 and all(isinstance(g, RankedGroup) for g in groups)
    assert Counter(len(g.responses) for g in groups) == {2: 60, 3: 31, 4: 8, 6: 1}
    assert sum(len(g.to_pairs()) for g in groups) == 60 + 31 * 3 + 8 * 6 + 15 == 216 == report.counts["ranked_pairs"]
    assert {g.subset for g in groups} == {"harmless", "helpful", "honest", "other"}


def test_hhh_alignment_pairs(shared_data_dir):
    pairs, _ = read(shared_data_dir / "hhh-alignment" / "hhh_alignment_pairs.jsonl")
    assert len(pairs) == 221 and all(isinstance(p, PreferencePair) for p in pairs)
    assert Counter(p.subset for p in pairs) == {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}
    assert pairs[0].id == "0"
