"""Export queued spans when the process is told to terminate.

Python's default SIGTERM action ends the process on the spot: atexit never runs, so the SDK's exit
flush never happens and the last batch is lost on every ``docker stop`` or pod shutdown. uvicorn
does the same on purpose: after its graceful shutdown it restores the previous handler and raises
the signal again. Where nobody else handles SIGTERM, plyra flushes (bounded) and then lets the
default action happen, so the process still dies of SIGTERM with the usual exit status.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from plyra_trace._safety import log_once

FLUSH_SECONDS = 3.0
_installed = False


def flush_on_terminate(flush: Callable[[float], bool]) -> None:
    """Handle SIGTERM by calling ``flush(FLUSH_SECONDS)``, if SIGTERM still has its default action
    and this is the main thread (an application's own handler is never replaced)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def on_terminate(signum: int, frame: FrameType | None) -> None:
            try:
                flush(FLUSH_SECONDS)
            except Exception:
                log_once("terminate", "plyra_trace: could not flush spans at SIGTERM")
            finally:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, on_terminate)
        _installed = True
    except (ValueError, OSError):  # no signals here (embedded interpreters, some platforms)
        return
