"""The web UI: static files shipped in the wheel, served at ``/`` with a strict CSP.

The collector mounts :func:`ui_routes`; the browser code renders every value from spans as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR: Final = Path(__file__).parent / "static"
"""Where index.html, the ES modules and the stylesheet live."""

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, no eval, nothing from another origin."""

SECURITY_HEADERS: Final = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, _send)


async def _index(request: Request) -> Response:
    """The single page; client-side routes live in the URL fragment."""
    return FileResponse(
        STATIC_DIR / "index.html",
        headers={**SECURITY_HEADERS, "cache-control": "no-cache"},
    )


def ui_routes() -> list[BaseRoute]:
    """Routes serving the UI: ``/`` (the page) and ``/ui/...`` (its static assets)."""
    static = _SecurityHeaders(StaticFiles(directory=STATIC_DIR))
    return [Route("/", _index), Mount("/ui", app=static, name="ui")]


__all__ = ["CSP", "STATIC_DIR", "ui_routes"]
