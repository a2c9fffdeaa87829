"""Screenshots of web pages with a real browser: Playwright driving the system's Chromium (never a downloaded one).

Pages load in parallel (``parallel`` at a time, asyncio); each (URL, viewport) gives one PNG and one manifest row
``{url, final_url, title, viewport, image, sha256, time, status, error, seconds}``. A page that fails (unreachable,
timeout, HTTP error) is a row with its error after ``retries`` more tries — never the end of the run. Rows are
appended and flushed as pages finish, so a rerun skips what is done (status ``ok`` and the image still there with
its hash) and retries the rest.

``block_external`` aborts every request whose origin is not the page's own (``file:`` pages may load ``file:``
and ``data:`` resources only): a capture of local or mirrored pages then never reaches the network.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rewardlab.errors import ConfigError, DataError

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]  # fmt: skip
HTML_SUFFIXES = (".html", ".htm")


def find_chromium(path: str | None) -> str:
    """The browser to drive: ``path``, else ``$REWARDLAB_CHROMIUM``, else ``chromium`` on the PATH."""
    candidate = path or os.environ.get("REWARDLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(candidate).is_file():
        raise ConfigError(f"no Chromium at {candidate}: install the system's (apt-get install chromium) or give "
                          "browser=PATH; rewardlab never downloads a browser")  # fmt: skip
    if not os.access(candidate, os.X_OK):
        raise ConfigError(f"{candidate} is not executable: give browser=PATH of a Chromium (chmod +x if it is one)")
    return candidate


def read_targets(source: str) -> list[str]:
    """URLs from a file (one per line; blank lines and # comments skipped), or ``file://`` URLs of the HTML files
    in a directory (sorted)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in HTML_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"no .html files in {source}")
        return [p.resolve().as_uri() for p in files]
    if not path.is_file():
        raise DataError(f"{source}: no such file or directory (give a file of URLs or a folder of .html files)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        message = "is not a text file of URLs (one per line), nor a folder of .html files"
        raise DataError(message, source=source) from None
    urls = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if urlsplit(line).scheme not in ("http", "https", "file"):
            raise DataError(f"not an http(s) or file URL: {line!r}", source=source, row=n)
        urls.append(line)
    if not urls:
        raise DataError("no URLs", source=source)
    return urls


def parse_viewport(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"viewport {text!r}: expected WIDTHxHEIGHT, e.g. 1280x800") from None
    if not (100 <= w <= 8000 and 100 <= h <= 8000):
        raise ConfigError(f"viewport {text!r}: each side from 100 to 8000 pixels")
    return w, h


@dataclass
class CaptureJob:
    url: str
    viewport: tuple[int, int]

    @property
    def key(self) -> str:
        return f"{self.url} {self.viewport[0]}x{self.viewport[1]}"

    def image_name(self) -> str:
        digest = hashlib.sha1(self.url.encode()).hexdigest()[:16]
        return f"images/{digest}_{self.viewport[0]}x{self.viewport[1]}.png"


def done_keys(manifest: Path, out_dir: Path) -> set[str]:
    """(url, viewport) keys captured before whose image is still there and unchanged."""
    if not manifest.is_file():
        return set()
    done = set()
    for line in manifest.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # an unfinished last line
        image = out_dir / str(row.get("image") or "")
        if row.get("status") == "ok" and image.is_file() and _sha256(image) == row.get("sha256"):
            done.add(f"{row['url']} {row['viewport']}")
    return done


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def capture_all(jobs: list[CaptureJob], out_dir: Path, *, browser_path: str, full_page: bool, wait: str,
                      timeout_s: float, retries: int, parallel: int, block_external: bool,
                      on_row: Callable[[dict[str, Any]], None], facts: bool = False) -> None:  # fmt: skip
    from playwright.async_api import async_playwright

    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    limit = asyncio.Semaphore(parallel)
    async with async_playwright() as pw:
        try:
            browser = await pw.chromium.launch(executable_path=browser_path, headless=True, args=CHROMIUM_ARGS)
        except Exception as exc:  # playwright's Error: the program did not start as a Chromium
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{browser_path} did not start as a Chromium ({first}); give browser=PATH of one "
                              "(apt-get install chromium)") from None  # fmt: skip
        try:

            async def one(job: CaptureJob) -> None:
                async with limit:
                    row = await _capture(browser, job, out_dir, full_page, wait, timeout_s, retries, block_external,
                                         facts)  # fmt: skip
                    on_row(row)

            await asyncio.gather(*(one(job) for job in jobs))
        finally:
            await browser.close()


async def _capture(browser: Any, job: CaptureJob, out_dir: Path, full_page: bool, wait: str, timeout_s: float,
                   retries: int, block_external: bool, facts: bool = False) -> dict[str, Any]:  # fmt: skip
    start = time.monotonic()
    row: dict[str, Any] = {"url": job.url, "final_url": None, "title": None,
                           "viewport": f"{job.viewport[0]}x{job.viewport[1]}", "image": None, "sha256": None,
                           "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "status": "error", "error": None}  # fmt: skip
    for attempt in range(retries + 1):
        context = await browser.new_context(viewport={"width": job.viewport[0], "height": job.viewport[1]})
        try:
            page = await context.new_page()
            blocked: list[str] = []
            if block_external:
                await page.route("**/*", _same_origin_only(job.url, blocked))
            response = await page.goto(job.url, wait_until=wait, timeout=timeout_s * 1000)
            status = response.status if response is not None else None
            if status is not None and status >= 400:
                raise _PageError(f"HTTP {status}")
            image = out_dir / job.image_name()
            staging = image.with_name(image.name + ".part")
            await page.screenshot(path=str(staging), full_page=full_page, type="png")
            staging.replace(image)  # a crash never leaves a half PNG under the manifest's name
            row.update(final_url=page.url, title=await page.title(), image=job.image_name(), sha256=_sha256(image),
                       status="ok", error=None, http_status=status, blocked_requests=len(blocked))  # fmt: skip
            if facts:
                from rewardlab.collection.describe import FACTS_JS

                row["facts"] = await page.evaluate(FACTS_JS)
            break
        except Exception as exc:  # playwright's TimeoutError and Error, our HTTP check: recorded, not raised
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            row["attempts"] = attempt + 1
        finally:
            await context.close()
    row["seconds"] = round(time.monotonic() - start, 3)
    return row


class _PageError(Exception):
    pass


def _same_origin_only(page_url: str, blocked: list[str]) -> Callable[[Any], Any]:
    parts = urlsplit(page_url)
    origin = (parts.scheme, parts.netloc)

    async def handle(route: Any) -> None:
        req = urlsplit(route.request.url)
        if req.scheme == "data" or (req.scheme, req.netloc) == origin:
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    return handle
