"""A small OpenAPI 3.1 description of the API, built from the route table and handler docstrings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from starlette.routing import BaseRoute, Route

from plyra_trace._version import VERSION

_QUERY: Final = {
    "/api/v1/traces": [
        "project",
        "service",
        "agent",
        "session",
        "user",
        "status",
        "since",
        "until",
        "last",
        "min_duration_ms",
        "min_cost",
        "q",
        "guard_policy",
        "guard_action",
        "cursor",
        "limit",
    ],
    "/api/v1/traces/{id}/flamegraph": ["weight"],
    "/api/v1/flamegraph": ["root_name", "agent", "weight", "since", "until", "last", "limit"],
    "/api/v1/agents/graph": ["since", "until", "last"],
    "/api/v1/facets": ["since", "until", "last"],
    "/api/v1/cost": ["by", "since", "until", "last", "limit"],
    "/api/v1/sessions": ["since", "until", "last", "cursor", "limit"],
    "/api/v1/sessions/{session_id}": ["cursor", "limit"],
    "/api/v1/sessions/{session_id}/guards": ["limit"],
    "/api/v1/guards": ["project", "agent", "provider", "since", "until", "last", "limit"],
}


def openapi(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document for the GET routes under /api/v1 and POST /v1/traces."""
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith(("/api/", "/v1/")):
            continue
        doc = (route.endpoint.__doc__ or "").strip().splitlines()
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ] + [
            {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
            for name in _QUERY.get(route.path, [])
        ]
        method = "post" if route.path == "/v1/traces" else "get"
        paths[route.path] = {
            method: {
                "summary": doc[0] if doc else route.path,
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "plyra-trace collector", "version": VERSION},
        "paths": paths,
    }
