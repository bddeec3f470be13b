"""What stays of a sampled-out trace's spans: the few columns its summary is derived from.

Spans of a dropped trace may still arrive (a late service, a retried export). The summary, cost,
usage and handoff rows are then derived again from this skeleton plus the new spans, with the same
:func:`~plyra_trace.collector.summary.derive` as for kept traces, so totals never depend on
sampling. Packed as compressed JSON columns: tens of bytes per span instead of a kilobyte or more.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Final

from plyra_trace.collector.model import Row
from plyra_trace.collector.storage._tables import DERIVE_COLUMNS

FIELDS: Final = tuple(c for c in DERIVE_COLUMNS if c not in ("trace_id", "agent"))
"""The span columns :func:`~plyra_trace.collector.summary.derive` reads of a trace's own spans (the
stored effective agent is derived again)."""


def pack(rows: Iterable[Row]) -> bytes:
    """A compact blob of the derive columns of ``rows``: one JSON array per column (similar
    values side by side compress better and encode faster than one array per row)."""
    rows = list(rows)
    columns = [[row[name] for row in rows] for name in FIELDS]
    return zlib.compress(json.dumps(columns, separators=(",", ":")).encode(), 6)


def unpack(blob: bytes | None) -> list[Row]:
    """The rows a :func:`pack` blob holds (none for None)."""
    if not blob:
        return []
    columns = json.loads(zlib.decompress(blob))
    return [dict(zip(FIELDS, values, strict=True)) for values in zip(*columns, strict=True)]


def merge(old: Iterable[Row], new: Iterable[Row]) -> list[Row]:
    """Rows of one trace with ``new`` replacing old rows of the same span id (last copy wins)."""
    by_id = {row["span_id"]: row for row in old}
    by_id.update((row["span_id"], row) for row in new)
    return list(by_id.values())


__all__ = ["FIELDS", "merge", "pack", "unpack"]
