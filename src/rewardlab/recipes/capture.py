"""``rewardlab capture``: URLs or HTML files → screenshots and ``manifest.jsonl`` (see
:mod:`rewardlab.collection.capture`)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.config.schema import CaptureConfig
from rewardlab.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass
class CaptureResult:
    manifest: Path
    ok: int
    failed: int
    skipped: int


def run_capture(cfg: CaptureConfig) -> CaptureResult:
    try:
        import playwright  # noqa: F401
    except ImportError:
        raise ConfigError("capture needs Playwright: pip install 'rewardlab[collect]' (and the system's chromium)"
                          ) from None  # fmt: skip
    from rewardlab.collection.capture import CaptureJob, done_keys, find_chromium, parse_viewport, read_targets

    viewports = [parse_viewport(v) for v in cfg.viewports]
    browser = find_chromium(cfg.browser)
    urls = read_targets(cfg.source)
    out = Path(cfg.out)
    manifest = out / "manifest.jsonl"
    jobs = [CaptureJob(url, vp) for url in urls for vp in viewports]
    done = done_keys(manifest, out)
    todo = [j for j in jobs if j.key not in done]
    if done:
        logger.info("%s: %d of %d screenshots already done", out, len(jobs) - len(todo), len(jobs))
    counts = {"ok": 0, "failed": 0}
    created = not out.exists()
    try:
        _capture_into(out, manifest, todo, browser, cfg, counts)
    except ConfigError:
        if created and not any(p.is_file() and p.stat().st_size for p in out.rglob("*")):
            shutil.rmtree(out)  # the browser would not start: leave nothing behind (only empty files were made)
        raise
    if cfg.describe:
        write_descriptions(manifest, out / "descriptions.jsonl", cfg.rejected_per_page)
    return CaptureResult(manifest, counts["ok"], counts["failed"], len(jobs) - len(todo))


def _capture_into(out: Path, manifest: Path, todo: list, browser: str, cfg: CaptureConfig,
                  counts: dict[str, int]) -> None:  # fmt: skip
    """Screenshots of ``todo`` into ``out``, one manifest row each as it is taken."""
    from rewardlab.collection.capture import capture_all
    from rewardlab.data.files import cut_unfinished_line, output_errors

    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
        cut_unfinished_line(manifest)
        with manifest.open("a", encoding="utf-8") as f:

            def on_row(row: dict[str, Any]) -> None:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                f.flush()
                counts["ok" if row["status"] == "ok" else "failed"] += 1
                if row["status"] != "ok":
                    logger.warning("%s (%s): %s", row["url"], row["viewport"], row["error"])

            asyncio.run(capture_all(todo, out, browser_path=browser, full_page=cfg.full_page, wait=cfg.wait,
                                    timeout_s=cfg.timeout_s, retries=cfg.retries, parallel=cfg.parallel,
                                    block_external=cfg.block_external, on_row=on_row, facts=cfg.describe))  # fmt: skip


def write_descriptions(manifest: Path, out: Path, rejected_per_page: int) -> int:
    """``descriptions.jsonl`` (pairs) and ``review.jsonl`` (each page's drafts, for ``rewardlab label``'s
    description check) from every captured page with facts in the manifest (earlier runs' too); image paths are
    relative to them, as the readers resolve them."""
    from rewardlab.collection.describe import description_pairs
    from rewardlab.data.files import atomic_write_text

    rows, review, seen = [], [], set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("status") == "ok" and row.get("facts") and row["image"] not in seen:
            seen.add(row["image"])
            pairs = description_pairs(row, rejected_per_page)
            rows += pairs
            if pairs:  # the drafts in a seeded order, for a person to mark correct or wrong (rewardlab label)
                drafts = [pairs[0]["chosen"], *(p["rejected"] for p in pairs)]
                random.Random(row["image"]).shuffle(drafts)
                review.append({"id": row["image"], "prompt": pairs[0]["prompt"], "images": [row["image"]],
                               "descriptions": drafts, "url": row["url"]})  # fmt: skip
    atomic_write_text(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    atomic_write_text(out.with_name("review.jsonl"), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in review))
    logger.info("%s: %d description pairs from %d pages", out, len(rows), len(seen))
    return len(rows)
