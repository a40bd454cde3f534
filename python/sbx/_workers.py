"""Daemon threads for the SDK's background work, kept for reuse.

Every exec streams its output on a thread of its own, and so does every
background file transfer. Starting a thread costs a millisecond or two
(the new thread's stack and its start handshake), which was most of an
exec's time in the SDK; a worker that finished its task waits a while for
the next one instead of exiting. Workers are daemon threads, as the
threads they replace were: a stream that never ends does not keep the
interpreter from exiting.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

__all__ = ["go"]

#: How long an idle worker waits for a task before it exits.
IDLE_EXIT = 30.0

_lock = threading.Lock()
_idle = 0  # workers waiting for a task
_tasks: "queue.SimpleQueue[tuple[Callable[[], None], str]]" = queue.SimpleQueue()


def go(fn: Callable[[], None], name: str = "sbx-worker") -> None:
    """Run fn() on an idle worker, or on a new one if none is idle. fn must
    handle its own exceptions (they are dropped)."""
    global _idle
    with _lock:
        if _idle > 0:
            _idle -= 1
            _tasks.put((fn, name))
            return
    threading.Thread(target=_work, args=(fn, name), name=name, daemon=True).start()


def idle_workers() -> int:
    """How many workers wait for a task (for tests)."""
    with _lock:
        return _idle


def _work(fn: Callable[[], None], name: str) -> None:
    global _idle
    while True:
        threading.current_thread().name = name
        try:
            fn()
        except BaseException:  # noqa: BLE001 - a task's own business
            pass
        del fn
        with _lock:
            _idle += 1
        while True:
            try:
                fn, name = _tasks.get(timeout=IDLE_EXIT)
                break  # go() counted this worker busy again
            except queue.Empty:
                with _lock:
                    # A task put just now (under the lock) is for a worker
                    # go() counted busy: take it rather than exit.
                    if not _tasks.empty():
                        continue
                    _idle -= 1
                    return
