"""W3C Trace Context (level 1) cases, written from the recommendation's processing model.

Each case is the header lines a caller sends and what the next hop must receive: the same
trace (with a new parent id) or a new one, and the ``tracestate`` forwarded (None: no header).
Shared by the carrier unit tests and the uvicorn + httpx conformance test.
"""

from __future__ import annotations

from dataclasses import dataclass

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{PARENT_ID}-01"
UNSAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-00"

KEYCHARS = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
VALUE_CHARS = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=")
THIRTY_TWO = ",".join(f"m{i:02d}={i}" for i in range(32))


@dataclass(frozen=True)
class Case:
    id: str
    headers: tuple[tuple[str, str], ...]
    continued: bool
    tracestate: str | None = None

    @property
    def repeats_a_name(self) -> bool:
        names = [name.lower() for name, _ in self.headers]
        return len(names) != len(set(names))


def _tp(value: str, continued: bool, case_id: str) -> Case:
    return Case(case_id, (("traceparent", value),), continued)


def _ts(case_id: str, *lines: str, expect: str | None, parent: str = VALID) -> Case:
    return Case(
        case_id,
        (("traceparent", parent), *(("tracestate", line) for line in lines)),
        True,
        expect,
    )


TRACEPARENT_CASES = [
    Case("no-headers", (), False),
    _tp(VALID, True, "valid"),
    _tp(UNSAMPLED, True, "valid-unsampled"),
    Case("two-traceparent-lines", (("traceparent", VALID), ("traceparent", VALID)), False),
    Case(
        "two-different-traceparent-lines",
        (("traceparent", VALID), ("traceparent", f"00-{'a' * 32}-{PARENT_ID}-01")),
        False,
    ),
    Case("name-trace-parent", (("trace-parent", VALID),), False),
    Case("name-trace.parent", (("trace.parent", VALID),), False),
    Case("name-mixed-case", (("TraceParent", VALID),), True),
    Case("name-upper-case", (("TRACEPARENT", VALID),), True),
    _tp(VALID + ".", False, "v00-trailing-dot"),
    _tp(VALID + "-future-fields", False, "v00-extra-fields"),
    _tp(f"cc-{TRACE_ID}-{PARENT_ID}-01", True, "future-version"),
    _tp(f"cc-{TRACE_ID}-{PARENT_ID}-01-future-fields", True, "future-version-extra-fields"),
    _tp(f"cc-{TRACE_ID}-{PARENT_ID}-01.future", False, "future-version-bad-separator"),
    _tp(f"ff-{TRACE_ID}-{PARENT_ID}-01", False, "version-ff"),
    _tp(f".0-{TRACE_ID}-{PARENT_ID}-01", False, "version-illegal-first"),
    _tp(f"0.-{TRACE_ID}-{PARENT_ID}-01", False, "version-illegal-second"),
    _tp(f"000-{TRACE_ID}-{PARENT_ID}-01", False, "version-three-digits"),
    _tp(f"0-{TRACE_ID}-{PARENT_ID}-01", False, "version-one-digit"),
    _tp(f"0A-{TRACE_ID}-{PARENT_ID}-01", False, "version-uppercase"),
    _tp(f"00-{'0' * 32}-{PARENT_ID}-01", False, "trace-id-zero"),
    _tp(f"00-.{TRACE_ID[1:]}-{PARENT_ID}-01", False, "trace-id-illegal"),
    _tp(f"00-{TRACE_ID.upper()}-{PARENT_ID}-01", False, "trace-id-uppercase"),
    _tp(f"00-{TRACE_ID}1-{PARENT_ID}-01", False, "trace-id-long"),
    _tp(f"00-{TRACE_ID[1:]}-{PARENT_ID}-01", False, "trace-id-short"),
    _tp(f"00-{TRACE_ID}-{'0' * 16}-01", False, "parent-id-zero"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID[:-1]}.-01", False, "parent-id-illegal"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID.upper()}-01", False, "parent-id-uppercase"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID}1-01", False, "parent-id-long"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID[1:]}-01", False, "parent-id-short"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID}-.1", False, "flags-illegal"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID}-0F", False, "flags-uppercase"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID}-001", False, "flags-long"),
    _tp(f"00-{TRACE_ID}-{PARENT_ID}-1", False, "flags-short"),
    _tp(f" {VALID}", True, "ows-leading-space"),
    _tp(f"\t{VALID}", True, "ows-leading-tab"),
    _tp(f"{VALID} ", True, "ows-trailing-space"),
    _tp(f"{VALID}\t", True, "ows-trailing-tab"),
    _tp(f"\t {VALID} \t", True, "ows-both"),
]

TRACESTATE_CASES = [
    Case("tracestate-without-traceparent", (("tracestate", "foo=1"),), False),
    _ts("forwarded", "foo=1,bar=2", expect="foo=1,bar=2"),
    Case(
        "name-trace-state",
        (("traceparent", VALID), ("trace-state", "foo=1")),
        True,
    ),
    Case("name-mixed-case-state", (("traceparent", VALID), ("TrAcEsTaTe", "foo=1")), True, "foo=1"),
    _ts("empty-line", "", expect=None),
    _ts("empty-line-after", "foo=1", "", expect="foo=1"),
    _ts("empty-line-before", "", "foo=1", expect="foo=1"),
    _ts(
        "lines-combined-in-order",
        "foo=1,bar=2",
        "rojo=1,congo=2",
        "baz=3",
        expect="foo=1,bar=2,rojo=1,congo=2,baz=3",
    ),
    _ts("lines-two", "a=1", "b=2", expect="a=1,b=2"),
    _ts("duplicate-key-same-value", "foo=1,foo=1", expect="foo=1"),
    _ts("duplicate-key-other-value", "foo=1,foo=2", expect="foo=1"),
    _ts("duplicate-key-across-lines", "foo=1", "foo=2", expect="foo=1"),
    _ts("all-key-and-value-chars", f"{KEYCHARS}={VALUE_CHARS}", expect=f"{KEYCHARS}={VALUE_CHARS}"),
    _ts(
        "multi-tenant-all-chars",
        f"{KEYCHARS}@{KEYCHARS}={VALUE_CHARS}",
        expect=f"{KEYCHARS}@{KEYCHARS}={VALUE_CHARS}",
    ),
    _ts("ows-around-members", "foo=1 \t , \t bar=2, \t baz=3", expect="foo=1,bar=2,baz=3"),
    _ts("ows-leading", " foo=1", expect="foo=1"),
    _ts("ows-trailing-tab", "foo=1\t", expect="foo=1"),
    _ts("empty-members", "a=1,,b=2", expect="a=1,b=2"),
    _ts("whitespace-members", "a=1, ,\t,b=2", expect="a=1,b=2"),
    _ts("only-commas", " , ,", expect=None),
    _ts("value-leading-space-kept", "foo= x", expect="foo= x"),
    _ts("key-with-space", "foo =1", expect=None),
    _ts("key-uppercase", "FOO=1", expect=None),
    _ts("key-dot", "foo.bar=1", expect=None),
    _ts("key-starts-with-at", "@foo=1,bar=2", expect=None),
    _ts("key-ends-with-at", "foo@=1,bar=2", expect="foo@=1,bar=2"),
    _ts("key-double-at", "foo@@bar=1,bar=2", expect="foo@@bar=1,bar=2"),
    _ts("key-two-ats", "foo@bar@baz=1,bar=2", expect="foo@bar@baz=1,bar=2"),
    _ts("key-digit-first", "1foo=1", expect="1foo=1"),
    _ts("one-bad-member-discards-all", "foo=1,BAD=2,bar=3", expect=None),
    _ts("bad-member-on-second-line", "foo=1", "bar=2,=3", expect=None),
    _ts("members-32", THIRTY_TWO, expect=THIRTY_TWO),
    _ts("members-32-over-lines", *THIRTY_TWO.split(","), expect=THIRTY_TWO),
    _ts("members-33", THIRTY_TWO, "extra=1", expect=None),
    _ts("key-256", "foo=1", "k" * 256 + "=1", expect="foo=1," + "k" * 256 + "=1"),
    _ts("key-257", "foo=1", "k" * 257 + "=1", expect=None),
    _ts(
        "tenant-key-256",
        "foo=1",
        "t" * 241 + "@" + "v" * 14 + "=1",
        expect="foo=1," + "t" * 241 + "@" + "v" * 14 + "=1",
    ),
    _ts("tenant-key-long-tenant", "t" * 242 + "@v=1", expect="t" * 242 + "@v=1"),
    _ts("tenant-key-long-vendor", "t@" + "v" * 15 + "=1", expect="t@" + "v" * 15 + "=1"),
    _ts("value-256", "foo=" + "v" * 256, expect="foo=" + "v" * 256),
    _ts("value-257", "foo=" + "v" * 257, expect=None),
    _ts("value-with-equals", "foo=bar=baz", expect=None),
    _ts("value-empty", "foo=,bar=3", expect=None),
    _ts("no-equals", "foo", expect=None),
    _ts("unsampled-parent", "foo=1", expect="foo=1", parent=UNSAMPLED),
]

CASES = TRACEPARENT_CASES + TRACESTATE_CASES
