"""Row validation: turn one raw row's cells into record fields, or raise a :class:`DataError` naming file, row
and field with what is wrong and how to fix it.

:class:`RowContext` carries where we are (the source's label for errors), the ``columns:`` mapping, the
:class:`ReadReport` whose counts the checks add to, and the reader's policies. The format and record-form
logic lives in :mod:`rewardlab.data.readers`; these are the cell-level checks it shares across forms.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from rewardlab.config.schema import ColumnMap
from rewardlab.data.records import ReadReport, Text, lone_surrogate
from rewardlab.errors import DataError

_MESSAGE_HINT = 'a message is an object like {"role": "user", "content": "..."}'


@dataclasses.dataclass
class RowContext:
    """What row parsers need: where we are (for errors), the column names, the report and the policies."""

    label: str
    cols: ColumnMap
    report: ReadReport
    policy: str
    csv: bool = False  # CSV cells are strings: parse numbers, treat empty optional cells as missing
    explicit_prompt: bool = True
    errors: list[DataError] | None = None  # None: raise the first problem; a list: collect row problems there
    form: str | None = None  # set once the first row is read: pairs | groups | rank_rows
    columns: list[str] = dataclasses.field(default_factory=list)  # the first row's columns
    # model.attributes ({name: (min, max)}): ratings must give each (or null) within its range; None: any numbers
    attributes: dict[str, tuple[float, float]] | None = None

    def error(self, message: str, row: int | None = None, field: str | None = None) -> DataError:
        return DataError(message, source=self.label, row=row, field=field)

    def row_error(self, err: DataError) -> None:
        """A row the row iterator could not parse: raise, or count the row and collect the error."""
        if self.errors is None:
            raise err
        self.report.rows += 1
        self.errors.append(err)


# ---------------------------------------------------------------------------------------------- fields


def text_field(row: dict[str, Any], col: str, rowno: int, ctx: RowContext, *, allow_empty: bool = False) -> Text:
    """A required prompt/response: a string, or a list of ``{role, content}`` messages."""
    require_field(row, col, rowno, ctx)
    return check_text(row[col], col, rowno, ctx, allow_empty=allow_empty)


def require_field(row: dict[str, Any], col: str, rowno: int, ctx: RowContext) -> None:
    """Raise the missing-field error (with the columns found and the `columns:` hint) if ``col`` is absent."""
    if col not in row:
        raise ctx.error(
            f"missing required field {col!r} (columns found: {column_names(row)}). If it has another name, map it in "
            f"the config, e.g. `columns: {{{_logical_name(col, ctx)}: your_column}}`",
            rowno,
            col,
        )


def _all_characters(value: Text, field: str, rowno: int, ctx: RowContext) -> Text:
    if (where := lone_surrogate(value)) is not None:
        raise ctx.error(f"holds a lone surrogate ({where}), which is not text; fix the row's encoding", rowno, field)
    return value


def check_text(value: Any, field: str, rowno: int, ctx: RowContext, *, allow_empty: bool = False) -> Text:
    if value is None:
        raise ctx.error("is null; every row needs a value here: fill it in or remove the row", rowno, field)
    if isinstance(value, str):
        if not value and not allow_empty:
            raise ctx.error("is an empty string; fill in the response or remove the row", rowno, field)
        return _all_characters(value, field, rowno, ctx)
    if isinstance(value, list):
        if not value and not allow_empty:
            raise ctx.error("is an empty list of messages; fill in the response or remove the row", rowno, field)
        for i, message in enumerate(value):
            if not (
                isinstance(message, dict)
                and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), (str, list))
            ):
                raise ctx.error(
                    f"is not a chat message ({short_repr(message)}); {_MESSAGE_HINT}", rowno, f"{field}[{i}]"
                )
        return _all_characters(value, field, rowno, ctx)
    raise ctx.error(
        f"must be a string or a list of chat messages, got a {type_name(value)} ({short_repr(value)})", rowno, field
    )


def check_response(value: Text, col: str, rowno: int, ctx: RowContext) -> None:
    """A response left after prompt extraction: never empty; whitespace-only is kept but counted."""
    if not value:
        raise ctx.error("is empty after removing the shared prompt; fix or remove the row", rowno, col)
    if isinstance(value, str) and not value.strip():
        ctx.report.add("blank_response")


def text_list_field(row: dict[str, Any], col: str, rowno: int, ctx: RowContext) -> list[Text]:
    require_field(row, col, rowno, ctx)
    value = row[col]
    if not isinstance(value, list):
        raise ctx.error(f"must be a list of responses, got a {type_name(value)} ({short_repr(value)})", rowno, col)
    responses = [check_text(item, f"{col}[{i}]", rowno, ctx) for i, item in enumerate(value)]
    for response in responses:
        if isinstance(response, str) and not response.strip():
            ctx.report.add("blank_response")
    return responses


def rank_list_field(row: dict[str, Any], n: int, rowno: int, ctx: RowContext) -> list[int]:
    col = ctx.cols.ranks
    require_field(row, col, rowno, ctx)
    value = row[col]
    if not isinstance(value, list) or len(value) != n:
        got = f"{len(value)} ranks" if isinstance(value, list) else f"a {type_name(value)}"
        raise ctx.error(f"must be a list of {n} integer ranks (one per response, 1 = best), got {got}", rowno, col)
    return [rank_field(rank, rowno, f"{col}[{i}]", ctx) for i, rank in enumerate(value)]


def rank_field(value: Any, rowno: int, field: str, ctx: RowContext, row: dict[str, Any] | None = None) -> int:
    if row is not None:
        require_field(row, field, rowno, ctx)
    if ctx.csv and isinstance(value, str) and value.strip().isdecimal():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ctx.error(f"rank must be an integer ≥ 1 (1 = best), got {short_repr(value)}", rowno, field)
    return value


def margin_field(row: dict[str, Any], rowno: int, ctx: RowContext) -> float | None:
    col = ctx.cols.margin
    value = row.get(col)
    if value is None or (ctx.csv and value.strip() == ""):
        return None
    if ctx.csv:
        value = _parse_float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ctx.error(
            f"margin must be a finite number, got {short_repr(value)}; leave it out for no margin", rowno, col
        )
    ctx.report.add("margin")
    return float(value)


Ratings = dict[str, float | None]


def ratings_field(row: dict[str, Any], rowno: int, ctx: RowContext, responses: int | None = None) -> Any:
    """A rated row's ratings (``responses=None``: one ``{attribute: value}``), or a ranked group's (one per
    response, a list); None when the row has none. ``columns.ratings`` is one column of such objects, or a list of
    columns holding one attribute each (then every response of a group shares them: use it for rated rows).
    Values are finite numbers or null (unknown: masked out of the loss); with ``ctx.attributes`` every attribute
    must be given (or null) and lie in its range, and other keys are dropped (counted as ``ratings_unused``)."""
    col = ctx.cols.ratings
    if isinstance(col, list):
        for name in col:
            require_field(row, name, rowno, ctx)
        return _check_ratings({name: row[name] for name in col}, rowno, "ratings", ctx, per_column=True)
    value = row.get(col)
    if value is None or (ctx.csv and value.strip() == ""):
        return None
    if ctx.csv:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise ctx.error("must be a JSON object of attribute ratings, e.g. {\"helpfulness\": 3}", rowno,
                            col) from None  # fmt: skip
    if responses is None:
        return _check_ratings(value, rowno, col, ctx)
    if not isinstance(value, list) or len(value) != responses:
        raise ctx.error(f"must be a list of {responses} rating objects, one per response (in the order of the "
                        f"responses), got {short_repr(value)}", rowno, col)  # fmt: skip
    return tuple(_check_ratings(item, rowno, f"{col}[{i}]", ctx) for i, item in enumerate(value))


def _check_ratings(value: Any, rowno: int, col: str, ctx: RowContext, per_column: bool = False) -> Ratings:
    if not isinstance(value, dict) or not value:
        raise ctx.error(f"must be an object of attribute ratings, e.g. {{\"helpfulness\": 3}}, got "
                        f"{short_repr(value)}", rowno, col)  # fmt: skip
    out: Ratings = {}
    for name, rating in value.items():
        where = str(name) if per_column else f"{col}.{name}"
        if rating is None or (isinstance(rating, str) and ctx.csv and rating.strip() == ""):
            out[str(name)] = None
            continue
        if isinstance(rating, str) and ctx.csv:
            rating = _parse_float(rating)
        if isinstance(rating, bool) or not isinstance(rating, (int, float)) or not math.isfinite(rating):
            raise ctx.error(f"a rating must be a finite number or null (unknown), got {short_repr(rating)}", rowno,
                            where)  # fmt: skip
        out[str(name)] = float(rating)
    if ctx.attributes is None:
        return out
    for name, (low, high) in ctx.attributes.items():
        where = name if per_column else f"{col}.{name}"
        if name not in out:
            raise ctx.error(f"has no rating for {name!r} (ratings given: {', '.join(out)}); give every attribute of "
                            "model.attributes, null where it is unknown, or map the names with columns.ratings",
                            rowno, where)  # fmt: skip
        rating = out[name]
        if rating is not None and not low <= rating <= high:
            raise ctx.error(f"{rating:g} is outside the range [{low:g}, {high:g}] of model.attributes.{name}; fix "
                            "the rating or the range", rowno, where)  # fmt: skip
        if rating is None:
            ctx.report.add("ratings_missing")
    unused = [name for name in out if name not in ctx.attributes]
    if unused:
        ctx.report.add("ratings_unused", len(unused))
    return {name: out[name] for name in ctx.attributes}


def images_field(row: dict[str, Any], rowno: int, ctx: RowContext) -> tuple[Any, ...]:
    """Images as given: a list → tuple, one string (or one decoded image object) → 1-tuple, missing → ()."""
    col = ctx.cols.images
    value = row.get(col)
    if value is None or (ctx.csv and value == ""):
        return ()
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    for i, item in enumerate(items):
        if item is None or item == "" or isinstance(item, (bool, int, float)):
            field = f"{col}[{i}]" if isinstance(value, (list, tuple)) else col
            raise ctx.error(f"must be an image path or URL, got {short_repr(item)}", rowno, field)
    if items:
        ctx.report.add("images")
    return tuple(items)


def label_field(row: dict[str, Any], col: str, rowno: int, ctx: RowContext) -> str | None:
    """An optional id-like column as a string (None when absent or empty)."""
    value = row.get(col)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ctx.error(f"must be a string or an integer, got a {type_name(value)} ({short_repr(value)})", rowno, col)
    return str(value)


def subset_field(row: dict[str, Any], rowno: int, ctx: RowContext) -> str | None:
    col = ctx.cols.subset if ctx.cols.subset in row else "source"
    return label_field(row, col, rowno, ctx)


def same_text_type(a: Text, a_col: str, b: Text, b_col: str, rowno: int, ctx: RowContext) -> None:
    if isinstance(a, str) != isinstance(b, str):
        raise ctx.error(
            f"is a {type_name(b)} but {a_col!r} is a {type_name(a)}; prompt and responses must all be strings or "
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


def column_names(row: dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in row) or "none"


def _logical_name(col: str, ctx: RowContext) -> str:
    """The ``columns:`` key whose value is ``col`` (``chosen`` for the chosen column), for hints."""
    for key, value in ctx.cols.model_dump().items():
        if value == col:
            return key
    return col


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def prompt_of(row: dict[str, Any], column: str, source: str, rowno: int, hint: str) -> Text:
    """The prompt of a prompts-only row (RL, candidate generation): a non-empty string or a list of chat
    messages, else a :class:`DataError` naming file, row and column (``hint``: how to name another column)."""
    if column not in row:
        raise DataError(f"missing column {column!r} (found: {', '.join(row) or 'none'}); {hint}", source=source,
                        row=rowno, field=column)  # fmt: skip
    value = row[column]
    messages = isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m for m in value)
    if not (isinstance(value, str) and value.strip()) and not messages:
        raise DataError(f"expected a non-empty string or a list of chat messages, got {value!r}", source=source,
                        row=rowno, field=column)  # fmt: skip
    return value
