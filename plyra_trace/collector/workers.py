"""``serve --workers N``: each uvicorn worker process builds its app from the parent's settings.

uvicorn starts workers from an import string, so the settings travel in one environment variable.
Only PostgreSQL stores allow several processes (replicas share the database; SQLite has one
writer per file).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Final

from starlette.applications import Starlette

from plyra_trace.collector.app import create_app
from plyra_trace.collector.config import CollectorConfig
from plyra_trace.collector.sampling.policy import SamplingPolicy

ENV: Final = "PLYRA_COLLECTOR_CONFIG"
FACTORY: Final = "plyra_trace.collector.workers:app"


def export_config(config: CollectorConfig) -> None:
    """Put ``config`` where worker processes find it."""
    os.environ[ENV] = json.dumps(dataclasses.asdict(config))


def app() -> Starlette:
    """The collector app of one worker process (uvicorn calls this in each worker)."""
    sys.setswitchinterval(0.001)
    settings = json.loads(os.environ[ENV])
    settings["sampling"] = SamplingPolicy(**settings["sampling"])
    return create_app(CollectorConfig(**settings))
