"""The Celery app both sides share: Redis when ``REDIS_URL`` is set, else the filesystem."""

from __future__ import annotations

import os

from celery import Celery

WRITE_ANSWER = "writer.write_answer"


def make_app(name: str) -> Celery:
    """A Celery app on the demo broker (no server needed unless ``REDIS_URL`` is set)."""
    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        app = Celery(name, broker=redis_url, backend=redis_url)
    else:
        folder = os.environ.get("DEMO_BROKER_DIR", "/tmp/plyra-demo-broker")
        for sub in ("queue", "control", "results"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        app = Celery(name, broker="filesystem://", backend=f"file://{folder}/results")
        app.conf.broker_transport_options = {
            "data_folder_in": f"{folder}/queue",
            "data_folder_out": f"{folder}/queue",
            "control_folder": f"{folder}/control",
        }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app
