"""The UI's sign-in: a key is exchanged once for an HttpOnly, SameSite=Strict session cookie.

The browser never keeps the key (no URL, no storage); the cookie is stateless and signed from the
key's stored hash (``auth.new_session``), so every replica accepts it and revoking the key ends it.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from plyra_trace.collector.api import JSON
from plyra_trace.collector.auth import SESSION, SESSION_COOKIE, SESSION_SECONDS, new_session
from plyra_trace.collector.runtime import Runtime


async def session_state(request: Request) -> JSON:
    """Whether this collector requires a key and whether this browser is signed in."""
    runtime: Runtime = request.app.state.runtime
    required = await run_in_threadpool(runtime.keys.required)
    return JSON({"required": required, "signed_in": bool(request.scope.get(SESSION))})


async def sign_in(request: Request) -> Response:
    """``{"key": "pt_..."}`` (JSON only, so a cross-site form cannot post it) -> session cookie."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return JSON({"error": "send the key as application/json"}, status_code=415)
    try:
        document: Any = json.loads(await request.body())
        key = document["key"]
        if not isinstance(key, str):
            raise TypeError(key)
    except (ValueError, KeyError, TypeError):
        return JSON({"error": 'expected {"key": "pt_..."}'}, status_code=400)
    runtime: Runtime = request.app.state.runtime
    value = await run_in_threadpool(new_session, runtime.storage, key.strip())
    if value is None:
        return JSON(
            {"error": "invalid API key"}, status_code=401, headers={"www-authenticate": "Bearer"}
        )
    response = JSON({"signed_in": True})
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out(request: Request) -> Response:
    """Forget this browser's session cookie."""
    response = JSON({"signed_in": False})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def session(request: Request) -> Response:
    """One route for the three methods, so a 405 lists every method the path supports."""
    if request.method == "POST":
        return await sign_in(request)
    if request.method == "DELETE":
        return await sign_out(request)
    return await session_state(request)


ROUTES: Final = [Route("/api/v1/session", session, methods=["GET", "POST", "DELETE"])]
PUBLIC_PATHS: Final = frozenset({"/api/v1/session", "/api/v1/health"})
"""API paths answered without a key (sign-in itself and liveness without data)."""
