"""Exact's error envelope and the exception that carries one through a handler.

REST errors look like ``{"error": {"code": "", "message": {"lang": "", "value": "..."}}}``
(clients read ``error.message.value``). The token endpoint answers in OAuth2's own form,
``{"error": "...", "error_description": "..."}``, built in ``token_endpoint``.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

__all__ = ["ApiError", "envelope", "error_response"]


class ApiError(Exception):
    """Raised by a REST handler; the pipeline turns it into an error envelope."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def envelope(message: str, code: str = "") -> dict[str, object]:
    return {"error": {"code": code, "message": {"lang": "", "value": message}}}


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON error envelope response."""
    return web.json_response(envelope(message), status=status, headers=dict(headers or {}))
