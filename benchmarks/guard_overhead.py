"""Cost of the plyra-guard hook: a guarded call that plyra-guard evaluates, instrumented vs not.

Two ``ActionGuard``s from the same YAML policy (plyra-guard's default pipeline: schema validator,
a policy rule, risk scorer, cost estimator; the rate limiter is off, since its cost grows with the
calls in its window and would make the baseline drift), one instrumented with
``plyra_trace.integrations.plyra_guard``, both called inside the same ``@agent`` under the same
``plyra_trace.init`` (no exporter: the SDK builds every span, nothing is sent). Rounds alternate so
both see the same machine load; the ratio is the median of per-round ratios. The guarded function
does nothing, so the ratio is the worst case: the guard's evaluation is the whole call.

Run: uv run python benchmarks/guard_overhead.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from plyra_guard import ActionGuard

import plyra_trace
from plyra_trace.integrations.plyra_guard import instrument

POLICY = """
version: "1.0"
evaluators:
  rate_limiter:
    enabled: false
policies:
  - name: no-system-files
    action_types: ["file.*"]
    condition: "parameters.path.startswith('/etc/')"
    verdict: BLOCK
observability:
  exporters: []
  audit_log_max_entries: 1000
"""


def _guarded(config: Path) -> tuple[ActionGuard, Callable[[str], str]]:
    guard = ActionGuard.from_config(str(config))

    @guard.protect("file.read")
    def read_file(path: str) -> str:
        return path

    return guard, read_file


def per_call(call: Callable[[str], str], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call("/tmp/notes.txt")
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    handle = plyra_trace.init("bench", console=False)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "guard.yaml"
        config.write_text(POLICY)
        _, plain = _guarded(config)
        traced_guard, traced = _guarded(config)
        _, floored = _guarded(config)
    instrument(traced_guard)

    def with_one_span(path: str) -> str:  # the floor: the same call plus one empty plyra span
        with plyra_trace.SpanBuilder("floor", kind="GUARD"):
            pass
        return floored(path)

    variants: dict[str, Callable[[str], str]] = {
        "plyra-guard alone": plain,
        "plus one empty span": with_one_span,
        "instrumented": traced,
    }

    @plyra_trace.agent(name="researcher")
    def measure() -> dict[str, list[float]]:
        rounds: dict[str, list[float]] = {name: [] for name in variants}
        for call in variants.values():
            per_call(call, 200)  # warm up
        for _ in range(args.rounds):
            for name, call in variants.items():
                rounds[name].append(per_call(call, args.calls))
        return rounds

    rounds = measure()
    base = rounds["plyra-guard alone"]
    for name, times in rounds.items():
        print(f"{'guarded call, ' + name:40s} {min(times):8.1f} us (best round)")
    for name in ("plus one empty span", "instrumented"):
        ratios = [t / p for p, t in zip(base, rounds[name], strict=True)]
        median = statistics.median(ratios)
        print(f"{name} vs plyra-guard alone (median per-round ratio): {median:.3f}x")
    handle.shutdown()


if __name__ == "__main__":
    main()
