"""Schemathesis hooks for the OpenAPI conformance run (loaded through SCHEMATHESIS_HOOKS).

A cursor is opaque and only means something when a previous page handed it out, and a random
32-digit trace id names no stored trace. So half of the well-formed ids become the seeded ones
(their 200 answers get checked too), and a generated cursor becomes a real one.
"""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis

_SEEDED = {
    "id": os.environ.get("PLYRA_FUZZ_TRACE", ""),
    "span_id": os.environ.get("PLYRA_FUZZ_SPAN", ""),
    "session_id": os.environ.get("PLYRA_FUZZ_SESSION", ""),
}


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: dict[str, Any]) -> dict[str, Any]:
    """Swap every other well-formed id for a stored one."""
    if not path_parameters:
        return path_parameters
    for name, seeded in _SEEDED.items():
        value = path_parameters.get(name)
        well_formed = isinstance(value, str) and re.fullmatch(r"[0-9a-zA-Z-]+", value)
        if seeded and well_formed and sum(map(ord, value)) % 2 == 0:
            path_parameters[name] = seeded
    return path_parameters


@schemathesis.hook
def map_query(context: Any, query: dict[str, Any]) -> dict[str, Any]:
    """A cursor handed out by a previous page instead of a random string."""
    cursor = os.environ.get("PLYRA_FUZZ_CURSOR")
    if cursor and query and isinstance(query.get("cursor"), str):
        query["cursor"] = cursor
    return query
