"""This environment's libraries must not reach for the network or a hub while tested."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# guardrails-ai reads ~/.guardrailsrc when imported; without one it sends usage telemetry.
_home = Path(tempfile.mkdtemp(prefix="plyra-env-home-"))
(_home / ".guardrailsrc").write_text("enable_metrics=false\n")
os.environ["HOME"] = str(_home)
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
