"""`rewardlab inspect`: every problem listed with its row, exact counts and length statistics, the real data sets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rewardlab.config.schema import DataSource, InspectConfig
from rewardlab.data.readers import read_records, read_records_lenient
from rewardlab.errors import DataError, ModelError
from rewardlab.recipes.inspect import render_inspect, run_inspect, summarize


def inspect(path: Path | str, **options: Any) -> dict[str, Any]:
    data = {"path": str(path), **options.pop("data", {})}
    report = run_inspect(InspectConfig(data=data, **options))
    assert json.loads(json.dumps(report)) is not None  # JSON-serialisable as is
    return report


def write_lines(path: Path, lines: list[str | dict[str, Any]]) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def words(n: int, word: str = "w") -> str:
    return " ".join([word] * n)


# ---------------------------------------------------------------------------------------------- pairs

GOOD = {"prompt": "p1", "chosen": "a b c", "rejected": "d e"}
PAIR_LINES: list[str | dict[str, Any]] = [
    GOOD,  # line 1
    {"prompt": "p2", "chosen": "x", "rejected": "y"},  # 2
    GOOD,  # 3: repeats line 1
    {"prompt": "p3", "chosen": "same", "rejected": "same"},  # 4: identical
    {"prompt": "p4", "chosen": "c"},  # 5: no rejected
    {"prompt": "p5", "chosen": "", "rejected": "r"},  # 6: empty response
    "",  # 7: blank, skipped
    "{bad json",  # 8
    {"prompt": "p2", "chosen": "z", "rejected": "y"},  # 9: repeated prompt, not a duplicate record
]


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "pairs.jsonl", PAIR_LINES)


def test_pairs_every_problem_listed_with_row_and_field(pairs_file):
    report = inspect(pairs_file)
    assert (report["format"], report["form"], report["kind"], report["prompt"], report["text"]) == (
        "jsonl",
        "pairs",
        "pairs",
        "explicit",
        "strings",
    )
    assert (report["rows"], report["records"]) == (8, 4)
    assert report["columns"] == ["prompt", "chosen", "rejected"]
    problems = report["problems"]
    assert problems["count"] == 4 and problems["identical_pairs"] == 1
    assert [(p["row"], p["field"]) for p in problems["listed"]] == [
        (4, "chosen"),
        (5, "rejected"),
        (6, "chosen"),
        (8, None),
    ]
    assert problems["listed"][0]["message"].startswith("chosen and rejected are identical")
    assert problems["listed"][1]["message"].startswith("missing required field 'rejected'")
    assert problems["listed"][2]["message"].startswith("is an empty string")
    assert problems["listed"][3]["message"].startswith("malformed JSON")
    assert problems["by_field"] == {"chosen": 2, "rejected": 1, "(row)": 1}
    assert report["duplicates"] == {"records": 1, "unique_prompts": 2, "repeated_prompts": 2}
    assert report["ranked"] is None and report["margin"] is None and report["subsets"] is None


def test_max_errors_limits_the_list_not_the_count(pairs_file):
    problems = inspect(pairs_file, max_errors=2)["problems"]
    assert problems["count"] == 4 and [p["row"] for p in problems["listed"]] == [4, 5]


def test_strict_reader_still_stops_at_the_first_bad_row(pairs_file):
    with pytest.raises(DataError, match=r"pairs\.jsonl:4:chosen: chosen and rejected are identical"):
        read_records(DataSource(path=str(pairs_file)))


def test_lenient_reader_returns_good_records_and_errors(pairs_file):
    result = read_records_lenient(DataSource(path=str(pairs_file)))
    assert [r.chosen for r in result.records] == ["a b c", "x", "a b c", "z"]
    assert result.record_rows == [1, 2, 3, 9]  # the line each record was read from
    assert [(e.row, e.field) for e in result.errors] == [(4, "chosen"), (5, "rejected"), (6, "chosen"), (8, None)]
    assert {e.source for e in result.errors} == {str(pairs_file)}
    assert (result.form, result.explicit_prompt, result.report.rows, result.report.records) == ("pairs", True, 8, 4)


def test_invalid_utf8_line_is_a_row_problem(tmp_path):
    path = tmp_path / "latin.jsonl"
    good = json.dumps(GOOD).encode()
    path.write_bytes(good + b"\n" + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n' + good + b"\n")
    report = inspect(path)
    assert report["records"] == 2 and report["rows"] == 3
    assert [(p["row"], p["field"]) for p in report["problems"]["listed"]] == [(2, None)]
    assert "not valid UTF-8 (byte 0xe9)" in report["problems"]["listed"][0]["message"]
    with pytest.raises(DataError, match="latin.jsonl:2: line 2 is not valid UTF-8"):
        read_records(DataSource(path=str(path)))


def test_csv_wrong_cell_count_is_a_row_problem(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("prompt,chosen,rejected,margin\np,a,b,1.5\np,a,b,c,d\nq,a,b,\n", encoding="utf-8")
    report = inspect(path)
    assert (report["rows"], report["records"]) == (3, 2)
    assert [(p["row"], p["field"]) for p in report["problems"]["listed"]] == [(3, None)]
    assert report["margin"]["missing"] == 1 and report["margin"]["summary"]["max"] == 1.5


def test_margin_and_subset_found_beyond_the_first_row(tmp_path):
    lines = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {**GOOD, "margin": 2, "subset": "s"}]
    report = inspect(write_lines(tmp_path / "late.jsonl", lines))
    assert report["margin"] == {"summary": summarize([2.0]), "missing": 1}
    assert report["subsets"] == {"(none)": 1, "s": 1}
    assert report["examples"][1] == {
        "prompt": "p1",
        "chosen": "a b c",
        "rejected": "d e",
        "margin": 2.0,
        "subset": "s",
    }


def test_failed_rows_leave_no_reader_counts(tmp_path):
    hh, ass = "\n\nHuman: hi", "\n\nAssistant:"
    lines = [
        {"chosen": f"{hh}{ass} yes", "rejected": f"{hh}{ass} no"},
        {"chosen": f"{hh}{ass} same", "rejected": f"{hh}{ass} same"},  # identical after the shared prompt
    ]
    report = inspect(write_lines(tmp_path / "hh.jsonl", lines))
    assert report["prompt"] == "implicit" and report["records"] == 1
    assert report["reader_counts"] == {"implicit_prompt": 1}
    assert [(p["row"], p["field"]) for p in report["problems"]["listed"]] == [(2, "chosen")]


def test_no_readable_row_reports_the_problems(tmp_path):
    report = inspect(write_lines(tmp_path / "bad.jsonl", ["{", "[1]"]))
    assert (report["form"], report["kind"], report["records"], report["rows"]) == (None, None, 0, 2)
    assert [p["row"] for p in report["problems"]["listed"]] == [1, 2]
    assert report["lengths"]["prompt"] is None and report["lengths"]["over_max_length"] == {"count": 0, "of": 0}


def test_file_level_problems_still_raise(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        inspect(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match="has no rows"):
        inspect(tmp_path / "empty.jsonl")


ID_LINES: list[str | dict[str, Any]] = [
    {**GOOD, "id": "a"},  # line 1
    {"prompt": "p2", "chosen": "x", "rejected": "y", "id": "b"},  # 2
    {"prompt": "p3", "chosen": "x", "rejected": "z", "id": "a"},  # 3: repeats line 1's id
    "{bad json",  # 4
    {"prompt": "p4", "chosen": "x", "rejected": "w", "id": "a"},  # 5: line 1's id again
    {"prompt": "p5", "chosen": "x", "rejected": "v"},  # 6: no id, never a repeat
    {"prompt": "p6", "chosen": "x", "rejected": "u", "id": 7},  # 7
    {"prompt": "p7", "chosen": "x", "rejected": "t", "id": "7"},  # 8: ids are read as strings: repeats line 7's
    {"prompt": "p8", "chosen": "x", "rejected": "s", "id": "b"},  # 9
]
REPEAT = (
    "id {!r} repeats the id of row {}; ids must be unique: give this record its own id, or remove it if it is a copy"
)


def test_repeated_ids_are_problems_naming_both_rows(tmp_path, capsys):
    path = write_lines(tmp_path / "ids.jsonl", ID_LINES)
    report = inspect(path)
    problems = report["problems"]
    assert problems["count"] == 5 and problems["by_field"] == {"id": 4, "(row)": 1}
    assert problems["listed"][1:] == [
        {"row": 3, "field": "id", "message": REPEAT.format("a", 1)},
        {"row": 5, "field": "id", "message": REPEAT.format("a", 1)},
        {"row": 8, "field": "id", "message": REPEAT.format("7", 7)},
        {"row": 9, "field": "id", "message": REPEAT.format("b", 2)},
    ]  # after the reader's own problems (line 4's JSON)
    assert problems["listed"][0]["row"] == 4 and report["records"] == 8  # the records themselves are all kept
    render_inspect(report)
    out = capsys.readouterr().out
    assert "Problems: 5" in out and "repeats the id of row 1" in out and "No problems found." not in out

    unique = [{**line, "id": f"u{i}"} if isinstance(line, dict) else line for i, line in enumerate(ID_LINES)]
    assert inspect(write_lines(tmp_path / "unique.jsonl", unique))["problems"]["count"] == 1  # only the bad JSON


def test_repeated_ids_use_the_mapped_column_and_a_groups_first_row(tmp_path):
    lines = [{"uid": "x", **GOOD}, {"uid": "x", "prompt": "q", "chosen": "a", "rejected": "b"}]
    problems = inspect(write_lines(tmp_path / "uid.jsonl", lines), data={"columns": {"id": "uid"}})["problems"]
    assert problems["listed"] == [{"row": 2, "field": "uid", "message": REPEAT.format("x", 1)}]
    path = tmp_path / "ranked.csv"  # one response per row: a group's id comes from its first row
    path.write_text("prompt,answer,rank,id\nq1,a,1,g1\nq2,c,1,g1\nq1,b,2,g1\nq2,d,2,g2\nq3,e,1,g3\nq3,f,2,g3\n")
    report = inspect(path)
    assert report["records"] == 3
    assert report["problems"]["listed"] == [{"row": 3, "field": "id", "message": REPEAT.format("g1", 2)}]


# ---------------------------------------------------------------------------------------------- lengths


def test_word_length_percentiles_and_over_max_length(tmp_path):
    # prompt n words (n = 1..10), chosen 2n words, rejected 5 words
    lines = [{"prompt": words(n), "chosen": words(2 * n, "c"), "rejected": words(5, "r")} for n in range(1, 11)]
    report = inspect(write_lines(tmp_path / "len.jsonl", lines), max_length=21)
    lengths = report["lengths"]
    assert lengths["unit"] == "words" and lengths["max_length"] == 21
    assert lengths["prompt"] == {
        "count": 10, "min": 1, "p50": 5.5, "p90": 9.1, "p95": 9.55, "p99": 9.91, "max": 10, "mean": 5.5
    }  # fmt: skip
    assert lengths["chosen"] == {
        "count": 10, "min": 2, "p50": 11.0, "p90": 18.2, "p95": 19.1, "p99": 19.82, "max": 20, "mean": 11.0
    }  # fmt: skip
    assert lengths["rejected"]["min"] == lengths["rejected"]["max"] == lengths["rejected"]["p99"] == 5
    # over when n + 2n > 21: n = 8, 9, 10 (n = 7 is exactly 21: not over)
    assert lengths["over_max_length"] == {"count": 3, "of": 10}
    assert inspect(tmp_path / "len.jsonl", max_length=20)["lengths"]["over_max_length"]["count"] == 4


def test_a_pair_counts_once_when_either_side_is_over(tmp_path):
    lines = [
        {"prompt": words(2), "chosen": words(9), "rejected": words(1)},  # chosen side over 10
        {"prompt": words(2), "chosen": words(1), "rejected": words(9)},  # rejected side over
        {"prompt": words(5), "chosen": words(6), "rejected": words(7)},  # both over: one pair
        {"prompt": words(2), "chosen": words(8), "rejected": words(8, "r")},  # exactly 10: not over
    ]
    report = inspect(write_lines(tmp_path / "over.jsonl", lines), max_length=10)
    assert report["lengths"]["over_max_length"] == {"count": 3, "of": 4}


def test_summarize_matches_linear_interpolation():
    assert summarize([]) is None
    assert summarize([7]) == {"count": 1, "min": 7, "p50": 7, "p90": 7, "p95": 7, "p99": 7, "max": 7, "mean": 7}
    assert summarize([4, 1, 3, 2])["p50"] == 2.5 and summarize([0, 100])["p95"] == 95.0


def test_conversational_pairs_measure_message_contents(tmp_path):
    def msgs(role: str, *contents: str) -> list[dict[str, str]]:
        return [{"role": role, "content": c} for c in contents]

    lines = [{"prompt": msgs("user", "hi there", "and more"), "chosen": msgs("assistant", "a b c"),
              "rejected": msgs("assistant", "d")}]  # fmt: skip
    report = inspect(write_lines(tmp_path / "chat.jsonl", lines))
    assert report["text"] == "messages"
    assert (report["lengths"]["prompt"]["max"], report["lengths"]["chosen"]["max"]) == (4, 3)
    assert report["examples"][0]["prompt"] == "user: hi there\nuser: and more"


def test_token_lengths_with_a_tokenizer(tmp_path):
    from rewardlab.models.tiny import train_tokenizer

    lines = [
        {"prompt": "What is the capital of France?", "chosen": "Paris is.", "rejected": "Lyon, I think, maybe."},
        {"prompt": "Add 2 and 2.", "chosen": "4", "rejected": "The answer is twenty-two."},
        {"prompt": "", "chosen": "Hello hello hello world", "rejected": "Bye"},
    ]
    tok = train_tokenizer([t for line in lines for t in line.values()] * 5, vocab_size=300)
    tok.save_pretrained(tmp_path / "tok")
    report = inspect(write_lines(tmp_path / "tok.jsonl", lines), tokenizer=str(tmp_path / "tok"), max_length=8)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False).input_ids)

    lengths = report["lengths"]
    assert lengths["unit"] == "tokens"
    for field in ("prompt", "chosen", "rejected"):
        assert lengths[field] == summarize([count(line[field]) for line in lines])
    over = sum(count(x["prompt"]) + max(count(x["chosen"]), count(x["rejected"])) > 8 for x in lines)
    assert lengths["over_max_length"] == {"count": over, "of": 3}


def test_bad_tokenizer_is_a_model_error(tmp_path, pairs_file):
    with pytest.raises(ModelError, match="no-such-tokenizer"):
        inspect(pairs_file, tokenizer=str(tmp_path / "no-such-tokenizer"))


# ---------------------------------------------------------------------------------------------- ranked


RANK_CSV = """prompt,answer,rank,source
q1,a,1,math
q2,d,1,chat
q1,b,2,math
q1,c,2,math
q2,e,3,chat
q3,f,1,
q3,g,1,
q4,h,2,chat
q4,i,4,chat
q5,l,1,chat
q4,j,4,chat
q6,m,x,chat
q4,k,1,chat
"""


def test_ranked_rows_groups_ties_gaps(tmp_path):
    path = tmp_path / "ranked.csv"
    path.write_text(RANK_CSV, encoding="utf-8")
    report = inspect(path, max_length=3)
    assert (report["kind"], report["form"], report["rows"], report["records"]) == ("ranked", "rank_rows", 13, 4)
    assert report["ranked"] == {
        "groups": 4,
        "responses": 11,
        "k_distribution": {2: 2, 3: 1, 4: 1},
        "groups_with_ties": 3,  # q1 (b=c), q3 (f=g), q4 (i=j)
        "tied_pairs": 3,
        "groups_with_rank_gaps": 2,  # q2 (1, 3), q4 (1, 2, 4)
        "pairs_after_expansion": 8,  # q1 2, q2 1, q3 0, q4 5
    }
    assert report["reader_counts"] == {"groups": 4, "ranked_pairs": 8, "ties": 3}
    # line 13 (q6) has a bad rank; q5 (line 11) has a single response
    assert [(p["row"], p["field"]) for p in report["problems"]["listed"]] == [(13, "rank"), (11, "answer")]
    assert report["subsets"] == {"math": 1, "chat": 2, "(none)": 1}
    # responses of 1 word with 1-word prompts: none over 3; every prompt+response is 2 words
    assert report["lengths"]["over_max_length"] == {"count": 0, "of": 11}
    assert inspect(path, max_length=1)["lengths"]["over_max_length"] == {"count": 11, "of": 11}
    assert report["examples"][0] == {"id": "2", "prompt": "q1", "responses": ["a", "b", "c"], "ranks": [1, 2, 2]}


# ---------------------------------------------------------------------------------------------- real data


def test_hh_rlhf_harmless_test(shared_data_dir):
    report = inspect(shared_data_dir / "hh-rlhf" / "harmless-base" / "test.jsonl.gz", examples=1)
    assert (report["rows"], report["records"], report["problems"]["count"]) == (2312, 2312, 0)
    assert (report["kind"], report["prompt"]) == ("pairs", "implicit")
    assert report["reader_counts"]["prefix_mismatch_common_prefix"] == 5
    assert report["reader_counts"]["implicit_prompt"] == 2312
    assert report["lengths"]["chosen"]["count"] == 2312 and len(report["examples"]) == 1


def test_hhh_alignment_rankings(shared_data_dir, capsys):
    report = inspect(shared_data_dir / "hhh-alignment" / "hhh_alignment_rankings.jsonl")
    assert report["ranked"]["groups"] == 100
    assert report["ranked"]["k_distribution"] == {2: 60, 3: 31, 4: 8, 6: 1}
    render_inspect(report)
    out = capsys.readouterr().out
    assert "Ranked groups" in out and "k_distribution" in out and "No problems found." in out


# ---------------------------------------------------------------------------------------------- rendering


def test_render_prints_tables_and_problems(pairs_file, capsys):
    report = inspect(pairs_file)
    render_inspect(report)
    out = capsys.readouterr().out
    for text in ("Lengths (words)", "rows / records", "8 / 4", "Problems: 4", "missing required field", "Example 1"):
        assert text in out, text


def test_render_shows_data_verbatim_not_as_markup(tmp_path, capsys):
    line = {"prompt": "[bold]x[/bold] [/]", "chosen": "[red]a", "rejected": "b", "subset": "[x]"}
    render_inspect(inspect(write_lines(tmp_path / "markup.jsonl", [line])))
    out = capsys.readouterr().out
    assert "[bold]x[/bold] [/]" in out and "[red]a" in out


def test_images_are_counted_measured_and_every_unreadable_one_listed(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "shots").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "shots" / "a.png")
    Image.new("RGB", (200, 100)).save(tmp_path / "b.png")
    (tmp_path / "shots" / "broken.png").write_bytes(b"not a png")
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b", "images": ["shots/a.png"], "id": "r1"},
        {"prompt": "p", "chosen": "a", "rejected": "c", "images": str(tmp_path / "b.png"), "id": "r2"},
        {"prompt": "p", "chosen": "a", "rejected": "d", "images": ["shots/missing.png"], "id": "r3"},
        {"prompt": "p", "chosen": "a", "rejected": "e", "images": ["shots/broken.png"], "id": "r4"},
        {"prompt": "p", "chosen": "a", "rejected": "f", "images": ["https://example.org/x.png"], "id": "r5"},
        {"prompt": "p", "chosen": "a", "rejected": "g", "id": "r6"},
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = run_inspect(InspectConfig(data=DataSource(path=str(path))))
    images = report["images"]
    assert images["records_with_images"] == 5 and images["records_without"] == 1
    assert images["per_record"] == {1: 5} and images["sources"] == {"file": 4, "url": 1}
    assert images["width"]["min"] == 64 and images["width"]["max"] == 200 and images["height"]["count"] == 2
    assert images["problems"] == 2
    assert [(p["record"], p["id"], p["message"][:9]) for p in images["listed"]] == [
        (3, "r3", "not found"),
        (4, "r4", "corrupt o"),
    ]
    render_inspect(report)
    out = capsys.readouterr().out
    assert "Image problems: 2" in out and "shots/missing.png" in out
    text_only = tmp_path / "text.jsonl"
    text_only.write_text(json.dumps(rows[-1]) + "\n")
    assert run_inspect(InspectConfig(data=DataSource(path=str(text_only))))["images"] is None
