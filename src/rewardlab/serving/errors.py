"""The server's request errors: an HTTP status, a message fit to show the caller, and the request field at fault."""

from __future__ import annotations


class RequestError(Exception):
    """A problem with one request; the server answers ``status`` with ``{"error": {type, message, field}}``."""

    def __init__(self, status: int, message: str, *, field: str | None = None, type: str = "invalid_request",
                 headers: dict[str, str] | None = None):  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.field, self.type = status, message, field, type
        self.headers = headers or {}
