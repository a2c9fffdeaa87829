"""``rewardlab inspect DATA``: what is in a preference data file before training on it.

:func:`run_inspect` reads the source leniently (every malformed row is collected, the good rows are still
measured) and returns a JSON-serialisable report; :func:`render_inspect` prints it as rich tables.

Report keys:

- ``source``, ``format``, ``form`` (``pairs`` | ``groups`` | ``rank_rows`` | ``rated``, see
  :mod:`rewardlab.data.readers`; None when no row was readable), ``kind`` (``pairs`` | ``ranked`` | ``rated``),
  ``prompt`` (``explicit`` | ``implicit``), ``text`` (``strings`` | ``messages`` | ``mixed``), ``rows`` (data
  rows read, bad ones included), ``records``, ``columns`` (of the first readable row), ``reader_counts`` (the
  reader's report counts).
- ``problems``: ``count`` (all row-level problems), ``identical_pairs`` (of them, chosen == rejected),
  ``by_field`` (``{field: count}``, ``"(row)"`` for a whole-row problem) and ``listed`` (the first
  ``max_errors`` as ``{"row", "field", "message"}``). After the reader's problems come repeated ids: each
  record whose ``id`` an earlier record already has is one problem on its row, naming the earlier row.
- ``lengths``: ``unit`` (``tokens`` with ``tokenizer``, else whitespace-separated ``words``), ``max_length``,
  one summary per text field (pairs: ``prompt``, ``chosen``, ``rejected``; groups: ``prompt``, ``responses``),
  each ``{count, min, p50, p90, p95, p99, max, mean}`` (linear-interpolated percentiles), and ``over_max_length``
  ``{count, of}``: pairs whose prompt+chosen or prompt+rejected is longer than ``max_length`` (groups: responses
  whose prompt+response is). Tokens are counted without special tokens, prompt and response separately; chat
  messages are measured as their contents joined by newlines.
- ``duplicates``: ``records`` (records that exactly repeat an earlier one: same prompt, chosen and rejected /
  same prompt and responses), ``unique_prompts`` and ``repeated_prompts`` (distinct prompts in 2+ records).
- ``ranked`` (groups only, else None): ``groups``, ``responses``, ``k_distribution`` (``{K: count}``),
  ``groups_with_ties``, ``tied_pairs``, ``groups_with_rank_gaps`` (distinct ranks are not 1..m) and
  ``pairs_after_expansion`` (ties give no pair).
- ``margin`` (pairs, when the first row has a margin column or any pair a margin; else None): ``summary`` of
  the margins given and ``missing`` (pairs without one).
- ``ratings`` (when any record has ratings, else None): ``{attribute: summary}`` of the values given, each
  summary with ``missing`` (responses whose rating is null or absent) added.
- ``subsets`` (when the first row has a subset or ``source`` column or any record a subset; else None):
  ``{subset: records}``, ``"(none)"`` for no value.
- ``images`` (when any record has images, else None): ``records_with_images``, ``records_without``,
  ``per_record`` (``{images per record: records}``), ``sources`` (``{file | url | bytes | pil: images}``),
  ``width`` / ``height`` summaries (pixels, of the readable files and images), ``problems`` (missing, unreadable
  or corrupt images, images over ``MAX_IMAGE_PIXELS`` and relative paths that leave the data file's folder, see
  :mod:`rewardlab.data.transforms`; URLs are not fetched) and ``listed`` (the first ``max_errors`` as
  ``{"record", "id", "image", "message"}``, ``record`` counting readable records from 1). Relative paths resolve
  next to the file.
- ``examples``: the first ``examples`` records, texts cut to about 200 characters.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from rewardlab.config.schema import InspectConfig
from rewardlab.data.readers import IDENTICAL_PAIR_MESSAGE, ReadResult, read_records_lenient
from rewardlab.data.records import PreferencePair, RankedGroup, Record, Text, plain_text
from rewardlab.errors import DataError, ModelError

Measure = Callable[[list[str]], list[int]]
EXAMPLE_CHARS = 200
_PERCENTILES = (50, 90, 95, 99)


def run_inspect(cfg: InspectConfig) -> dict[str, Any]:
    """Read ``cfg.data`` leniently and return the report described in the module docstring.

    Raises :class:`DataError` for file-level problems only (missing file, unknown format, ...) and
    :class:`ModelError` when ``cfg.tokenizer`` cannot be loaded. Row-level problems go to ``problems``.
    """
    measure = _tokenizer_measure(cfg.tokenizer) if cfg.tokenizer else _word_measure
    result = read_records_lenient(cfg.data)
    records = result.records
    pairs = [r for r in records if isinstance(r, PreferencePair)]
    groups = [r for r in records if isinstance(r, RankedGroup)]
    cols = cfg.data.columns
    has_margin = bool(pairs) and (cols.margin in result.columns or any(p.margin is not None for p in pairs))
    has_subset = cols.subset in result.columns or "source" in result.columns or any(r.subset for r in records)
    return {
        "source": result.report.source,
        "format": result.report.format,
        "form": result.form,
        "kind": None if result.form is None else {"pairs": "pairs", "rated": "rated"}.get(result.form, "ranked"),
        "prompt": "explicit" if result.explicit_prompt else "implicit",
        "text": _text_type(records),
        "rows": result.report.rows,
        "records": result.report.records,
        "columns": list(result.columns),
        "reader_counts": dict(sorted(result.report.counts.items())),
        "problems": _problems(result.errors + _repeated_ids(result, cols.id), cfg.max_errors),
        "lengths": _lengths(pairs, groups, measure, cfg.max_length, "tokens" if cfg.tokenizer else "words"),
        "duplicates": _duplicates(records),
        "ranked": _ranked(groups) if result.form in ("groups", "rank_rows") else None,
        "ratings": _ratings(groups) if any(g.rated for g in groups) else None,
        "margin": _margin(pairs) if has_margin else None,
        "subsets": dict(Counter(r.subset or "(none)" for r in records).most_common()) if has_subset else None,
        "images": _images(records, cfg.data.path, cfg.max_errors) if any(r.images for r in records) else None,
        "examples": [_example(r) for r in records[: cfg.examples]],
    }


# ---------------------------------------------------------------------------------------------- measuring


def _word_measure(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def _tokenizer_measure(name: str) -> Measure:
    """Token counts (no special tokens) from ``AutoTokenizer.from_pretrained(name)``; ModelError if it won't load."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError, TypeError, ImportError) as err:
        raise ModelError(
            f"{name}: cannot load a tokenizer ({err}); give a local tokenizer directory or a hub name, or leave out "
            "`tokenizer` to count whitespace-separated words"
        ) from None

    def measure(texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        return [len(seq) for seq in ids]

    return measure


def flatten(text: Text) -> str:
    """The text that is measured: a string as is; chat messages as their contents (text parts) joined by newlines."""
    return plain_text(text, turn_sep="\n", part_sep="\n")


def summarize(values: Sequence[float]) -> dict[str, Any] | None:
    """``{count, min, p50, p90, p95, p99, max, mean}`` of ``values`` (None when empty); percentiles interpolate
    linearly between order statistics (numpy's default), floats are rounded to 3 decimals."""
    if not values:
        return None
    ordered = sorted(values)
    out: dict[str, Any] = {"count": len(ordered), "min": ordered[0]}
    for q in _PERCENTILES:
        pos = (len(ordered) - 1) * q / 100
        lo, hi = math.floor(pos), math.ceil(pos)
        out[f"p{q}"] = round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)
    out["max"] = ordered[-1]
    out["mean"] = round(math.fsum(ordered) / len(ordered), 3)
    return out


def _lengths(
    pairs: list[PreferencePair], groups: list[RankedGroup], measure: Measure, max_length: int, unit: str
) -> dict[str, Any]:
    """Length summaries per text field and the over-``max_length`` count (module docstring)."""
    out: dict[str, Any] = {"unit": unit, "max_length": max_length}
    if groups:
        prompt = measure([flatten(g.prompt) for g in groups])
        responses = measure([flatten(text) for g in groups for text in g.responses])
        owner = [prompt[i] for i, g in enumerate(groups) for _ in g.responses]  # each response's prompt length
        over = sum(p + r > max_length for p, r in zip(owner, responses))
        out.update(prompt=summarize(prompt), responses=summarize(responses))
        out["over_max_length"] = {"count": over, "of": len(responses)}
        return out
    prompt = measure([flatten(p.prompt) for p in pairs])
    chosen = measure([flatten(p.chosen) for p in pairs])
    rejected = measure([flatten(p.rejected) for p in pairs])
    over = sum(max(c, r) + p > max_length for p, c, r in zip(prompt, chosen, rejected))
    out.update(prompt=summarize(prompt), chosen=summarize(chosen), rejected=summarize(rejected))
    out["over_max_length"] = {"count": over, "of": len(pairs)}
    return out


# ---------------------------------------------------------------------------------------------- counting


def _problems(errors: list[DataError], max_errors: int) -> dict[str, Any]:
    by_field = Counter(err.field or "(row)" for err in errors)
    return {
        "count": len(errors),
        "identical_pairs": sum(_message(err).startswith(IDENTICAL_PAIR_MESSAGE) for err in errors),
        "by_field": dict(by_field.most_common()),
        "listed": [{"row": err.row, "field": err.field, "message": _message(err)} for err in errors[:max_errors]],
    }


def _repeated_ids(result: ReadResult, column: str) -> list[DataError]:
    """One problem per record whose id an earlier record has: ids name records in scores and errors, so a
    repeat makes them ambiguous (records without an id are skipped)."""
    first_row: dict[str, int] = {}
    problems = []
    for record, row in zip(result.records, result.record_rows):
        if record.id is None:
            continue
        if record.id in first_row:
            problems.append(
                DataError(
                    f"id {record.id!r} repeats the id of row {first_row[record.id]}; ids must be unique: give this "
                    "record its own id, or remove it if it is a copy",
                    source=result.report.source,
                    row=row,
                    field=column,
                )
            )
        else:
            first_row[record.id] = row
    return problems


def _message(err: DataError) -> str:
    """The error's message without its ``source:row:field: `` prefix (those are listed separately)."""
    text = str(err)
    where = ":".join(str(p) for p in (err.source, err.row, err.field) if p is not None)
    return text[len(where) + 2 :] if where and text.startswith(f"{where}: ") else text


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _duplicates(records: list[Record]) -> dict[str, int]:
    seen: set[str] = set()
    repeats = 0
    prompts: Counter[str] = Counter()
    for record in records:
        if isinstance(record, PreferencePair):
            key = _key([record.prompt, record.chosen, record.rejected])
        else:
            key = _key([record.prompt, list(record.responses)])
        repeats += key in seen
        seen.add(key)
        prompts[_key(record.prompt)] += 1
    return {
        "records": repeats,
        "unique_prompts": len(prompts),
        "repeated_prompts": sum(n > 1 for n in prompts.values()),
    }


def _ranked(groups: list[RankedGroup]) -> dict[str, Any]:
    ties_per_group = [sum(n * (n - 1) // 2 for n in Counter(g.ranks).values()) for g in groups]
    gaps = sum(sorted(set(g.ranks)) != list(range(1, len(set(g.ranks)) + 1)) for g in groups)
    all_pairs = sum(len(g.ranks) * (len(g.ranks) - 1) // 2 for g in groups)
    return {
        "groups": len(groups),
        "responses": sum(len(g.responses) for g in groups),
        "k_distribution": dict(sorted(Counter(len(g.responses) for g in groups).items())),
        "groups_with_ties": sum(t > 0 for t in ties_per_group),
        "tied_pairs": sum(ties_per_group),
        "groups_with_rank_gaps": gaps,
        "pairs_after_expansion": all_pairs - sum(ties_per_group),
    }


def _ratings(groups: list[RankedGroup]) -> dict[str, Any]:
    """Per attribute, the summary of the ratings given and how many responses lack one."""
    given = [r for g in groups for r in g.ratings or [{}] * len(g.responses)]
    names = list(dict.fromkeys(name for r in given for name in r))
    out = {}
    for name in names:
        values = [r[name] for r in given if r.get(name) is not None]
        out[name] = {**(summarize(values) or {}), "missing": len(given) - len(values)}
    return out


def _margin(pairs: list[PreferencePair]) -> dict[str, Any]:
    margins = [p.margin for p in pairs if p.margin is not None]
    return {"summary": summarize(margins), "missing": len(pairs) - len(margins)}


def _images(records: list[Record], data_path: str, max_errors: int) -> dict[str, Any]:
    """The ``images`` report: counts, sources, sizes and every image that cannot be opened (headers only)."""
    from pathlib import Path

    base = Path(data_path).expanduser().parent
    sources: Counter[str] = Counter()
    widths, heights, problems = [], [], []
    for number, record in enumerate(records, start=1):
        for ref in record.images:
            kind = _image_kind(ref)
            sources[kind] += 1
            if kind == "url":
                continue  # not fetched by inspect
            size, message = _image_size(ref, base)
            if size is not None:
                widths.append(size[0])
                heights.append(size[1])
            else:
                problems.append({"record": number, "id": record.id, "image": _key(ref)[:200], "message": message})
    with_images = sum(bool(r.images) for r in records)
    return {
        "records_with_images": with_images,
        "records_without": len(records) - with_images,
        "per_record": dict(sorted(Counter(len(r.images) for r in records if r.images).items())),
        "sources": dict(sources.most_common()),
        "width": summarize(widths),
        "height": summarize(heights),
        "problems": len(problems),
        "listed": problems[:max_errors],
    }


def _image_kind(ref: Any) -> str:
    if hasattr(ref, "size") and hasattr(ref, "convert"):
        return "pil"
    if isinstance(ref, str) and ref.startswith(("http://", "https://")):
        return "url"
    return "bytes" if isinstance(ref, dict) and ref.get("bytes") is not None else "file"


def _image_size(ref: Any, base: Any) -> tuple[tuple[int, int] | None, str | None]:
    """``(size, None)`` for an image training can load, else ``(None, what is wrong)``; only headers are read,
    with the checks :func:`~rewardlab.data.transforms.load_image` makes (size limit, paths inside ``base``)."""
    from PIL import UnidentifiedImageError

    from rewardlab.data.transforms import check_image_size, open_image, stored_image_source

    try:
        if _image_kind(ref) == "pil":
            check_image_size(ref.size, "(PIL image)")
            return ref.size, None
        stored = stored_image_source(ref, base)  # resolved as training resolves it
        if stored is None:
            raise ValueError(f"not a path, URL, bytes dict or PIL image: {type(ref).__name__}")
        with open_image(stored[1], stored[0]) as img:
            return img.size, None
    except FileNotFoundError:
        return None, "not found"
    except DataError as exc:
        return None, str(exc)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        return None, f"corrupt or not an image ({exc})"


def _text_type(records: list[Record]) -> str | None:
    kinds = {isinstance(r.responses[0] if isinstance(r, RankedGroup) else r.chosen, str) for r in records}
    return None if not kinds else "mixed" if len(kinds) > 1 else "strings" if kinds == {True} else "messages"


def _clip(text: Text) -> str:
    """Display form: a string, or chat messages as ``role: content`` lines; cut to ~``EXAMPLE_CHARS``."""
    shown = plain_text(text, turn_sep="\n", part_sep="\n", roles=True)
    return shown if len(shown) <= EXAMPLE_CHARS else shown[:EXAMPLE_CHARS] + "…"


def _example(record: Record) -> dict[str, Any]:
    if isinstance(record, RankedGroup):
        return {
            "id": record.id,
            "prompt": _clip(record.prompt),
            "responses": [_clip(r) for r in record.responses],
            "ranks": list(record.ranks),
            **({"ratings": list(record.ratings)} if record.ratings is not None else {}),
        }
    out = {"prompt": _clip(record.prompt), "chosen": _clip(record.chosen), "rejected": _clip(record.rejected)}
    extras = {"id": record.id, "margin": record.margin, "subset": record.subset}
    return {**out, **{k: v for k, v in extras.items() if v is not None}}


# ---------------------------------------------------------------------------------------------- rendering


def render_inspect(report: dict[str, Any]) -> None:
    """Print ``report`` (from :func:`run_inspect`) to stdout as rich tables."""
    from rewardlab.recipes.console import stdout_console

    console = stdout_console()
    console.print(_overview_table(report))
    console.print(_lengths_table(report["lengths"]))
    if report["ranked"] is not None:
        console.print(_mapping_table("Ranked groups", report["ranked"]))
    if report["margin"] is not None and report["margin"]["summary"] is not None:
        console.print(
            _mapping_table("Margins", {**report["margin"]["summary"], "missing": report["margin"]["missing"]})
        )
    if report.get("ratings"):
        console.print(_ratings_table(report["ratings"]))
    if report["subsets"] is not None:
        console.print(_mapping_table("Subsets (records)", report["subsets"]))
    if report["reader_counts"]:
        console.print(_mapping_table("Reader counts", report["reader_counts"]))
    if report["images"] is not None:
        console.print(_images_table(report["images"]))
    if report["problems"]["count"]:
        console.print(_problems_table(report["problems"]))
    else:
        console.print("No problems found.")
    for i, example in enumerate(report["examples"], start=1):
        if "ranks" in example:  # a group: one line per response, with its rank (and ratings, when rated)
            ratings = example.get("ratings") or [None] * len(example["ranks"])
            alone = len(example["ranks"]) == 1 and example.get("ratings")
            lines = [f"[{_tags(None if alone else rank, rating)}] {text}"
                     for rank, rating, text in zip(example["ranks"], ratings, example["responses"])]  # fmt: skip
            example = {"id": example["id"], "prompt": example["prompt"], "responses": "\n".join(lines)}
        console.print(_mapping_table(f"Example {i}", example))


def _overview_table(report: dict[str, Any]) -> Any:
    dup = report["duplicates"]
    kind = report["kind"] or "unknown (no readable row)"
    if report["kind"] == "pairs":
        kind = f"pairs, {report['prompt']} prompt"
    elif report["kind"] == "rated":
        kind = "rated responses (one row per response)"
    elif report["kind"] == "ranked":
        kind = f"ranked groups ({'one row per group' if report['form'] == 'groups' else 'one row per response'})"
    if report["text"] == "messages":
        kind += ", conversational"
    overview = {
        "source": report["source"],
        "format": report["format"],
        "kind": kind,
        "rows / records": f"{report['rows']} / {report['records']}",
        "columns": ", ".join(report["columns"]),
        "problems": report["problems"]["count"],
        "duplicate records": dup["records"],
        "prompts (unique / repeated)": f"{dup['unique_prompts']} / {dup['repeated_prompts']}",
    }
    return _mapping_table("Data", overview)


def _tags(rank: int | None, ratings: dict[str, float | None] | None) -> str:
    """``rank 1; helpfulness=3, verbosity=?`` for an example line (``?``: unknown)."""
    tags = [] if rank is None else [f"rank {rank}"]
    if ratings:
        tags.append(", ".join(f"{k}={'?' if v is None else f'{v:g}'}" for k, v in ratings.items()))
    return "; ".join(tags)


def _ratings_table(ratings: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="Ratings")
    for column in ("attribute", "count", "min", "p50", "max", "mean", "missing"):
        table.add_column(column, justify="left" if column == "attribute" else "right")
    for name, s in ratings.items():
        cells = [s.get(k) for k in ("count", "min", "p50", "max", "mean")]
        table.add_row(name, *("" if v is None else f"{v:g}" for v in cells), str(s["missing"]))
    return table


def _mapping_table(title: str, mapping: dict[str, Any]) -> Any:
    """Two columns, key and value; values are data, so they are shown as plain Text (never parsed as markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in mapping.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        table.add_row(Text(str(key)), Text(shown))
    return table


def _lengths_table(lengths: dict[str, Any]) -> Any:
    from rich.table import Table

    over = lengths["over_max_length"]
    caption = f"{over['count']} of {over['of']} over max_length {lengths['max_length']} (prompt + response)"
    table = Table(title=f"Lengths ({lengths['unit']})", caption=caption, title_justify="left")
    stats = ("count", "min", "p50", "p90", "p95", "p99", "max", "mean")
    table.add_column("field")
    for stat in stats:
        table.add_column(stat, justify="right")
    for name, summary in lengths.items():
        if isinstance(summary, dict) and "p50" in summary:
            table.add_row(name, *(str(summary[s]) for s in stats))
    return table


def _images_table(images: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    def size(summary: dict[str, Any] | None) -> str:
        return "-" if summary is None else f"{summary['min']}–{summary['max']} (median {summary['p50']:g})"

    overview = {
        "records with / without images": f"{images['records_with_images']} / {images['records_without']}",
        "images per record": ", ".join(f"{k}: {v}" for k, v in images["per_record"].items()),
        "sources": ", ".join(f"{k}: {v}" for k, v in images["sources"].items()),
        "width (px)": size(images["width"]),
        "height (px)": size(images["height"]),
        "problems": images["problems"],
    }
    table = _mapping_table("Images", overview)
    if not images["problems"]:
        return table
    listed = Table(title=f"Image problems: {images['problems']}", title_justify="left")
    for column in ("record", "id", "image", "message"):
        listed.add_column(column, overflow="fold", justify="right" if column == "record" else "left")
    for item in images["listed"]:
        listed.add_row(str(item["record"]), Text(item["id"] or ""), Text(item["image"]), Text(item["message"]))
    from rich.console import Group

    return Group(table, listed)


def _problems_table(problems: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    listed = problems["listed"]
    title = f"Problems: {problems['count']} (identical chosen/rejected: {problems['identical_pairs']})"
    if problems["count"] > len(listed):
        title += f", first {len(listed)} shown"
    table = Table(title=title, title_justify="left")
    table.add_column("row", justify="right")
    table.add_column("field")
    table.add_column("message", overflow="fold")
    for item in listed:
        table.add_row(str(item["row"] or ""), Text(item["field"] or ""), Text(item["message"]))
    return table
