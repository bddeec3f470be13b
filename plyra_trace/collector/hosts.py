"""DNS-rebinding defence: a loopback (or ``--open``) collector answers only expected Host names.

A web page on ``evil.example`` whose DNS is re-pointed at 127.0.0.1 reaches a loopback collector
with ``Host: evil.example``; answering only loopback names (and ``--allowed-host`` ones) shuts it
out before any handler runs, OTLP ingest included.
"""

from __future__ import annotations

import ipaddress
import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1), brackets allowed."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without port or brackets, lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return value.rstrip(".")


class HostCheckMiddleware:
    """Refuses (421, with the reason, no data) requests whose Host is not an expected name."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = frozenset(host_name(name) for name in allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = host_name(Headers(scope=scope).get("host", ""))
        if name and (is_loopback(name) or name in self.allowed):
            await self.app(scope, receive, send)
            return
        shown = name or "(none)"
        reason = (
            f"host {shown!r} is not served here; this collector answers loopback names only"
            " (add names with --allowed-host)"
        )
        body = json.dumps({"error": reason}, ensure_ascii=True).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
