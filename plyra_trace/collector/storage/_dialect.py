"""The few SQL expressions that differ between SQLite and PostgreSQL, compiled per dialect.

Everything else in the query layer is plain SQLAlchemy Core and renders the same on both stores.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Integer, cast, func
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import Text

_INT = BigInteger().with_variant(Integer(), "sqlite")

PG_TRACE_LOCKS = (
    "SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT hashtextextended(id, 0) AS k"
    " FROM unnest(%s::text[]) AS id ORDER BY 1) AS keys"
)
"""PostgreSQL: take each trace's transaction lock in one fixed order (writers never deadlock)."""


def isum(column: Any) -> ColumnElement[int]:
    """SUM of an integer column as an integer (PostgreSQL's SUM(bigint) is NUMERIC)."""
    return cast(func.sum(column), _INT)


def iavg(column: Any) -> ColumnElement[int]:
    """AVG of an integer column, truncated to an integer."""
    return cast(func.avg(column), _INT)


def _per_dialect(element: type[FunctionElement[Any]], **templates: str) -> None:
    """Render ``element`` from one template per dialect (``{}`` stands for its arguments)."""
    for dialect, template in templates.items():

        def _render(
            node: FunctionElement[Any], compiler: SQLCompiler, _t: str = template, **kw: Any
        ) -> str:
            return _t.format(compiler.process(node.clauses, **kw))

        compiles(element, dialect)(_render)


class day_label(FunctionElement[str]):
    """``YYYY-MM-DD`` (UTC) of a day number (days since the epoch)."""

    type = Text()
    inherit_cache = True


class distinct_list(FunctionElement[list[Any]]):
    """The distinct values of a column in a group, as a JSON array (NULLs included)."""

    type = JSON()
    inherit_cache = True


class p95(FunctionElement[Any]):
    """Nearest-rank 95th percentile of an integer column in a group.

    PostgreSQL computes it (``percentile_disc``); SQLite has no ordered-set aggregate, so it
    returns the group's values comma-joined and :func:`p95_value` finishes the job in Python.
    """

    inherit_cache = True


_per_dialect(
    day_label,
    sqlite="date({} * 86400, 'unixepoch')",
    postgresql="to_char(to_timestamp({} * 86400) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
)
_per_dialect(
    distinct_list, sqlite="json_group_array(DISTINCT {})", postgresql="json_agg(DISTINCT {})"
)
_per_dialect(
    p95, sqlite="group_concat({})", postgresql="percentile_disc(0.95) WITHIN GROUP (ORDER BY {})"
)


def p95_value(value: Any) -> int | None:
    """The number a :class:`p95` column stands for, whichever store answered."""
    if value is None or isinstance(value, int):
        return value
    ordered = sorted(int(v) for v in str(value).split(",") if v)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, -(-95 * len(ordered) // 100) - 1))]
