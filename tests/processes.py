"""Test services in subprocesses that announce their port on stdout as ``PORT <n>``."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def python_service(module: str, *args: str, env: Mapping[str, str]) -> Iterator[int]:
    """Run ``python -m module args``; yields the port it announces, then SIGTERM (its spans are
    flushed on the way out), kill if it will not stop."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(60)
        assert line and line[0].startswith("PORT "), f"{module} did not start: {line}"
        yield int(line[0].split()[1])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
