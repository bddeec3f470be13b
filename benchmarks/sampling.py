"""Tail sampling: ingest speed with sampling on against off, and what the database keeps.

Starts ``plyra-trace serve`` in a subprocess, alternately without sampling and with
``--sample-rate 0.1 --decision-wait 1`` (decisions run while ingest goes on), and posts the same
pre-encoded OTLP batches from sender processes. The batches are demo-like runs recorded with the
real SDK (``_Demo``: a planner, a guard, handoffs to a researcher and a writer, two tools, three
priced LLM calls, captured inputs and outputs; 9 spans, about 1.2 KB each as OTLP), 3% with a
failing tool and 2% blocked by the guard. Prints acknowledged spans/s per run and the ratio of
medians, then the database's bytes once every trace is decided (pages in use after a checkpoint,
and the file after VACUUM), sampled against unsampled, and compares the cost and token totals.

Targets: ingest with sampling >= 90% of without; at rate 0.1 the database holds <= 25% of the bytes.

Run: uv run python benchmarks/sampling.py [--batches 30] [--senders 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from collector import _free_port  # benchmarks/collector.py
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

TRACES_PER_BATCH = 40
SAMPLING = ("--sample-rate", "0.1", "--decision-wait", "1")
_WORDS = [
    "agent",
    "plan",
    "search",
    "order",
    "refund",
    "invoice",
    "weather",
    "flight",
    "hotel",
    "summary",
    "policy",
    "answer",
]


class _Demo:
    """A demo-like agent app on the real SDK: a planner guards its input and hands off to a
    researcher (a search tool, a fetch tool, two LLM calls) and a writer (one LLM call)."""

    def __init__(self, rng: random.Random) -> None:
        import plyra_trace
        from plyra_trace import GuardResult

        self.rng = rng
        self.fail = self.block = False

        @plyra_trace.llm(model="gpt-4o-mini", provider="openai")
        def complete(prompt: str) -> dict[str, Any]:
            text = _text(rng, 60)
            usage = {"prompt_tokens": 300 + rng.randrange(500), "completion_tokens": 80}
            return {
                "choices": [{"message": {"role": "assistant", "content": text}}],
                "usage": usage,
            }

        @plyra_trace.guard(name="input-safety", policy="content-safety")
        def check(text: str) -> GuardResult:
            action = "block" if self.block else "allow"
            return GuardResult(policy="content-safety", action=action, triggered=self.block)

        @plyra_trace.tool(name="web-search")
        def search(query: str) -> list[dict[str, str]]:
            return [{"title": _text(rng, 4), "snippet": _text(rng, 25)} for _ in range(3)]

        @plyra_trace.tool(name="fetch-page")
        def fetch(url: str) -> str:
            if self.fail:
                raise TimeoutError(f"fetching {url} timed out")
            return _text(rng, 80)

        @plyra_trace.agent(name="researcher")
        def researcher(query: str) -> str:
            for hit in search(query)[:1]:
                try:
                    fetch(f"https://example.test/{hit['title'].replace(' ', '-')}")
                except TimeoutError:
                    pass
            complete(f"summarise for: {query}")
            return str(complete(f"extract facts: {query}")["choices"][0]["message"]["content"])

        @plyra_trace.agent(name="writer")
        def writer(facts: str) -> str:
            return str(
                complete(f"write an answer from: {facts}")["choices"][0]["message"]["content"]
            )

        @plyra_trace.agent(name="planner")
        def planner(question: str) -> str:
            if check(question).action == "block":
                return "refused"
            with plyra_trace.handoff(to="researcher", reason="needs facts"):
                facts = researcher(question)
            with plyra_trace.handoff(to="writer", reason="draft"):
                return writer(facts)

        self.planner = planner

    def run(self) -> None:
        """One agent run: 3% fail a tool call, 2% are blocked by the guard."""
        import plyra_trace

        self.fail, self.block = self.rng.random() < 0.03, self.rng.random() < 0.02
        with plyra_trace.session(f"session-{self.rng.randrange(2000)}"):
            self.planner(_text(self.rng, 12) + "?")


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def make_bodies(count: int) -> list[bytes]:
    """``count`` export requests of TRACES_PER_BATCH demo runs each, as the SDK encodes them."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import plyra_trace

    exporter = InMemorySpanExporter()
    handle = plyra_trace.init(project="demo", exporter=exporter, batch=False, console=False)
    demo = _Demo(random.Random(16))
    bodies = []
    for _ in range(count):
        for _ in range(TRACES_PER_BATCH):
            demo.run()
        bodies.append(encode_spans(exporter.get_finished_spans()).SerializeToString())
        exporter.clear()
    handle.shutdown()
    return bodies


def _sender(url: str, bodies: list[bytes], out: Any) -> None:
    """Post every body in turn; report acknowledged spans and the time taken."""
    headers = {"content-type": "application/x-protobuf"}
    with httpx.Client(timeout=60, headers=headers) as client:
        started = time.perf_counter()
        codes = [client.post(url, content=body).status_code for body in bodies]
        finished = time.perf_counter()
    acked = sum(_spans(body) for body, code in zip(bodies, codes, strict=True) if code == 200)
    out.put((acked, started, finished))


def _spans(body: bytes) -> int:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base}/api/v1/health").status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("the collector did not start")


def _run(db: Path, flags: tuple[str, ...], bodies: list[list[bytes]]) -> tuple[float, Any]:
    """Ingest into a fresh collector; spans/s, and the cost totals once everything is decided."""
    port = _free_port()
    serve = [sys.executable, "-m", "plyra_trace", "serve", "--port", str(port), "--db", str(db)]
    server = subprocess.Popen([*serve, *flags], stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base)
        out: Any = multiprocessing.Queue()
        processes = [
            multiprocessing.Process(target=_sender, args=(f"{base}/v1/traces", mine, out))
            for mine in bodies
        ]
        for process in processes:
            process.start()
        results = [out.get() for _ in processes]
        for process in processes:
            process.join()
        rate = sum(r[0] for r in results) / (
            max(r[2] for r in results) - min(r[1] for r in results)
        )
        while httpx.get(f"{base}/api/v1/sampling").json()["pending"]:
            time.sleep(0.2)
        totals = {
            by: httpx.get(f"{base}/api/v1/cost", params={"by": by, "limit": 500}).json()
            for by in ("model", "agent", "day")
        }
        stats = httpx.get(f"{base}/api/v1/sampling").json()
    finally:
        server.terminate()
        server.wait(10)
    return rate, (totals, stats)


def _bytes(db: Path) -> tuple[int, int]:
    """Bytes in use (pages minus free pages, after a checkpoint) and the file after VACUUM."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        conn.execute("VACUUM")
    finally:
        conn.close()
    return (pages - free) * page, db.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, default=30, help="batches per sender")
    parser.add_argument("--senders", type=int, default=2, help="sender processes")
    parser.add_argument("--rounds", type=int, default=3, help="off/on pairs (medians compared)")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"off": [], "on": []}
    made = make_bodies(args.senders * args.batches)
    bodies = [made[i :: args.senders] for i in range(args.senders)]
    spans = sum(_spans(body) for body in made)
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, flags in (("off", ()), ("on", SAMPLING)):
                db = Path(tmp) / f"{name}-{round_}.db"
                rate, (totals, stats) = _run(db, flags, bodies)
                rates[name].append(rate)
                print(f"round {round_ + 1} sampling {name}: {rate:,.0f} spans/s")
                if round_ == 0:
                    if name == "off":
                        plain_totals, plain_bytes = totals, _bytes(db)
                    else:
                        sampled_totals, sampled_bytes, sampled_stats = totals, _bytes(db), stats
    off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
    print(f"{spans:,} spans per run ({spans // len(made)} per request, {args.senders} senders)")
    print(f"ingest with sampling / without (medians): {on / off:.2f}  (target >= 0.90)")
    kept, dropped = sampled_stats["kept"], sampled_stats["dropped"]
    print(f"traces kept {kept:,}, sampled out {dropped:,}; estimate freed", end=" ")
    print(f"{sampled_stats['bytes_saved'] / 2**20:.1f} MB")
    for label, index in (("pages in use", 0), ("file after VACUUM", 1)):
        ratio = sampled_bytes[index] / plain_bytes[index]
        print(
            f"database {label}: {sampled_bytes[index] / 2**20:.1f} MB sampled vs"
            f" {plain_bytes[index] / 2**20:.1f} MB unsampled = {ratio:.2f}  (target <= 0.25)"
        )
    same = _tokens(plain_totals) == _tokens(sampled_totals)
    print(f"token totals identical with and without sampling: {same}")
    gap = max(abs(a - b) for a, b in zip(_costs(plain_totals), _costs(sampled_totals), strict=True))
    print(f"largest cost difference: {gap:.1e} USD (float sums in another row order)")


def _tokens(totals: Any) -> list[Any]:
    return [
        {k: v for k, v in row.items() if k != "cost"} for t in totals.values() for row in t["items"]
    ]


def _costs(totals: Any) -> list[float]:
    return [row["cost"] or 0.0 for t in totals.values() for row in t["items"]]


if __name__ == "__main__":
    main()
