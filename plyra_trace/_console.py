"""Console dev mode: each finished trace printed as a readable indented tree on stderr."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Final, TextIO

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from plyra_trace import _semconv as sc

_MAX_OPEN_TRACES: Final = 256
_MAX_SPANS_PER_TRACE: Final = 2_000
_VALUE_CHARS: Final = 80

# Attributes worth a glance, in the order they are shown.
_KEY_ATTRIBUTES: Final = (
    sc.SESSION_ID,
    sc.USER_ID,
    sc.HANDOFF_FROM,
    sc.HANDOFF_REASON,
    sc.HANDOFF_PROTOCOL,
    sc.LLM_MODEL_NAME,
    sc.LLM_TOKENS_TOTAL,
    sc.LLM_COST_TOTAL,
    sc.GUARD_ACTION,
    sc.GUARD_TRIGGERED,
    sc.GUARD_CONFIDENCE,
    sc.INPUT_VALUE,
    sc.OUTPUT_VALUE,
)
_SHORT_NAMES: Final = {
    sc.SESSION_ID: "session",
    sc.USER_ID: "user",
    sc.HANDOFF_FROM: "from",
    sc.HANDOFF_REASON: "reason",
    sc.HANDOFF_PROTOCOL: "via",
    sc.LLM_MODEL_NAME: "model",
    sc.LLM_TOKENS_TOTAL: "tokens",
    sc.LLM_COST_TOTAL: "cost",
    sc.GUARD_ACTION: "action",
    sc.GUARD_TRIGGERED: "triggered",
    sc.GUARD_CONFIDENCE: "confidence",
    sc.INPUT_VALUE: "in",
    sc.OUTPUT_VALUE: "out",
}
_COLOURS: Final = {
    "AGENT": "\033[35m",
    "TOOL": "\033[36m",
    "GUARD": "\033[33m",
    "LLM": "\033[34m",
    "ERROR": "\033[31m",
    "DIM": "\033[2m",
}
_RESET: Final = "\033[0m"


class ConsoleTreeProcessor(SpanProcessor):
    """Prints each trace as a tree once every span of it started in this process has ended.

    Tracking open spans (not just "a root ended") keeps a trace continued in-process, e.g. with
    ``continue_trace``, in one tree. Memory is bounded: at most a few hundred open traces.
    """

    def __init__(self, stream: TextIO | None = None, colour: bool | None = None) -> None:
        self._stream = stream
        self._colour = colour
        self._open: OrderedDict[int, tuple[set[int], list[ReadableSpan]]] = OrderedDict()
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        trace_id = span.context.trace_id
        with self._lock:
            entry = self._open.get(trace_id)
            if entry is None:
                entry = self._open[trace_id] = (set(), [])
                while len(self._open) > _MAX_OPEN_TRACES:
                    self._open.popitem(last=False)
            entry[0].add(span.context.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        trace_id = span.context.trace_id
        with self._lock:
            entry = self._open.get(trace_id)
            if entry is None:
                return
            running, finished = entry
            running.discard(span.context.span_id)
            if len(finished) < _MAX_SPANS_PER_TRACE:
                finished.append(span)
            if running:
                return
            del self._open[trace_id]
        self._write(render_tree(finished, colour=self._use_colour()))

    def _use_colour(self) -> bool:
        if self._colour is not None:
            return self._colour
        return bool(getattr(self._target(), "isatty", lambda: False)())

    def _target(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def _write(self, text: str) -> None:
        try:
            stream = self._target()
            stream.write(text)
            stream.flush()
        except Exception:
            pass

    def shutdown(self) -> None:
        with self._lock:
            leftovers = [finished for _, finished in self._open.values() if finished]
            self._open.clear()
        for finished in leftovers:
            self._write(render_tree(finished, colour=self._use_colour()))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _clip(value: Any) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def _duration_ms(span: ReadableSpan) -> float:
    if span.start_time is None or span.end_time is None:
        return 0.0
    return (span.end_time - span.start_time) / 1e6


def _describe(span: ReadableSpan, colour: bool) -> str:
    attributes = span.attributes or {}
    kind = str(attributes.get(sc.PLYRA_SPAN_KIND) or span.kind.name)
    failed = span.status.status_code is StatusCode.ERROR
    status = "ERROR" if failed else "OK"
    details = []
    for key in _KEY_ATTRIBUTES:
        if key in attributes:
            value = attributes[key]
            if key == sc.LLM_COST_TOTAL and isinstance(value, float):
                value = f"${value:.6f}"
            details.append(f"{_SHORT_NAMES[key]}={_clip(value)}")
    if failed and span.status.description:
        details.insert(0, f"error={_clip(span.status.description)}")
    line = f"{span.name}  [{kind}]  {_duration_ms(span):.1f} ms  {status}"
    if colour:
        tint = _COLOURS["ERROR"] if failed else _COLOURS.get(kind, "")
        line = f"{tint}{line}{_RESET}" if tint else line
        extra = f"  {_COLOURS['DIM']}{'  '.join(details)}{_RESET}" if details else ""
    else:
        extra = f"  {'  '.join(details)}" if details else ""
    return line + extra


def render_tree(spans: Sequence[ReadableSpan], colour: bool = False) -> str:
    """The spans of one trace as an indented tree, children in start order."""
    by_id = {span.context.span_id: span for span in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent_id = span.parent.span_id if span.parent is not None else None
        key = parent_id if parent_id in by_id else None
        children.setdefault(key, []).append(span)
    for group in children.values():
        group.sort(key=lambda s: s.start_time or 0)
    roots = children.get(None, [])
    service = ""
    if spans:
        service = str(spans[0].resource.attributes.get("service.name", ""))
    total_ms = max((_duration_ms(root) for root in roots), default=0.0)
    header = (
        f"trace {spans[0].context.trace_id:032x} · {service} · "
        f"{len(spans)} spans · {total_ms:.1f} ms"
        if spans
        else "trace (empty)"
    )
    lines = [header]

    def walk(span: ReadableSpan, prefix: str, last: bool) -> None:
        lines.append(f"{prefix}{'└─ ' if last else '├─ '}{_describe(span, colour)}")
        below = children.get(span.context.span_id, [])
        for index, child in enumerate(below):
            walk(child, prefix + ("   " if last else "│  "), index == len(below) - 1)

    for index, root in enumerate(roots):
        walk(root, "", index == len(roots) - 1)
    return "\n".join(lines) + "\n\n"
