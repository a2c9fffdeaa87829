"""Readers: turn one :class:`~rewardlab.config.schema.DataSource` into records, or fail with one clear error.

Formats (``DataSource.format``; ``auto`` decides from the path):

- ``jsonl`` (``.jsonl``, ``.jsonl.gz``): one JSON object per line; blank lines are skipped.
- ``json`` (``.json``, ``.json.gz``): a JSON list of objects, or JSON lines.
- ``csv`` (``.csv``, ``.csv.gz``): a header line, then one row per record; cells are strings, so ``margin``
  and ``rank`` are parsed as numbers and an empty cell means "no value" for optional columns.
- ``parquet`` (``.parquet``).
- ``datasets_dir``: a directory written by ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``
  (``DataSource.split`` picks the split of a ``DatasetDict``).
- ``hub``: ``datasets.load_dataset(path, name, split=split)``. ``auto`` picks it for a path that does not
  exist and does not look like a file (``name`` or ``org/name``), and for an existing directory that
  ``save_to_disk`` did not write (``load_dataset`` reads a directory of data files).
Gzip is detected from the file's first bytes, so ``format: csv`` also reads a gzipped CSV file.

Row numbers in errors (``file:row:field: message``) are 1-based:

- JSONL, JSON lines and CSV: the line of the (decompressed) file where the row starts. In a CSV file line 1
  is the header, so the first data row is line 2.
- JSON list, Parquet, ``datasets`` directory and hub dataset: the record's position, first record = 1
  (``dataset[row - 1]``).

Record kinds (``DataSource.kind``; ``auto`` decides from the first row's columns, after ``columns:`` mapping):

- pairs (``chosen`` and ``rejected``): explicit prompt if the first row has a ``prompt`` column, else implicit
  (see :mod:`rewardlab.data.prompts`); strings or lists of ``{role, content}`` messages; optional ``margin``,
  ``id``, ``subset`` (else the ``source`` column), ``images`` (a list, or one string → a 1-tuple).
- ranked groups, one row per group: ``prompt, responses, ranks`` or ``prompt, responses_best_to_worst``.
- ranked rows, one response per row: ``prompt, answer, rank``; rows with the same prompt form one group, in
  order of first appearance; ``id``, ``subset`` and ``images`` come from the group's first row.
- rated responses, one per row: ``prompt, response`` (or ``answer``) and ``ratings`` (an object of attribute values,
  or ``columns.ratings`` naming one column per attribute, HelpSteer2's layout); each becomes a group of one
  response with its ratings (for ``model.attributes``). A ranked group row may carry ``ratings`` too: a list of
  objects, one per response.
A group's id is the ``id`` column, else ``group_id``, else its (first) row number. Ranks are integers ≥ 1
(1 = best); ties and gaps are allowed.

Responses must not be empty (``""`` or ``[]``); whitespace-only responses are kept and counted. A pair's
chosen and rejected must differ after prompt extraction.

Report counts (only keys that occurred): ``implicit_prompt`` (pairs whose prompt was extracted),
``implicit_prompt_empty`` (extracted prompt is empty), ``prefix_mismatch_common_prefix``,
``prefix_mismatch_dropped``, ``blank_response`` (whitespace-only responses kept), ``margin`` (pairs with a
margin), ``images`` (records with images), ``groups``, ``ranked_pairs`` (pairs the groups expand to, ties
excluded) and ``ties`` (tied response pairs within groups). A Label Studio export also counts the annotations that
give no record and the duplicates dropped (:mod:`rewardlab.data.label_studio`); :func:`read_records` warns of them.

Lenient reading (:func:`read_records_lenient`, for ``rewardlab inspect``): every row-level problem — a malformed
JSON line, a line of invalid UTF-8 in a JSONL file, a CSV row with the wrong number of cells, any invalid
field, identical chosen and rejected, an invalid ranked group — is collected and the row skipped, and reading
goes on. File-level problems (missing file, unknown format, undecodable gzip, invalid UTF-8 in a JSON or CSV
file, unparsable JSON list, duplicate CSV header names, a first row whose columns fit no record kind) still
raise. The counts then describe the records returned; ``rows`` also counts the rows that were skipped.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.config.schema import DataSource
from rewardlab.data.label_studio import LEFT_OUT, label_studio_rows
from rewardlab.data.prompts import split_implicit_pair
from rewardlab.data.records import PreferencePair, RankedGroup, ReadReport, Record, Text
from rewardlab.data.validation import (
    RowContext,
    check_response,
    column_names,
    images_field,
    label_field,
    margin_field,
    rank_field,
    rank_list_field,
    ratings_field,
    same_text_type,
    subset_field,
    text_field,
    text_list_field,
    type_name,
)
from rewardlab.errors import DataError, missing_reason

logger = logging.getLogger(__name__)

Rows = Iterator[tuple[int, dict[str, Any]]]
OnError = Callable[[DataError], None]
Count = Callable[[str, int], None]

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_FORMAT_HINT = (
    "use a .jsonl, .jsonl.gz, .json, .json.gz, .csv, .csv.gz or .parquet file, a directory written by "
    "`datasets` save_to_disk or a hub dataset name, or set `format:` explicitly"
)
IDENTICAL_PAIR_MESSAGE = "chosen and rejected are identical"  # start of that row error, for tools that count it


def read_records(
    source: DataSource, attributes: dict[str, tuple[float, float]] | None = None
) -> tuple[list[Record], ReadReport]:
    """Read every row of ``source`` into :class:`PreferencePair` or :class:`RankedGroup` records.

    Honours ``format``, ``kind``, ``split``, ``name``, ``columns``, ``max_samples`` (keep the first N records;
    reading stops there for row-per-record data) and ``prefix_mismatch``. Returns the records and a
    :class:`ReadReport` (``rows`` read, ``records`` returned, counts listed in the module docstring).

    Raises :class:`DataError` (``file:row:field: what is wrong and how to fix it``) for a missing path, an
    unknown format, unreadable bytes or JSON, an empty source, and any invalid row; nothing is returned then.
    ``attributes`` (``model.attributes``): ratings must give each attribute (or null) within its range.
    """
    records, _, ctx = _read(source, collect=False, attributes=attributes)
    _log_report(ctx.report)
    return records, ctx.report


@dataclass
class ReadResult:
    """What :func:`read_records_lenient` read: the good records, the report and every row-level problem.

    ``form`` is how rows were read: ``pairs`` (one pair per row), ``groups`` (one ranked group per row) or
    ``rank_rows`` (one ranked response per row); None when no row could be read (then ``records`` is empty and
    ``errors`` says why). ``explicit_prompt`` is False for implicit-prompt pairs. ``columns`` are the columns of
    the first row parsed (the one the form was decided from). ``errors`` are in reading order (for
    ``rank_rows``, the problems of whole groups come last); each has ``.row``, ``.field`` and ``.source``.
    ``record_rows[i]`` is the row ``records[i]`` was read from (a ``rank_rows`` group: its first row).
    """

    records: list[Record]
    report: ReadReport
    errors: list[DataError]
    form: str | None
    explicit_prompt: bool
    columns: list[str]
    record_rows: list[int] = field(default_factory=list)


def read_records_lenient(source: DataSource) -> ReadResult:
    """Like :func:`read_records`, but row-level problems are collected instead of raised (module docstring).

    Raises :class:`DataError` only for file-level problems; a source whose every row is unreadable returns no
    records and its errors. Nothing is logged: the caller reports.
    """
    records, rows, ctx = _read(source, collect=True)
    return ReadResult(records, ctx.report, ctx.errors or [], ctx.form, ctx.explicit_prompt, ctx.columns, rows)


def iter_rows(source: DataSource) -> Rows:
    """Raw rows of ``source`` as ``(row_number, dict)`` in any supported format, for readers of other row
    shapes (e.g. prompt/response files to score). Same format detection and read errors as ``read_records``."""
    return _open_rows(_resolve_format(source), source)


def _read(
    source: DataSource, *, collect: bool, attributes: dict[str, tuple[float, float]] | None = None
) -> tuple[list[Record], list[int], RowContext]:
    """The records, the row each was read from, and the context (report, errors, form)."""
    fmt = _resolve_format(source)
    report = ReadReport(source=source.path, format=fmt)
    ctx = RowContext(source.path, source.columns, report, source.prefix_mismatch, csv=fmt == "csv",
                     attributes=attributes)  # fmt: skip
    ctx.errors = [] if collect else None
    numbered = _build_records(_open_rows(fmt, source, ctx.row_error, report.add), source, ctx)
    report.records = len(numbered)
    return [record for _, record in numbered], [rowno for rowno, _ in numbered], ctx


def _raise(err: DataError) -> None:
    raise err


def _attempt(ctx: RowContext, make: Callable[..., Any], *args: Any) -> Any:
    """``make(*args)``; when collecting, a :class:`DataError` is collected instead, the counts the failed row
    added are rolled back, and None is returned (as for a dropped row)."""
    if ctx.errors is None:
        return make(*args)
    counts = dict(ctx.report.counts)
    try:
        return make(*args)
    except DataError as err:
        ctx.report.counts = counts
        ctx.errors.append(err)
        return None


# ---------------------------------------------------------------------------------------------- formats


def _resolve_format(source: DataSource) -> str:
    """The concrete format of ``source``; raises for missing files, wrong kinds of paths and unknown suffixes."""
    path = Path(source.path).expanduser()
    if source.format == "hub":
        return "hub"
    if not path.exists():
        if source.format == "auto" and not _looks_like_file(source.path):
            return "hub"
        if (reason := missing_reason(path)) is not None:
            raise DataError(f"{os.path.abspath(path)} {reason}", source=source.path)
        raise DataError(
            f"file not found ({os.path.abspath(path)}); check the path (relative paths start from the current "
            "directory) and that the file was not moved",
            source=source.path,
        )
    if path.is_dir():
        if _is_saved_dataset(path):
            if source.format in ("auto", "datasets_dir"):
                return "datasets_dir"
        elif source.format == "auto":
            return "hub"  # a directory of data files: `datasets.load_dataset` reads it
        elif source.format == "datasets_dir":
            raise DataError(
                "is not a directory written by `save_to_disk` (no dataset_info.json + state.json, and no "
                "dataset_dict.json); for a directory of data files use `format: hub` or `auto`",
                source=source.path,
            )
        raise DataError(
            f"is a directory, but `format: {source.format}` needs a file; {_FORMAT_HINT}", source=source.path
        )
    if source.format == "datasets_dir":
        raise DataError(
            "is a file, but `format: datasets_dir` needs a directory written by `save_to_disk`", source=source.path
        )
    return _format_from_suffix(path, source.path) if source.format == "auto" else source.format


def _format_from_suffix(path: Path, label: str) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    gz = suffixes[-1:] == [".gz"]
    fmt = _SUFFIX_FORMATS.get(suffixes[-2] if gz and len(suffixes) > 1 else suffixes[-1] if suffixes else "")
    if fmt is None or (gz and fmt == "parquet"):
        raise DataError(
            f"cannot tell the format from the suffix {''.join(path.suffixes)!r}; {_FORMAT_HINT}", source=label
        )
    return fmt


def _looks_like_file(path: str) -> bool:
    """True for paths that cannot be hub names: a data-file suffix, ``/``, ``.``, ``~`` in front, or 2+ slashes."""
    lower = path.lower().removesuffix(".gz")
    if any(lower.endswith(suffix) for suffix in _SUFFIX_FORMATS):
        return True
    return path.startswith(("/", ".", "~")) or "\\" in path or path.count("/") > 1


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "dataset_info.json").is_file() and (path / "state.json").is_file()
    )


def _open_rows(fmt: str, source: DataSource, on_error: OnError = _raise, count: Count | None = None) -> Rows:
    """Rows as ``(row_number, dict)``, lazily: reading and decoding errors surface while iterating.

    A row that cannot be parsed (bad JSON line, wrong CSV cell count, ...) goes to ``on_error`` and is skipped
    when ``on_error`` returns; file-level problems always raise. ``count(key, n)`` receives what a format leaves
    out on purpose (a Label Studio export's skipped annotations)."""
    path = Path(source.path).expanduser()
    if fmt == "jsonl":
        return _jsonl_rows(_decoded_lines(path, source.path, on_error), source.path, on_error)
    if fmt == "json":
        return _json_rows(path, source.path, on_error, count)
    if fmt == "csv":
        return _csv_rows(path, source.path, on_error)
    if fmt == "parquet":
        return _parquet_rows(path, source.path)
    if fmt == "datasets_dir":
        return _datasets_dir_rows(path, source)
    return _hub_rows(source)


def _read_bytes(path: Path, label: str) -> bytes:
    """The file's bytes, gunzipped if they start with the gzip magic bytes."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"cannot decompress the gzip file ({err}); it is truncated or corrupt: re-create or re-download it",
                source=label,
            ) from None
    return raw


def _read_text(path: Path, label: str) -> str:
    """The whole file as text: gunzipped if it starts with the gzip magic bytes, UTF-8 (a BOM is dropped)."""
    raw = _read_bytes(path, label)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise _utf8_error(line, raw[err.start], label) from None


def _decoded_lines(path: Path, label: str, on_error: OnError) -> Iterator[tuple[int, str]]:
    """A JSONL file's lines, decoded one by one so that invalid UTF-8 is the problem of one line (a UTF-8
    sequence never contains the newline byte)."""
    for lineno, chunk in enumerate(_read_bytes(path, label).split(b"\n"), start=1):
        try:
            yield lineno, chunk.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as err:
            on_error(_utf8_error(lineno, chunk[err.start], label))


def _utf8_error(line: int, byte: int, label: str) -> DataError:
    return DataError(
        f"line {line} is not valid UTF-8 (byte {byte:#04x}); re-save the file as UTF-8 "
        "(e.g. `iconv -f latin1 -t utf-8`)",
        source=label,
        row=line,
    )


def _jsonl_rows(lines: Iterable[tuple[int, str]], label: str, on_error: OnError) -> Rows:
    for lineno, line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            on_error(
                DataError(
                    f"malformed JSON ({err.msg}, column {err.colno}); each line must be one complete JSON object",
                    source=label,
                    row=lineno,
                )
            )
            continue
        if not isinstance(row, dict):
            on_error(
                DataError(
                    f"expected a JSON object, got a {type_name(row)}; each line must be one JSON object",
                    source=label,
                    row=lineno,
                )
            )
            continue
        yield lineno, row


def _json_rows(path: Path, label: str, on_error: OnError, count: Count | None = None) -> Rows:
    text = _read_text(path, label)
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("{"):  # several objects: JSON lines (which locates a real syntax error)
            # not splitlines(): JSON strings may hold U+2028
            yield from _jsonl_rows(enumerate(text.split("\n"), start=1), label, on_error)
            return
        raise DataError(
            f"malformed JSON ({err.msg}, line {err.lineno} column {err.colno})", source=label, row=err.lineno
        ) from None
    if not isinstance(data, list):
        raise DataError(
            f"a .json file must hold a list of objects ([{{...}}, {{...}}]) or one object per line, got a "
            f"{type_name(data)}; for one record per line name the file .jsonl",
            source=label,
        )
    if data and isinstance(data[0], dict) and "data" in data[0] and "annotations" in data[0]:
        yield from label_studio_rows(data, label, on_error, count)  # a Label Studio export, recognised by its shape
        return
    for index, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            on_error(DataError(f"list item is a {type_name(row)}, expected an object", source=label, row=index))
            continue
        yield index, row


def _csv_rows(path: Path, label: str, on_error: OnError) -> Rows:
    reader = csv.reader(io.StringIO(_read_text(path, label), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return
        duplicates = sorted({name for name in header if header.count(name) > 1})
        if duplicates:
            raise DataError(f"duplicate column names in the header: {duplicates}; rename them", source=label, row=1)
        last = reader.line_num
        for values in reader:
            start, last = last + 1, reader.line_num  # a quoted cell may span lines: report where the row starts
            if not values:
                continue
            if len(values) != len(header):
                on_error(
                    DataError(
                        f"has {len(values)} fields but the header (line 1) has {len(header)}; quote cells that "
                        "contain commas or line breaks",
                        source=label,
                        row=start,
                    )
                )
                continue
            yield start, dict(zip(header, values))
    except csv.Error as err:
        raise DataError(f"malformed CSV ({err})", source=label, row=reader.line_num) from None


def _parquet_rows(path: Path, label: str) -> Rows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            f"not a readable Parquet file ({err}); re-write it or check the suffix", source=label
        ) from None
    rows = itertools.chain.from_iterable(batch.to_pylist() for batch in parquet.iter_batches(batch_size=1024))
    yield from enumerate(rows, start=1)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:  # pragma: no cover - `datasets` is a core dependency
        raise DataError("reading this source needs the `datasets` package: pip install datasets") from None
    return datasets


def _datasets_dir_rows(path: Path, source: DataSource) -> Rows:
    datasets = _import_datasets()
    try:
        data = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise DataError(f"cannot load the `save_to_disk` directory ({err})", source=source.path) from None
    if isinstance(data, datasets.DatasetDict):
        if source.split not in data:
            raise DataError(
                f"has no split {source.split!r} (splits: {', '.join(data)}); set `split:` to one of them",
                source=source.path,
            )
        data = data[source.split]
    yield from enumerate(data, start=1)


def _hub_rows(source: DataSource) -> Rows:
    datasets = _import_datasets()
    try:
        data = datasets.load_dataset(source.path, source.name, split=source.split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        raise DataError(
            f"cannot load it as a hub dataset (name={source.name!r}, split={source.split!r}): "
            f"{str(err).rstrip('.')}. Check the dataset name, `name:` and `split:`, and network access; for a "
            "local file give its path with its suffix",
            source=source.path,
        ) from None
    if isinstance(data, datasets.DatasetDict):  # only when split is None, which the config does not allow
        raise DataError(f"load_dataset returned several splits ({', '.join(data)}); set `split:`", source=source.path)
    yield from enumerate(data, start=1)


# ---------------------------------------------------------------------------------------------- records


def _build_records(rows: Rows, source: DataSource, ctx: RowContext) -> list[tuple[int, Record]]:
    """Decide the record form from the first row, then turn every row into ``(row, record)`` (module docstring)."""
    first = next(rows, None)
    if first is None:
        if ctx.errors:  # lenient reading, and no row could be parsed: the errors say why
            return []
        raise ctx.error("has no rows (empty file or split); check the path, `split:` and the file's content")
    ctx.form = form = _detect_form(first[1], first[0], source.kind, ctx)
    ctx.columns = list(first[1])
    if "prompt" in source.columns.model_fields_set and ctx.cols.prompt not in first[1]:
        # Without a prompt column, pairs read as implicit-prompt pairs: never silently when one was named.
        raise ctx.error(
            f"columns.prompt={ctx.cols.prompt!r}: no such column (the columns are {', '.join(map(str, first[1]))}); "
            "fix the mapping, or leave columns.prompt out for implicit-prompt pairs",
            row=first[0],
        )
    rows = itertools.chain([first], rows)
    if form == "rank_rows":
        return _groups_from_rank_rows(rows, ctx, source.max_samples)
    ctx.explicit_prompt = form != "pairs" or ctx.cols.prompt in first[1]
    make = {"pairs": _pair_from_row, "groups": _group_from_row, "rated": _rated_from_row}[form]
    records: list[tuple[int, Record]] = []
    for rowno, row in rows:
        ctx.report.rows += 1
        record = _attempt(ctx, make, rowno, row, ctx)
        if record is not None:
            records.append((rowno, record))
        if source.max_samples is not None and len(records) >= source.max_samples:
            break
    return records


def _detect_form(row: dict[str, Any], rowno: int, kind: str, ctx: RowContext) -> str:
    """``pairs``, ``groups`` (one group per row), ``rank_rows`` (one ranked response per row) or ``rated`` (one
    rated response per row), from the columns."""
    c = ctx.cols
    pairs = c.chosen in row or c.rejected in row
    groups = c.responses in row or c.responses_best_to_worst in row
    rank_rows = c.rank in row
    rated = all(name in row for name in c.ratings) if isinstance(c.ratings, list) else c.ratings in row
    if kind == "pairs" or (kind == "auto" and pairs):
        return "pairs"
    if kind == "rated" or (kind == "auto" and rated and not groups and not rank_rows):
        return "rated"
    if groups:
        return "groups"
    if rank_rows or c.response in row:
        return "rank_rows"
    needs = (
        f"ranked data needs {c.responses!r} + {c.ranks!r}, {c.responses_best_to_worst!r}, or one response per row "
        f"with {c.response!r} + {c.rank!r}"
    )
    if kind == "auto":
        ratings = c.ratings if isinstance(c.ratings, str) else " + ".join(map(repr, c.ratings))
        needs = f"pairs need {c.chosen!r} and {c.rejected!r}; {needs}; rated responses need {ratings!r}"
    what = "ranked data" if kind == "ranked" else "records"
    raise ctx.error(
        f"cannot read {what} from the columns found ({column_names(row)}): {needs}. Map your column names in the "
        "config (e.g. `columns: {chosen: answer_a, rejected: answer_b}`) or set `kind:`",
        rowno,
    )


def _pair_from_row(rowno: int, row: dict[str, Any], ctx: RowContext) -> PreferencePair | None:
    """One pair from one row; None when the row is dropped by ``prefix_mismatch: drop``."""
    c = ctx.cols
    chosen = text_field(row, c.chosen, rowno, ctx)
    rejected = text_field(row, c.rejected, rowno, ctx)
    same_text_type(chosen, c.chosen, rejected, c.rejected, rowno, ctx)
    if ctx.explicit_prompt:
        prompt = text_field(row, c.prompt, rowno, ctx, allow_empty=True)
        same_text_type(chosen, c.chosen, prompt, c.prompt, rowno, ctx)
    else:
        if row.get(c.prompt) is not None:
            raise ctx.error(
                "has a prompt but the first row has none; use one form for the whole file (all rows with a "
                "prompt, or none)",
                rowno,
                c.prompt,
            )
        split = _split_implicit(chosen, rejected, rowno, ctx)
        if split is None:
            return None
        prompt, chosen, rejected = split
    for value, col in ((chosen, c.chosen), (rejected, c.rejected)):
        check_response(value, col, rowno, ctx)
    if chosen == rejected:
        raise ctx.error(
            f"{IDENTICAL_PAIR_MESSAGE} (after removing the shared prompt); a pair needs two different "
            "responses: fix or remove the row",
            rowno,
            c.chosen,
        )
    return PreferencePair(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        images=images_field(row, rowno, ctx),
        margin=margin_field(row, rowno, ctx),
        id=label_field(row, c.id, rowno, ctx),
        subset=subset_field(row, rowno, ctx),
    )


def _split_implicit(chosen: Text, rejected: Text, rowno: int, ctx: RowContext) -> tuple[Text, Text, Text] | None:
    """Implicit prompt: the shared start of chosen and rejected, with ``prefix_mismatch`` applied."""
    prompt, chosen, rejected, matched = split_implicit_pair(chosen, rejected)  # types checked by the caller
    if not matched:
        if ctx.policy == "error":
            raise ctx.error(
                "chosen and rejected transcripts differ before their last '\\n\\nAssistant:' turn, so the shared "
                "prompt is ambiguous; fix the row, or set `prefix_mismatch: common_prefix` (use the shared turns "
                "as the prompt) or `prefix_mismatch: drop`",
                rowno,
                ctx.cols.chosen,
            )
        if ctx.policy == "drop":
            ctx.report.add("prefix_mismatch_dropped")
            return None
        ctx.report.add("prefix_mismatch_common_prefix")
    ctx.report.add("implicit_prompt")
    if not prompt:
        ctx.report.add("implicit_prompt_empty")
    return prompt, chosen, rejected


def _group_from_row(rowno: int, row: dict[str, Any], ctx: RowContext) -> RankedGroup:
    """One ranked group from a row with ``responses`` + ``ranks`` or ``responses_best_to_worst``."""
    c = ctx.cols
    prompt = text_field(row, c.prompt, rowno, ctx, allow_empty=True)
    if row.get(c.responses_best_to_worst) is not None:
        col = c.responses_best_to_worst
        responses = text_list_field(row, col, rowno, ctx)
        ranks = list(range(1, len(responses) + 1))
    else:
        col = c.responses
        responses = text_list_field(row, col, rowno, ctx)
        ranks = rank_list_field(row, len(responses), rowno, ctx)
    ratings = ratings_field(row, rowno, ctx, responses=len(responses)) if isinstance(ctx.cols.ratings, str) else None
    return _make_group(prompt, responses, ranks, rowno, row, col, ctx, ratings)


def _rated_from_row(rowno: int, row: dict[str, Any], ctx: RowContext) -> RankedGroup:
    """One rated response (a group of one with its ratings) from ``prompt, response, ratings``."""
    c = ctx.cols
    col = c.response if c.response in row or "response" in c.model_fields_set else "response"
    prompt = text_field(row, c.prompt, rowno, ctx, allow_empty=True)
    response = text_field(row, col, rowno, ctx)
    same_text_type(response, col, prompt, c.prompt, rowno, ctx)
    check_response(response, col, rowno, ctx)
    ratings = ratings_field(row, rowno, ctx)
    if ratings is None:
        raise ctx.error("has no ratings; every row of a rated file needs them (null for an unknown attribute)",
                        rowno, c.ratings if isinstance(c.ratings, str) else None)  # fmt: skip
    ctx.report.add("rated_responses")
    return RankedGroup(prompt=prompt, responses=(response,), ranks=(1,), images=images_field(row, rowno, ctx),
                       id=label_field(row, c.id, rowno, ctx) or str(rowno), subset=subset_field(row, rowno, ctx),
                       ratings=(ratings,))  # fmt: skip


def _groups_from_rank_rows(rows: Rows, ctx: RowContext, max_samples: int | None) -> list[tuple[int, Record]]:
    """Ranked rows (``prompt, answer, rank``): group by prompt, in order of first appearance."""
    c = ctx.cols
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for rowno, row in rows:
        ctx.report.rows += 1
        parsed = _attempt(ctx, _rank_row, rowno, row, ctx)
        if parsed is None:
            continue
        prompt, response, rank = parsed
        key = ("text", prompt) if isinstance(prompt, str) else ("messages", json.dumps(prompt, sort_keys=True))
        group = groups.setdefault(key, {"rowno": rowno, "row": row, "prompt": prompt, "responses": [], "ranks": []})
        group["responses"].append(response)
        group["ranks"].append(rank)
    kept = list(groups.values())[:max_samples]
    made = [
        _attempt(ctx, _make_group, g["prompt"], g["responses"], g["ranks"], g["rowno"], g["row"], c.response, ctx)
        for g in kept
    ]
    return [(g["rowno"], group) for g, group in zip(kept, made) if group is not None]


def _rank_row(rowno: int, row: dict[str, Any], ctx: RowContext) -> tuple[Text, Text, int]:
    """One ``prompt, answer, rank`` row's prompt, response and rank."""
    c = ctx.cols
    prompt = text_field(row, c.prompt, rowno, ctx, allow_empty=True)
    return prompt, text_field(row, c.response, rowno, ctx), rank_field(row.get(c.rank), rowno, c.rank, ctx, row)


def _make_group(
    prompt: Text,
    responses: list[Text],
    ranks: list[int],
    rowno: int,
    row: dict[str, Any],
    col: str,
    ctx: RowContext,
    ratings: tuple[dict[str, float | None], ...] | None = None,
) -> RankedGroup:
    """Validate a group (≥ 2 responses, one text type, no identical responses ranked apart) and count it."""
    if len(responses) < 2:
        raise ctx.error(
            f"a ranked group needs at least 2 responses, got {len(responses)}; add responses for this prompt or "
            "remove it",
            rowno,
            col,
        )
    for response in responses:
        same_text_type(responses[0], col, response, col, rowno, ctx)
    same_text_type(responses[0], col, prompt, ctx.cols.prompt, rowno, ctx)
    for i, j in itertools.combinations(range(len(responses)), 2):
        if responses[i] == responses[j] and ranks[i] != ranks[j]:
            raise ctx.error(f"responses {i} and {j} are identical but ranked {ranks[i]} and {ranks[j]}", rowno, col)
    ties = sum(n * (n - 1) // 2 for n in (ranks.count(r) for r in set(ranks)))
    ctx.report.add("groups")
    ctx.report.add("ranked_pairs", len(ranks) * (len(ranks) - 1) // 2 - ties)
    if ties:
        ctx.report.add("ties", ties)
    group_id = label_field(row, ctx.cols.id, rowno, ctx) or label_field(row, "group_id", rowno, ctx) or str(rowno)
    return RankedGroup(
        prompt=prompt,
        responses=tuple(responses),
        ranks=tuple(ranks),
        images=images_field(row, rowno, ctx),
        id=group_id,
        subset=subset_field(row, rowno, ctx),
        ratings=ratings,
    )


def _log_report(report: ReadReport) -> None:
    counts = report.counts
    logger.info(
        "read %d records from %d rows of %s (%s): %s",
        report.records,
        report.rows,
        report.source,
        report.format,
        counts,
    )
    left_out = [f"{key} {counts[key]}" for key in LEFT_OUT if counts.get(key)]
    if left_out:
        logger.warning("%s: Label Studio annotations left out: %s", report.source, ", ".join(left_out))
    mismatched = counts.get("prefix_mismatch_common_prefix", 0) + counts.get("prefix_mismatch_dropped", 0)
    if mismatched:
        logger.warning(
            "%s: %d implicit-prompt pairs whose transcripts differ before the last assistant turn (%s)",
            report.source,
            mismatched,
            "used the common prefix as the prompt" if counts.get("prefix_mismatch_common_prefix") else "dropped",
        )
