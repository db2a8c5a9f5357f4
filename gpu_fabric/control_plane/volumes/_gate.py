"""A shared/exclusive lock per volume: block checks and uploads share it, a GC sweep batch holds it alone."""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

__all__ = ["Gate"]


class Gate:
    """Many holders in `shared()` at once, or one in `exclusive()`; a waiting exclusive holder goes
    first, so a steady stream of uploads cannot starve a sweep (and a sweep holds it one batch at a time)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()
