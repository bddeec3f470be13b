"""W3C Trace Context and W3C Baggage headers read to the letter of the specifications.

OpenTelemetry's propagators fall short in places: the tracestate key grammar predates the
current one (``@`` anywhere after the first character, 256 characters in all), a duplicated key
discards the whole tracestate, and baggage reads only the first of repeated lines and drops all
of it past a size limit. These subclasses keep OpenTelemetry's types and its writing side and
replace the reading side. Only ``_propagation`` uses them; integrations never parse headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Final
from urllib.parse import quote_plus

from opentelemetry import baggage, trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

_OWS: Final = " \t"
# version-trace_id-parent_id-flags, lowercase hex only; a future version may append "-..." fields.
_TRACEPARENT: Final = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_MAX_TRACEPARENT_CHARS: Final = 512
_INVALID_VERSION: Final = "ff"
_ZERO_TRACE_ID: Final = "0" * 32
_ZERO_SPAN_ID: Final = "0" * 16
_SAMPLED: Final = 0x01

# key = (lcalpha / DIGIT) 0*255(keychar); value = 0*255(chr) nblk-chr (printable, no "," or "=").
_TRACESTATE_KEY: Final = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}")
_TRACESTATE_VALUE: Final = re.compile(
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)
MAX_TRACESTATE_MEMBERS: Final = 32
# 32 members of 513 characters plus separators; more than this is padding, not tracestate.
_MAX_TRACESTATE_CHARS: Final = 64 * 1024

MAX_BAGGAGE_MEMBERS: Final = 180
MAX_BAGGAGE_MEMBER_BYTES: Final = 4096
MAX_BAGGAGE_BYTES: Final = 8192


def parse_traceparent(lines: Sequence[str] | None) -> trace.SpanContext | None:
    """The remote span a ``traceparent`` header names, or None when it is absent or invalid.

    Two header lines, version ``ff``, all-zero ids, uppercase hex or a version-00 value with
    anything after the flags are invalid; a higher version is read by its first four fields
    when what follows them starts with ``-``.
    """
    if isinstance(lines, str):  # a getter that returned the value itself
        lines = [lines]
    if not lines or len(lines) != 1:
        return None
    value = lines[0].strip(_OWS)
    if len(value) > _MAX_TRACEPARENT_CHARS:
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == _INVALID_VERSION or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    trace_flags = int(flags, 16) if version == "00" else int(flags, 16) & _SAMPLED
    return trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace_flags),
    )


def valid_tracestate_member(key: str, value: str) -> bool:
    """Whether ``key=value`` is a list member by the current grammar."""
    return (
        _TRACESTATE_KEY.fullmatch(key) is not None
        and _TRACESTATE_VALUE.fullmatch(value) is not None
    )


class W3CTraceState(TraceState):
    """A ``TraceState`` checked by the current key grammar, order kept, at most 32 members.

    Adding a member puts it first and, past 32, removes the right-most one, as the spec says.
    """

    def __init__(self, entries: Iterable[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self._members: dict[str, str] = {}
        for key, value in entries or ():
            if len(self._members) == MAX_TRACESTATE_MEMBERS:
                break
            if key not in self._members and valid_tracestate_member(key, value):
                self._members[key] = value

    def __contains__(self, item: object) -> bool:
        return item in self._members

    def __getitem__(self, key: str) -> str:
        return self._members[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __repr__(self) -> str:
        return f"W3CTraceState({self.to_header()!r})"

    def _others(self, key: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in self._members.items() if k != key]

    def add(self, key: str, value: str) -> TraceState:
        if key in self._members or not valid_tracestate_member(key, value):
            return self
        return W3CTraceState([(key, value), *self._members.items()])

    def update(self, key: str, value: str) -> TraceState:
        if key not in self._members or not valid_tracestate_member(key, value):
            return self
        return W3CTraceState([(key, value), *self._others(key)])

    def delete(self, key: str) -> TraceState:
        return W3CTraceState(self._others(key)) if key in self._members else self

    def to_header(self) -> str:
        return ",".join(f"{key}={value}" for key, value in self._members.items())

    @classmethod
    def from_header(cls, header_list: list[str]) -> TraceState:
        return parse_tracestate(header_list)


_EMPTY_TRACESTATE: Final = W3CTraceState()


def parse_tracestate(lines: Iterable[str] | None) -> W3CTraceState:
    """Repeated ``tracestate`` lines combined in order and parsed as one list.

    Empty and whitespace-only members (and lines) are skipped; a repeated key keeps its first
    value; one invalid member, or more than 32 members, discards the whole header.
    """
    members: dict[str, str] = {}
    seen = 0
    for line in [lines] if isinstance(lines, str) else lines or ():
        seen += len(line)
        if seen > _MAX_TRACESTATE_CHARS:
            return _EMPTY_TRACESTATE
        for raw in line.split(","):
            member = raw.strip(_OWS)
            if not member:
                continue
            key, equals, value = member.partition("=")
            if not equals or not valid_tracestate_member(key, value):
                return _EMPTY_TRACESTATE
            members.setdefault(key, value)
            if len(members) > MAX_TRACESTATE_MEMBERS:
                return _EMPTY_TRACESTATE
    return W3CTraceState(members.items()) if members else _EMPTY_TRACESTATE


class W3CTraceContext(TraceContextTextMapPropagator):
    """``traceparent``/``tracestate`` read per the spec; written by OpenTelemetry as before."""

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        if context is None:
            context = Context()
        parent = parse_traceparent(getter.get(carrier, self._TRACEPARENT_HEADER_NAME))
        if parent is None:
            return context
        state = parse_tracestate(getter.get(carrier, self._TRACESTATE_HEADER_NAME))
        remote = trace.SpanContext(parent.trace_id, parent.span_id, True, parent.trace_flags, state)
        return trace.set_span_in_context(trace.NonRecordingSpan(remote), context)


def _members(lines: Iterable[str]) -> Iterator[str]:
    for line in [lines] if isinstance(lines, str) else lines:
        for raw in line.split(","):
            member = raw.strip(_OWS)
            if member:
                yield member


def _within_limits(members: Iterable[str]) -> list[str]:
    """Whole members only: oversized ones skipped, then at most 180 in 8192 bytes."""
    kept: list[str] = []
    size = 0
    for member in members:
        length = len(member.encode("utf-8", "replace"))
        if length > MAX_BAGGAGE_MEMBER_BYTES:
            continue
        if len(kept) == MAX_BAGGAGE_MEMBERS:
            break
        if size + length + (1 if kept else 0) > MAX_BAGGAGE_BYTES:
            continue
        size += length + (1 if kept else 0)
        kept.append(member)
    return kept


class W3CBaggage(W3CBaggagePropagator):
    """W3C Baggage with repeated lines combined and the limits applied to whole members.

    Writing puts the ``first`` keys (our session, user and handoff) ahead of foreign entries,
    so a caller's large baggage cannot push them past the limits.
    """

    def __init__(self, first: Iterable[str] = ()) -> None:
        self._first = tuple(first)

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        lines = getter.get(carrier, self._BAGGAGE_HEADER_NAME)
        if not lines:
            return super().extract({}, context)
        combined = ",".join(_within_limits(_members(lines)))
        return super().extract({self._BAGGAGE_HEADER_NAME: combined}, context)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        entries = baggage.get_all(context)
        if not entries:
            return
        ordered = [key for key in self._first if key in entries]
        ordered += [key for key in entries if key not in self._first]
        encoded = (quote_plus(str(key)) + "=" + quote_plus(str(entries[key])) for key in ordered)
        header = ",".join(_within_limits(encoded))
        if header:
            setter.set(carrier, self._BAGGAGE_HEADER_NAME, header)
