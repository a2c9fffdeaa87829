"""``rewardlab bench``: reward models on the standard benchmarks (:mod:`rewardlab.evaluation.benchmarks`), each number
beside its length baselines → ``bench.json``, ``bench.csv`` and a table.

Each model's scores of each suite are kept in ``OUT/cache/<model>/<suite>.jsonl`` as they are made (a header line
naming the model and its scoring settings, then one line per item), so a run that stops continues where it stopped
and a rerun scores only items it has not scored. A cache written with other settings is started afresh.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rewardlab.config.schema import BenchConfig
from rewardlab.data.files import RunLock, atomic_write_text, cut_unfinished_line, output_errors
from rewardlab.data.records import plain_text
from rewardlab.errors import ConfigError, DataError
from rewardlab.evaluation.benchmarks import (
    BASELINES,
    TEXT_ONLY,
    BenchItem,
    ItemScores,
    Suite,
    char_length,
    confound_baselines,
    get_suite,
    read_suite,
    with_baselines,
)

logger = logging.getLogger(__name__)

CSV_COLUMNS = ["model", "suite", "level", "name", "metric", "value", "n", *BASELINES, TEXT_ONLY]
CHUNK_ITEMS = 256  # items scored between two cache appends: what a killed run loses at most


@dataclass
class BenchResult:
    out_dir: Path
    rows: list[dict[str, Any]]  # the CSV rows
    scored: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, suite) → items scored by this run
    cached: dict[tuple[str, str], int] = field(default_factory=dict)  # (model, suite) → items read from the cache


class ScoreCache:
    """``path`` (JSONL): a header ``{"cache": meta}``, then ``{"key", "chosen", "rejected", "truncated"}`` per scored
    item (``truncated``: how many of its responses were cut to the model's max length)."""

    def __init__(self, path: Path, meta: dict[str, Any]):
        self.path, self.meta = path, meta
        self.scores: dict[str, ItemScores] = {}
        self.truncated: dict[str, int] = {}
        lines = cut_unfinished_line(path).decode("utf-8").splitlines()
        header = _json_or_none(lines[0]) if lines else None
        if lines and isinstance(header, dict) and header.get("cache") == meta:
            for line in lines[1:]:
                entry = _json_or_none(line)
                if isinstance(entry, dict) and {"key", "chosen", "rejected"} <= set(entry):
                    self.scores[entry["key"]] = ItemScores(tuple(entry["chosen"]), tuple(entry["rejected"]))
                    self.truncated[entry["key"]] = int(entry.get("truncated") or 0)
            return
        if lines:
            logger.warning("%s: written for other settings (%s); scoring afresh", path, header)
        atomic_write_text(path, json.dumps({"cache": meta}) + "\n")

    def add(self, entries: dict[str, ItemScores], truncated: dict[str, int] | None = None) -> None:
        truncated = truncated or {}
        with output_errors(self.path), self.path.open("a", encoding="utf-8") as f:
            for key, s in entries.items():
                f.write(json.dumps({"key": key, "chosen": list(s.chosen), "rejected": list(s.rejected),
                                    "truncated": truncated.get(key, 0)}) + "\n")  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        self.scores.update(entries)
        self.truncated.update({key: truncated.get(key, 0) for key in entries})


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


def model_names(models: list[str]) -> list[str]:
    """A folder-safe name per model (a hub ``org/name`` becomes ``org--name``); repeats get ``-2``, ``-3``."""
    names: list[str] = []
    for model in models:
        judge = model.startswith("judge:")
        model = model[len("judge:") :] if judge else model
        base = Path(model.rstrip("/")).name if Path(model).exists() else model.strip("/").replace("/", "--")
        base = f"judge-{base}" if judge else base
        base = re.sub(r"[^A-Za-z0-9_.=-]+", "_", base).strip("._") or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def cache_meta(model: str, cfg: BenchConfig, scorer: Any = None) -> dict[str, Any]:
    """What a cache's scores depend on: the model (for a folder: its path and its weight files' sizes and times, so
    a retrained model is scored afresh) and the settings that change scores; for a judge, its backend (model and
    weights, or endpoint and served model) and every setting of its judge file (templates, mode, schedule)."""
    judge = model.startswith("judge:")
    if judge and scorer is not None:
        j = scorer.judge
        templates = [t.text for t in (j.pointwise_template, j.pairwise_template)]
        return {"model": f"judge:{j.backend.name}", "settings": scorer.settings.model_dump(mode="json",
                exclude={"cache", "concurrency", "rate", "path", "url", "api_key_env"}), "templates": templates,
                "dtype": cfg.dtype}  # fmt: skip
    path = Path(model[len("judge:") :] if judge else model)
    weights = (sorted(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in path.rglob("*.safetensors"))
               if path.is_dir() else [])  # fmt: skip
    name = str(path.resolve()) if path.exists() else str(path)
    return {"model": f"judge:{name}" if judge else name, "weights": weights,
            "max_length": cfg.max_length, "dtype": cfg.dtype}  # fmt: skip


def score_items(scorer: Any, items: list[BenchItem], cache: ScoreCache, on_batch: Any = None) -> int:
    """Score the items the cache lacks, chunk by chunk, appending each chunk to the cache; returns how many."""
    todo = [it for it in items if it.key not in cache.scores]
    for start in range(0, len(todo), CHUNK_ITEMS):
        chunk = todo[start : start + CHUNK_ITEMS]
        if hasattr(scorer, "score_groups"):  # an LLM judge: each item's responses compared pairwise
            strengths = scorer.score_groups([(it.prompt, it.responses) for it in chunk])
            cache.add({it.key: ItemScores(tuple(s[: len(it.chosen)]), tuple(s[len(it.chosen) :]))
                       for it, s in zip(chunk, strengths)})  # fmt: skip
            if on_batch is not None:
                on_batch(sum(len(it.responses) for it in chunk))
            continue
        prompts = [it.prompt for it in chunk for _ in it.responses]  # responses to one prompt share its tokens
        images = [it.images for it in chunk for _ in it.responses] if any(it.images for it in chunk) else None
        encoded = scorer.encode(prompts, [r for it in chunk for r in it.responses], images=images)
        flat = scorer.score_items(encoded, on_batch)
        entries, cut, offset = {}, {}, 0
        for it in chunk:
            c, k = len(it.chosen), len(it.responses)
            entries[it.key] = ItemScores(tuple(flat[offset : offset + c]), tuple(flat[offset + c : offset + k]))
            cut[it.key] = sum(bool(e.encoded.truncated) for e in encoded[offset : offset + k])
            offset += k
        cache.add(entries, cut)
    return len(todo)


def input_description(scorer: Any) -> str:
    """How the model's rows are built (for the log and bench.json): the input format's recipe and whether chat rows
    use the tokenizer's chat template; a vision RM says its family's layout; a judge, how it judges."""
    if hasattr(scorer, "describe"):
        return scorer.describe()
    transform = scorer.transform
    fmt = getattr(transform, "input_format", None)
    if fmt is None:
        return f"vision rows ({type(transform).__name__}, chat template: {transform.chat_template})"
    template = "its chat template for chat rows" if getattr(scorer.tokenizer, "chat_template", None) else (
        "no chat template")  # fmt: skip
    return f"{fmt.recipe()}; {template} (chat_template={transform.chat_template})"


def response_lengths(items: list[BenchItem], tokenizer: Any) -> dict[str, list[ItemScores]]:
    """Each item's response lengths in characters and in the model tokenizer's tokens (as :class:`ItemScores`);
    characters only without a tokenizer (a judge behind an endpoint)."""
    texts = [plain_text(r) for it in items for r in it.responses]
    tokens = (
        [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]
        if texts and tokenizer is not None
        else []
    )
    chars = [char_length(r) for it in items for r in it.responses]
    units = (("chars", chars), ("tokens", tokens)) if tokenizer is not None else (("chars", chars),)
    out: dict[str, list[ItemScores]] = {unit: [] for unit, _ in units}
    offset = 0
    for it in items:
        c, k = len(it.chosen), len(it.responses)
        for unit, values in units:
            out[unit].append(ItemScores(tuple(map(float, values[offset : offset + c])),
                                        tuple(map(float, values[offset + c : offset + k]))))  # fmt: skip
        offset += k
    return out


def load_suites(cfg: BenchConfig) -> dict[str, tuple[Suite, list[BenchItem]]]:
    """Every suite's items, read and checked before any model is loaded."""
    data = cfg.data_for()
    out = {}
    found: dict[str, set[str]] = {}
    for name in cfg.suite:
        suite = get_suite(name)
        items = read_suite(suite, suite.source(data.get(name), cfg.split), cfg.limit)
        found[name] = {it.subset for it in items}
        if cfg.subsets:
            items = [it for it in items if it.subset in cfg.subsets]
        logger.info("%s: %d items from %s", name, len(items), data.get(name, suite.hub_path))
        out[name] = (suite, items)
    unknown = [s for s in cfg.subsets if not any(s in names for names in found.values())]
    if unknown:
        have = "; ".join(f"{name}: {', '.join(sorted(names))}" for name, names in found.items())
        raise DataError(f"--subsets {', '.join(unknown)}: no such subset ({have})")
    empty = [name for name, (_, items) in out.items() if not items]
    if empty:
        raise DataError(f"--subsets leaves no item of {', '.join(empty)}; name one of its subsets or drop the suite")
    return out


def suite_result(suite: Suite, items: list[BenchItem], scores: list[ItemScores], tokenizer: Any,
                 text_only: list[ItemScores] | None = None) -> dict[str, Any]:  # fmt: skip
    """The suite's metric rows (each with its length baselines, and for a vision suite the text-only baseline: the
    same RM's scores without the images) and every item's scores, for bench.json."""
    baselines = confound_baselines(suite, items, response_lengths(items, tokenizer))
    if text_only is not None:
        baselines[TEXT_ONLY] = suite.metrics(items, text_only, 0.0)
    rows = with_baselines(suite.metrics(items, scores, 0.0), baselines)
    per_item = [{"id": it.id, "subset": it.subset, "chosen": list(s.chosen), "rejected": list(s.rejected)}
                for it, s in zip(items, scores)]  # fmt: skip
    if text_only is not None:
        for entry, s in zip(per_item, text_only):
            entry[TEXT_ONLY] = {"chosen": list(s.chosen), "rejected": list(s.rejected)}
    return {"suite": suite.name, "items": len(items), "rows": rows, "scores": per_item}


def text_only_items(items: list[BenchItem]) -> list[BenchItem]:
    """The items with their images removed (the text-only baseline of a vision suite): each image becomes one blank
    image (:func:`blank_image`), so the input keeps the format the RM scores (a vision-language RM expects an
    image) and carries nothing to see."""
    import dataclasses

    blank = blank_image()
    return [dataclasses.replace(it, images=(blank,) * len(it.images)) for it in items]


def blank_image() -> Any:
    """A mid-grey 448×448 RGB image, marked so its fingerprint is a constant (see ``image_fingerprint``)."""
    from PIL import Image

    image = Image.new("RGB", (448, 448), (128, 128, 128))
    image.info["rewardlab"] = "blank"
    return image


def run_bench(cfg: BenchConfig) -> BenchResult:
    """Score every model on every suite (through the cache), then write bench.json, bench.csv and print tables."""
    from rewardlab.judges.scoring import is_judge, load_judge_scorer
    from rewardlab.models.scorer import Scorer
    from rewardlab.recipes.eval_output import progress_bar

    suites = load_suites(cfg)
    out = Path(cfg.out)
    result = BenchResult(out, [])
    results = []
    vision = {s for s, (suite, _) in suites.items() if suite.vision}
    plain = {s: text_only_items(items) for s, (_, items) in suites.items() if s in vision}
    with RunLock(out):
        for model, name in zip(cfg.model, model_names(cfg.model)):
            if is_judge(model):
                scorer: Any = load_judge_scorer(model, cfg)
            else:
                scorer = Scorer.from_pretrained(model, cfg.scoring())
            if vision and not scorer.is_vision:
                raise ConfigError(f"{', '.join(sorted(vision))}: image benchmarks need a vision-language RM; {model} "
                                  "is a text model (run it on the text suites)")  # fmt: skip
            inputs = input_description(scorer)
            logger.info("%s: inputs built as %s", name, inputs)
            meta = cache_meta(model, cfg, scorer)
            caches = {s: ScoreCache(out / "cache" / name / f"{s}.jsonl", meta) for s in suites}
            caches |= {f"{s}-{TEXT_ONLY}": ScoreCache(out / "cache" / name / f"{s}-{TEXT_ONLY}.jsonl", meta)
                       for s in vision}  # fmt: skip
            work = {s: items for s, (_, items) in suites.items()} | {f"{s}-{TEXT_ONLY}": v for s, v in plain.items()}
            total = sum(len(it.responses) for s, items in work.items() for it in items
                        if it.key not in caches[s].scores)  # fmt: skip
            judged: dict[str, dict[str, int]] = {}  # a judge: pairs judged now and how often their orders split
            with progress_bar(total) as progress:
                for sname, items in work.items():
                    progress.describe(f"{name} · {sname}")
                    result.cached[(name, sname)] = sum(it.key in caches[sname].scores for it in items)
                    before = scorer.counts() if is_judge(model) else {}
                    result.scored[(name, sname)] = score_items(scorer, items, caches[sname], progress.advance)
                    if is_judge(model):
                        judged[sname] = {k: v - before[k] for k, v in scorer.counts().items()}
            for sname, (suite, items) in suites.items():
                text_only = ([caches[f"{sname}-{TEXT_ONLY}"].scores[it.key] for it in plain[sname]]
                             if sname in vision else None)  # fmt: skip
                entry = suite_result(suite, items, [caches[sname].scores[it.key] for it in items], scorer.tokenizer,
                                     text_only)  # fmt: skip
                entry["truncated_responses"] = sum(caches[sname].truncated.get(it.key, 0) for it in items)
                if entry["truncated_responses"]:
                    logger.warning("%s on %s: %d responses longer than the model's max length were truncated (the "
                                   "prompt's start cut first)", name, sname, entry["truncated_responses"])  # fmt: skip
                scored_now = result.scored[(name, sname)]
                if sname in judged:
                    entry["judge"] = judged[sname]
                    if judged[sname]["pairs"]:
                        logger.info("%s on %s: the two orders picked different responses in %d of %d pairs judged",
                                    name, sname, judged[sname]["orders_disagree"], judged[sname]["pairs"])  # fmt: skip
                results.append({"model": name, "path": model, "inputs": inputs, "scored_now": scored_now, **entry})
                result.rows += [{"model": name, "suite": sname, **r} for r in entry["rows"]]
                logger.info("%s on %s: %d items scored, %d from the cache", name, sname,
                            result.scored[(name, sname)], result.cached[(name, sname)])  # fmt: skip
            if is_judge(model):
                logger.info("%s: judge usage %s", name, scorer.usage())  # calls, cache hits, latency (an endpoint)
                scorer.close()  # a judge's endpoint connections
            del scorer
        payload = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "config": cfg.model_dump(mode="json"), "results": results}  # fmt: skip
        atomic_write_text(out / "bench.json", json.dumps(_json_safe(payload), indent=1, ensure_ascii=False))
        atomic_write_text(out / "bench.csv", to_csv(result.rows))
    print_tables(result.rows, suites)
    return result


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return round(value, 6) if isinstance(value, float) else value


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def print_tables(rows: list[dict[str, Any]], suites: dict[str, tuple[Suite, list[BenchItem]]]) -> None:
    """One table per suite: every model's numbers with the four length baselines beside them."""
    from rich.table import Table

    from rewardlab.recipes.console import stdout_console

    for sname, (suite, _) in suites.items():
        table = Table(title=f"{suite.title} — model vs. length baselines (ties: a coin toss)")
        extra = (TEXT_ONLY,) if suite.vision else ()
        for col in ("model", "level", "name", "metric", "value", "n", "longer ch", "shorter ch", "longer tok",
                    "shorter tok", *(c.replace("_", "-") for c in extra)):  # fmt: skip
            table.add_column(col, justify="left" if col in ("model", "level", "name", "metric") else "right")
        for r in rows:
            if r["suite"] != sname or r["level"] == "ties_part":
                continue
            table.add_row(r["model"], r["level"], r["name"], r["metric"], _fmt(r["value"]), str(r["n"]),
                          *(_fmt(r.get(b)) for b in (*BASELINES, *extra)),
                          style="bold" if r["level"] == "overall" else None)  # fmt: skip
        stdout_console().print(table)
