"""Tests of integrations whose libraries cannot share the main dev environment.

Each folder here is a locked environment of its own (``pyproject.toml`` + ``uv.lock``), run by
``tests/envs/run.sh``, which sets ``PLYRA_TEST_ENV`` to the folder's name. The main run collects
none of them; an environment's run collects only its own folder.
"""

from __future__ import annotations

import os
from pathlib import Path

_ACTIVE = os.environ.get("PLYRA_TEST_ENV")

collect_ignore = [
    entry.name
    for entry in Path(__file__).parent.iterdir()
    if entry.is_dir() and (entry / "pyproject.toml").exists() and entry.name != _ACTIVE
]
