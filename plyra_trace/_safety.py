"""Containment for instrumentation failures: log once, never raise into the host application."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("plyra_trace")

_seen: set[str] = set()
_seen_lock = threading.Lock()


def log_once(
    key: str, message: str, *, exc_info: bool = True, level: int = logging.WARNING
) -> None:
    """Log ``message`` the first time ``key`` is seen in this process; stay quiet afterwards."""
    if key in _seen:
        return
    with _seen_lock:
        if key in _seen:
            return
        _seen.add(key)
    logger.log(level, message, exc_info=exc_info)


def reset_log_once() -> None:
    """Forget which messages were logged (for tests and re-initialisation)."""
    with _seen_lock:
        _seen.clear()
