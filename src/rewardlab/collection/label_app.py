"""The labeling web app: FastAPI + Jinja2 templates (package data, one folder) + plain JavaScript; no CDN, works
offline. Pages: a start page (annotator name), one task page (pairwise: A / B / tie / skip by key or button;
ranking: a rank per response, ties allowed, Enter saves), and a done page. The JSON API behind them:
``POST /api/label {item_id, annotator, value}`` and ``POST /api/undo {annotator}``; a label is committed to SQLite
before the answer (and the page) moves on. Images are served only when an item registered them, by item and
position — never by a path from the request.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from rewardlab.collection.label_store import LabelStore
from rewardlab.data.records import plain_text
from rewardlab.errors import DataError


def templates() -> Environment:
    return Environment(loader=PackageLoader("rewardlab", "templates"), autoescape=select_autoescape(["html"]))


# A name of blanks is no name; ids beyond SQLite's 64-bit integers are no item; ranks are integers, not booleans.
Annotator = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class LabelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: int = Field(ge=0, lt=2**63)
    annotator: Annotator
    value: str | list[StrictInt] | dict[str, Any]


class UndoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    annotator: Annotator


def as_text(value: Any) -> str:
    """Text of a prompt or response for display: a string, or chat messages as ``role: content`` lines."""
    return plain_text(value, turn_sep="\n", part_sep=" ", roles=True)


def create_label_app(store: LabelStore, *, per_item: int = 1, image_root: str | None = None,
                     token: str | None = None) -> FastAPI:  # fmt: skip
    """``per_item``: labels wanted per item (2+ for agreement); ``image_root``: the data file's folder, against
    which relative image paths resolve; ``token``: required on every request when set (query or X-Label-Token)."""
    env = templates()
    app = FastAPI(title="rewardlab labeling", docs_url=None, redoc_url=None)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message}}, status_code=status)

    @app.middleware("http")
    async def check_token(request: Request, call_next: Any) -> Any:
        if token is not None:
            given = request.query_params.get("token") or request.headers.get("x-label-token") or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return error(401, "missing or wrong token; open the link with ?token=...")
        return await call_next(request)

    def render(name: str, **context: Any) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(token=token, **context))

    @app.get("/", response_class=HTMLResponse)
    async def start() -> HTMLResponse:
        return render("label_start.html", progress=store.progress(""))

    @app.get("/label", response_class=HTMLResponse)
    async def label_page(annotator: str) -> HTMLResponse:
        annotator = annotator.strip()[:100] or "anonymous"
        item = store.next_item(annotator, per_item)
        progress = store.progress(annotator)
        if item is None:
            return render("label_done.html", annotator=annotator, progress=progress)
        return render("label_task.html", item=item, annotator=annotator, progress=progress,
                      prompt_text=as_text(item.prompt), response_texts=[as_text(r) for r in item.responses],
                      token_query=f"?token={token}" if token else "")  # fmt: skip

    @app.post("/api/label")
    async def post_label(body: LabelBody) -> JSONResponse:
        try:
            label_id = store.add_label(body.item_id, body.annotator.strip(), body.value)
        except DataError as exc:
            status = 404 if str(exc).startswith("no item") else 422
            return error(status, str(exc))
        return JSONResponse({"ok": True, "label_id": label_id})

    @app.post("/api/undo")
    async def post_undo(body: UndoBody) -> JSONResponse:
        return JSONResponse({"ok": True, "item_id": store.undo(body.annotator.strip())})

    @app.get("/api/progress")
    async def progress(annotator: str = "") -> JSONResponse:
        return JSONResponse(store.progress(annotator))

    @app.get("/images/{item_id}/{k}")
    async def image(item_id: int, k: int) -> Any:
        item = store.item(item_id)
        if item is None or not 0 <= k < len(item.images) or not isinstance(item.images[k], str):
            return error(404, "no such image")
        # Only files inside the data folder are served, whatever a row says (an absolute path included): the app
        # may face a network, and a data file from elsewhere must not turn it into a file server.
        if image_root is None:
            return error(404, "no such image")
        root = Path(image_root).resolve()
        path = (root / item.images[k]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return error(404, "no such image")
        return FileResponse(path)

    @app.exception_handler(Exception)
    async def internal(_request: Request, _exc: Exception) -> JSONResponse:
        return error(500, "internal error (the server log has the details)")

    return app


def token_from_env(var: str | None) -> str | None:
    from rewardlab.errors import ConfigError

    if var is None:
        return None
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(f"token_env={var}, but {var} is empty or unset")
    return value


__all__ = ["create_label_app", "token_from_env"]
