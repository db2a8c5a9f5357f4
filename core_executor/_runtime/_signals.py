"""Termination signals handled on a thread of their own, never inside the interrupted thread's locks."""
from __future__ import annotations

import os
import signal
import threading
from typing import Callable, Sequence

__all__ = ["call_on_signals"]


def call_on_signals(fn: Callable[[], None], signals: Sequence[int], *, name: str = "gpufabric-signals") -> None:
    """Calls `fn()` once, from a thread of its own, when one of `signals` first arrives (main thread only).

    Not from a Python signal handler: handlers run in the main thread between bytecodes, so one that
    takes a lock deadlocks when it interrupts the holder of that lock, its own earlier run included:
    `Event.set` in a worker whose dying parent sends one SIGTERM per thread (the kernel re-sends
    PR_SET_PDEATHSIG at each reparenting), or an @exit method that prints while the interrupted
    method was printing too. The C handler only writes the signal number to a pipe
    (`signal.set_wakeup_fd`); the thread reads it. Other signals with Python handlers (a zygote's
    SIGCHLD, inherited by its forks) write there too and are skipped.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    for signum in signals:
        signal.signal(signum, lambda *_: None)  # a Python handler, so the C one writes to the pipe
    wanted = {int(s) for s in signals}

    def watch() -> None:
        while True:
            received = os.read(read_fd, 64)
            if not received or wanted.intersection(received):
                fn()
                return

    threading.Thread(target=watch, name=name, daemon=True).start()
