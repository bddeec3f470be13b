"""The Celery worker the subprocess tests start: ``celery -A tests.integrations.celery_app worker``.

Configured through the environment the test passes: ``PLYRA_CELERY_TEST_DIR`` (the filesystem
broker, file result backend and the ready file live there), ``PLYRA_CELERY_TEST_REDIS`` (a Redis
URL: broker and result backend instead), ``PLYRA_CELERY_TEST_ENDPOINT`` (the OTLP receiver) and
``PLYRA_CELERY_TEST_DELAY_MS`` (the export schedule delay). Tracing is set up at import, in the
worker's main process, as the integration recommends: prefork children inherit it (the batch
exporter restarts its thread after fork) and the main process records the runs its children
took down with them (hard time limit, worker lost).

The test process imports only ``make_app``; without the endpoint variable nothing is traced.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from celery import Celery, signals

import plyra_trace
from plyra_trace.integrations.celery import instrument

WRITE, SOFT, HARD, DIE, BLOCK = "ca.write", "ca.soft", "ca.hard", "ca.die", "ca.block"
SLOW = "ca.slow"


def make_app(folder: str | None, redis_url: str | None = None) -> Celery:
    """The app both sides use: Redis when given, else the filesystem broker under ``folder``."""
    if redis_url:
        app = Celery("celery_app", broker=redis_url, backend=redis_url)
    elif folder:
        for sub in ("queue", "control", "results"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        app = Celery("celery_app", broker="filesystem://", backend=f"file://{folder}/results")
        app.conf.broker_transport_options = {
            "data_folder_in": f"{folder}/queue",
            "data_folder_out": f"{folder}/queue",
            "control_folder": f"{folder}/control",
            "polling_interval": 0.05,
        }
    else:
        app = Celery("celery_app", broker="memory://", backend="cache+memory://")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        worker_lost_wait=0.5,  # how long a lost child's result is awaited (default 10 s)
    )
    return app


FOLDER = os.environ.get("PLYRA_CELERY_TEST_DIR")
app = make_app(FOLDER, os.environ.get("PLYRA_CELERY_TEST_REDIS"))

if os.environ.get("PLYRA_CELERY_TEST_ENDPOINT"):
    handle = plyra_trace.init(
        "celery-tests",
        service_name="writer",
        endpoint=os.environ["PLYRA_CELERY_TEST_ENDPOINT"],
        console=False,
        schedule_delay_millis=int(os.environ.get("PLYRA_CELERY_TEST_DELAY_MS", "100")),
    )
    instrument(app, agent_name="writer")


@signals.worker_ready.connect
def _ready(**_: Any) -> None:
    """Tell the test the worker consumes (its children are forked by now)."""
    if FOLDER:
        Path(FOLDER, "ready").write_text(str(os.getpid()))


@plyra_trace.tool(name="outline")
def outline(topic: str) -> list[str]:
    return [f"{topic}: market", f"{topic}: outlook"]


@plyra_trace.agent(name="writer")
def writer_agent(topic: str) -> str:
    return "; ".join(outline(topic))


@app.task(name=WRITE, shared=False)
def write(topic: str) -> str:
    return writer_agent(topic)


@app.task(name=SOFT, shared=False, soft_time_limit=0.3)
def soft(seconds: float) -> None:
    time.sleep(seconds)  # SoftTimeLimitExceeded is raised in here


@app.task(name=HARD, shared=False, time_limit=1)
def hard(seconds: float) -> None:
    time.sleep(seconds)  # the pool kills this child after a second


@app.task(name=DIE, shared=False)
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # the worker loses its child mid-task


@app.task(name=BLOCK, bind=True, shared=False)
def block(self: Any) -> None:
    """Says it started (a file the test waits for), then waits to be revoked and terminated."""
    if FOLDER:
        Path(FOLDER, f"started-{self.request.id}").write_text("")
    time.sleep(30)


@plyra_trace.agent(name="slow-writer")
def slow_writer(seconds: float) -> str:
    time.sleep(seconds)
    return "drafted"


@app.task(name=SLOW, shared=False)
def slow(seconds: float) -> str:
    """A long run: the live-span test watches it while it runs."""
    return slow_writer(seconds)
