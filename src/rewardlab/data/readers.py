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
A group's id is the ``id`` column, else ``group_id``, else its (first) row number. Ranks are integers ≥ 1
(1 = best); ties and gaps are allowed.

Responses must not be empty (``""`` or ``[]``); whitespace-only responses are kept and counted. A pair's
chosen and rejected must differ after prompt extraction.

Report counts (only keys that occurred): ``implicit_prompt`` (pairs whose prompt was extracted),
``implicit_prompt_empty`` (extracted prompt is empty), ``prefix_mismatch_common_prefix``,
``prefix_mismatch_dropped``, ``blank_response`` (whitespace-only responses kept), ``margin`` (pairs with a
margin), ``images`` (records with images), ``groups``, ``ranked_pairs`` (pairs the groups expand to, ties
excluded) and ``ties`` (tied response pairs within groups).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import logging
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.config.schema import ColumnMap, DataSource
from rewardlab.data.prompts import extract_prompt, split_common_messages
from rewardlab.data.records import PreferencePair, RankedGroup, ReadReport, Record, Text
from rewardlab.errors import DataError

logger = logging.getLogger(__name__)

Rows = Iterator[tuple[int, dict[str, Any]]]

_SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_FORMAT_HINT = (
    "use a .jsonl, .jsonl.gz, .json, .json.gz, .csv, .csv.gz or .parquet file, a directory written by "
    "`datasets` save_to_disk or a hub dataset name, or set `format:` explicitly"
)
_MESSAGE_HINT = 'a message is an object like {"role": "user", "content": "..."}'


def read_records(source: DataSource) -> tuple[list[Record], ReadReport]:
    """Read every row of ``source`` into :class:`PreferencePair` or :class:`RankedGroup` records.

    Honours ``format``, ``kind``, ``split``, ``name``, ``columns``, ``max_samples`` (keep the first N records;
    reading stops there for row-per-record data) and ``prefix_mismatch``. Returns the records and a
    :class:`ReadReport` (``rows`` read, ``records`` returned, counts listed in the module docstring).

    Raises :class:`DataError` (``file:row:field: what is wrong and how to fix it``) for a missing path, an
    unknown format, unreadable bytes or JSON, an empty source, and any invalid row; nothing is returned then.
    """
    fmt = _resolve_format(source)
    report = ReadReport(source=source.path, format=fmt)
    ctx = _Context(source.path, source.columns, report, source.prefix_mismatch, csv=fmt == "csv")
    records = _build_records(_open_rows(fmt, source), source, ctx)
    report.records = len(records)
    _log_report(report)
    return records, report


def iter_rows(source: DataSource) -> Rows:
    """Raw rows of ``source`` as ``(row_number, dict)`` in any supported format, for readers of other row
    shapes (e.g. prompt/response files to score). Same format detection and read errors as ``read_records``."""
    return _open_rows(_resolve_format(source), source)


@dataclass
class _Context:
    """What row parsers need: where we are (for errors), the column names, the report and the policies."""

    label: str
    cols: ColumnMap
    report: ReadReport
    policy: str
    csv: bool = False  # CSV cells are strings: parse numbers, treat empty optional cells as missing
    explicit_prompt: bool = True

    def error(self, message: str, row: int | None = None, field: str | None = None) -> DataError:
        return DataError(message, source=self.label, row=row, field=field)


# ---------------------------------------------------------------------------------------------- formats


def _resolve_format(source: DataSource) -> str:
    """The concrete format of ``source``; raises for missing files, wrong kinds of paths and unknown suffixes."""
    path = Path(source.path).expanduser()
    if source.format == "hub":
        return "hub"
    if not path.exists():
        if source.format == "auto" and not _looks_like_file(source.path):
            return "hub"
        raise DataError(
            f"file not found ({path.resolve()}); check the path (relative paths start from the current "
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


def _open_rows(fmt: str, source: DataSource) -> Rows:
    """Rows as ``(row_number, dict)``, lazily: reading and decoding errors surface while iterating."""
    path = Path(source.path).expanduser()
    if fmt == "jsonl":
        return _jsonl_rows(_read_text(path, source.path), source.path)
    if fmt == "json":
        return _json_rows(path, source.path)
    if fmt == "csv":
        return _csv_rows(path, source.path)
    if fmt == "parquet":
        return _parquet_rows(path, source.path)
    if fmt == "datasets_dir":
        return _datasets_dir_rows(path, source)
    return _hub_rows(source)


def _read_text(path: Path, label: str) -> str:
    """The whole file as text: gunzipped if it starts with the gzip magic bytes, UTF-8 (a BOM is dropped)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(
                f"cannot decompress the gzip file ({err}); it is truncated or corrupt: re-create or re-download it",
                source=label,
            ) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise DataError(
            f"line {line} is not valid UTF-8 (byte {raw[err.start]:#04x}); re-save the file as UTF-8 "
            "(e.g. `iconv -f latin1 -t utf-8`)",
            source=label,
            row=line,
        ) from None


def _jsonl_rows(text: str, label: str) -> Rows:
    for lineno, line in enumerate(text.split("\n"), start=1):  # not splitlines(): JSON strings may hold U+2028
        line = line.strip()
        if not line:
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"malformed JSON ({err.msg}, column {err.colno}); each line must be one complete JSON object",
                source=label,
                row=lineno,
            ) from None
        if not isinstance(row, dict):
            raise DataError(
                f"expected a JSON object, got a {_type_name(row)}; each line must be one JSON object",
                source=label,
                row=lineno,
            )
        yield lineno, row


def _json_rows(path: Path, label: str) -> Rows:
    text = _read_text(path, label)
    if not text.strip():
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("{"):  # several objects: JSON lines (which locates a real syntax error)
            yield from _jsonl_rows(text, label)
            return
        raise DataError(
            f"malformed JSON ({err.msg}, line {err.lineno} column {err.colno})", source=label, row=err.lineno
        ) from None
    if not isinstance(data, list):
        raise DataError(
            f"a .json file must hold a list of objects ([{{...}}, {{...}}]) or one object per line, got a "
            f"{_type_name(data)}; for one record per line name the file .jsonl",
            source=label,
        )
    for index, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise DataError(f"list item is a {_type_name(row)}, expected an object", source=label, row=index)
        yield index, row


def _csv_rows(path: Path, label: str) -> Rows:
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
                raise DataError(
                    f"has {len(values)} fields but the header (line 1) has {len(header)}; quote cells that contain "
                    "commas or line breaks",
                    source=label,
                    row=start,
                )
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


def _build_records(rows: Rows, source: DataSource, ctx: _Context) -> list[Record]:
    """Decide the record form from the first row, then turn every row into records (see module docstring)."""
    first = next(rows, None)
    if first is None:
        raise ctx.error("has no rows (empty file or split); check the path, `split:` and the file's content")
    form = _detect_form(first[1], first[0], source.kind, ctx)
    rows = itertools.chain([first], rows)
    if form == "rank_rows":
        return _groups_from_rank_rows(rows, ctx, source.max_samples)
    ctx.explicit_prompt = ctx.cols.prompt in first[1]
    make = _pair_from_row if form == "pairs" else _group_from_row
    records: list[Record] = []
    for rowno, row in rows:
        ctx.report.rows += 1
        record = make(rowno, row, ctx)
        if record is not None:
            records.append(record)
        if source.max_samples is not None and len(records) >= source.max_samples:
            break
    return records


def _detect_form(row: dict[str, Any], rowno: int, kind: str, ctx: _Context) -> str:
    """``pairs``, ``groups`` (one group per row) or ``rank_rows`` (one response per row), from the columns."""
    c = ctx.cols
    pairs = c.chosen in row or c.rejected in row
    groups = c.responses in row or c.responses_best_to_worst in row
    rank_rows = c.response in row or c.rank in row
    if kind == "pairs" or (kind == "auto" and pairs):
        return "pairs"
    if groups:
        return "groups"
    if rank_rows:
        return "rank_rows"
    needs = (
        f"ranked data needs {c.responses!r} + {c.ranks!r}, {c.responses_best_to_worst!r}, or one response per row "
        f"with {c.response!r} + {c.rank!r}"
    )
    if kind == "auto":
        needs = f"pairs need {c.chosen!r} and {c.rejected!r}; {needs}"
    raise ctx.error(
        f"cannot read {'ranked data' if kind == 'ranked' else 'records'} from the columns found ({_columns(row)}): "
        f"{needs}. Map your column names in the config (e.g. `columns: {{chosen: answer_a, rejected: answer_b}}`)"
        " or set `kind:`",
        rowno,
    )


def _pair_from_row(rowno: int, row: dict[str, Any], ctx: _Context) -> PreferencePair | None:
    """One pair from one row; None when the row is dropped by ``prefix_mismatch: drop``."""
    c = ctx.cols
    chosen = _text(row, c.chosen, rowno, ctx)
    rejected = _text(row, c.rejected, rowno, ctx)
    _same_text_type(chosen, c.chosen, rejected, c.rejected, rowno, ctx)
    if ctx.explicit_prompt:
        prompt = _text(row, c.prompt, rowno, ctx, allow_empty=True)
        _same_text_type(chosen, c.chosen, prompt, c.prompt, rowno, ctx)
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
        _check_response(value, col, rowno, ctx)
    if chosen == rejected:
        raise ctx.error(
            "chosen and rejected are identical (after removing the shared prompt); a pair needs two different "
            "responses: fix or remove the row",
            rowno,
            c.chosen,
        )
    return PreferencePair(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        images=_images(row, rowno, ctx),
        margin=_margin(row, rowno, ctx),
        id=_label(row, c.id, rowno, ctx),
        subset=_subset(row, rowno, ctx),
    )


def _split_implicit(chosen: Text, rejected: Text, rowno: int, ctx: _Context) -> tuple[Text, Text, Text] | None:
    """Implicit prompt: the shared start of chosen and rejected, with ``prefix_mismatch`` applied."""
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt, chosen, rejected, matched = extract_prompt(chosen, rejected)
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
    else:
        prompt, chosen, rejected = split_common_messages(chosen, rejected)  # type: ignore[arg-type]
    ctx.report.add("implicit_prompt")
    if not prompt:
        ctx.report.add("implicit_prompt_empty")
    return prompt, chosen, rejected


def _group_from_row(rowno: int, row: dict[str, Any], ctx: _Context) -> RankedGroup:
    """One ranked group from a row with ``responses`` + ``ranks`` or ``responses_best_to_worst``."""
    c = ctx.cols
    prompt = _text(row, c.prompt, rowno, ctx, allow_empty=True)
    if row.get(c.responses_best_to_worst) is not None:
        col = c.responses_best_to_worst
        responses = _text_list(row, col, rowno, ctx)
        ranks = list(range(1, len(responses) + 1))
    else:
        col = c.responses
        responses = _text_list(row, col, rowno, ctx)
        ranks = _rank_list(row, len(responses), rowno, ctx)
    return _make_group(prompt, responses, ranks, rowno, row, col, ctx)


def _groups_from_rank_rows(rows: Rows, ctx: _Context, max_samples: int | None) -> list[Record]:
    """Ranked rows (``prompt, answer, rank``): group by prompt, in order of first appearance."""
    c = ctx.cols
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for rowno, row in rows:
        ctx.report.rows += 1
        prompt = _text(row, c.prompt, rowno, ctx, allow_empty=True)
        response = _text(row, c.response, rowno, ctx)
        rank = _rank(row.get(c.rank), rowno, c.rank, ctx, row)
        key = ("text", prompt) if isinstance(prompt, str) else ("messages", json.dumps(prompt, sort_keys=True))
        group = groups.setdefault(key, {"rowno": rowno, "row": row, "prompt": prompt, "responses": [], "ranks": []})
        group["responses"].append(response)
        group["ranks"].append(rank)
    kept = list(groups.values())[:max_samples]
    return [_make_group(g["prompt"], g["responses"], g["ranks"], g["rowno"], g["row"], c.response, ctx) for g in kept]


def _make_group(
    prompt: Text, responses: list[Text], ranks: list[int], rowno: int, row: dict[str, Any], col: str, ctx: _Context
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
        _same_text_type(responses[0], col, response, col, rowno, ctx)
    _same_text_type(responses[0], col, prompt, ctx.cols.prompt, rowno, ctx)
    for i, j in itertools.combinations(range(len(responses)), 2):
        if responses[i] == responses[j] and ranks[i] != ranks[j]:
            raise ctx.error(f"responses {i} and {j} are identical but ranked {ranks[i]} and {ranks[j]}", rowno, col)
    ties = sum(n * (n - 1) // 2 for n in (ranks.count(r) for r in set(ranks)))
    ctx.report.add("groups")
    ctx.report.add("ranked_pairs", len(ranks) * (len(ranks) - 1) // 2 - ties)
    if ties:
        ctx.report.add("ties", ties)
    group_id = _label(row, ctx.cols.id, rowno, ctx) or _label(row, "group_id", rowno, ctx) or str(rowno)
    return RankedGroup(
        prompt=prompt,
        responses=tuple(responses),
        ranks=tuple(ranks),
        images=_images(row, rowno, ctx),
        id=group_id,
        subset=_subset(row, rowno, ctx),
    )


# ---------------------------------------------------------------------------------------------- fields


def _text(row: dict[str, Any], col: str, rowno: int, ctx: _Context, *, allow_empty: bool = False) -> Text:
    """A required prompt/response: a string, or a list of ``{role, content}`` messages."""
    _require(row, col, rowno, ctx)
    return _check_text(row[col], col, rowno, ctx, allow_empty=allow_empty)


def _require(row: dict[str, Any], col: str, rowno: int, ctx: _Context) -> None:
    """Raise the missing-field error (with the columns found and the `columns:` hint) if ``col`` is absent."""
    if col not in row:
        raise ctx.error(
            f"missing required field {col!r} (columns found: {_columns(row)}). If it has another name, map it in "
            f"the config, e.g. `columns: {{{_logical_name(col, ctx)}: your_column}}`",
            rowno,
            col,
        )


def _check_text(value: Any, field: str, rowno: int, ctx: _Context, *, allow_empty: bool = False) -> Text:
    if value is None:
        raise ctx.error("is null; every row needs a value here: fill it in or remove the row", rowno, field)
    if isinstance(value, str):
        if not value and not allow_empty:
            raise ctx.error("is an empty string; fill in the response or remove the row", rowno, field)
        return value
    if isinstance(value, list):
        if not value and not allow_empty:
            raise ctx.error("is an empty list of messages; fill in the response or remove the row", rowno, field)
        for i, message in enumerate(value):
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), (str, list))
            ):
                raise ctx.error(f"is not a chat message ({_short(message)}); {_MESSAGE_HINT}", rowno, f"{field}[{i}]")
        return value
    raise ctx.error(
        f"must be a string or a list of chat messages, got a {_type_name(value)} ({_short(value)})", rowno, field
    )


def _check_response(value: Text, col: str, rowno: int, ctx: _Context) -> None:
    """A response left after prompt extraction: never empty; whitespace-only is kept but counted."""
    if not value:
        raise ctx.error("is empty after removing the shared prompt; fix or remove the row", rowno, col)
    if isinstance(value, str) and not value.strip():
        ctx.report.add("blank_response")


def _text_list(row: dict[str, Any], col: str, rowno: int, ctx: _Context) -> list[Text]:
    _require(row, col, rowno, ctx)
    value = row[col]
    if not isinstance(value, list):
        raise ctx.error(f"must be a list of responses, got a {_type_name(value)} ({_short(value)})", rowno, col)
    responses = [_check_text(item, f"{col}[{i}]", rowno, ctx) for i, item in enumerate(value)]
    for response in responses:
        if isinstance(response, str) and not response.strip():
            ctx.report.add("blank_response")
    return responses


def _rank_list(row: dict[str, Any], n: int, rowno: int, ctx: _Context) -> list[int]:
    col = ctx.cols.ranks
    _require(row, col, rowno, ctx)
    value = row[col]
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} ranks" if isinstance(value, list) else f"a {_type_name(value)}"
        raise ctx.error(f"must be a list of {n} integer ranks (one per response, 1 = best), got {got}", rowno, col)
    return [_rank(rank, rowno, f"{col}[{i}]", ctx) for i, rank in enumerate(value)]


def _rank(value: Any, rowno: int, field: str, ctx: _Context, row: dict[str, Any] | None = None) -> int:
    if row is not None:
        _require(row, field, rowno, ctx)
    if ctx.csv and isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ctx.error(f"rank must be an integer ≥ 1 (1 = best), got {_short(value)}", rowno, field)
    return value


def _margin(row: dict[str, Any], rowno: int, ctx: _Context) -> float | None:
    col = ctx.cols.margin
    value = row.get(col)
    if value is None or (ctx.csv and value.strip() == ""):
        return None
    if ctx.csv:
        value = _parse_float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ctx.error(f"margin must be a finite number, got {_short(value)}; leave it out for no margin", rowno, col)
    ctx.report.add("margin")
    return float(value)


def _images(row: dict[str, Any], rowno: int, ctx: _Context) -> tuple[Any, ...]:
    """Images as given: a list → tuple, one string (or one decoded image object) → 1-tuple, missing → ()."""
    col = ctx.cols.images
    value = row.get(col)
    if value is None or (ctx.csv and value == ""):
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for i, item in enumerate(items):
        if item is None or item == "" or isinstance(item, (bool, int, float)):
            field = f"{col}[{i}]" if isinstance(value, (list, tuple)) else col
            raise ctx.error(f"must be an image path or URL, got {_short(item)}", rowno, field)
    if items:
        ctx.report.add("images")
    return tuple(items)


def _label(row: dict[str, Any], col: str, rowno: int, ctx: _Context) -> str | None:
    """An optional id-like column as a string (None when absent or empty)."""
    value = row.get(col)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ctx.error(f"must be a string or an integer, got a {_type_name(value)} ({_short(value)})", rowno, col)
    return str(value)


def _subset(row: dict[str, Any], rowno: int, ctx: _Context) -> str | None:
    col = ctx.cols.subset if ctx.cols.subset in row else "source"
    return _label(row, col, rowno, ctx)


def _same_text_type(a: Text, a_col: str, b: Text, b_col: str, rowno: int, ctx: _Context) -> None:
    if isinstance(a, str) != isinstance(b, str):
        raise ctx.error(
            f"is a {_type_name(b)} but {a_col!r} is a {_type_name(a)}; prompt and responses must all be strings or "
            "all be lists of chat messages",
            rowno,
            b_col,
        )


# ---------------------------------------------------------------------------------------------- helpers


def _parse_float(text: str) -> float | str:
    """``text`` as a float, or unchanged when it is not a number (the caller reports it)."""
    try:
        return float(text)
    except ValueError:
        return text


def _columns(row: dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in row) or "none"


def _logical_name(col: str, ctx: _Context) -> str:
    """The ``columns:`` key whose value is ``col`` (``chosen`` for the chosen column), for hints."""
    for key, value in ctx.cols.model_dump().items():
        if value == col:
            return key
    return col


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    mismatched = counts.get("prefix_mismatch_common_prefix", 0) + counts.get("prefix_mismatch_dropped", 0)
    if mismatched:
        logger.warning(
            "%s: %d implicit-prompt pairs whose transcripts differ before the last assistant turn (%s)",
            report.source,
            mismatched,
            "used the common prefix as the prompt" if counts.get("prefix_mismatch_common_prefix") else "dropped",
        )
