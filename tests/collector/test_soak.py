"""``benchmarks/soak.py`` for about 75 s on SQLite: memory flat after warm-up, WAL bounded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


def test_a_short_soak_keeps_memory_flat_and_the_wal_bounded() -> None:
    run = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--minutes",
            "1.25",
            "--interval",
            "5",
            "--warmup",
            "30",
            "--rate",
            "1000",
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line for line in run.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) >= 10, run.stdout
    assert "memory flat after warm-up" in run.stdout
