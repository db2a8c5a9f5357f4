"""Retry/resume policy: which losses of an input spend the user's retries and which are free."""
from __future__ import annotations

import enum
import signal

__all__ = ["LossKind", "charge_attempt", "classify_exit"]


class LossKind(enum.Enum):
    """Why an attempt ended without an output."""

    USER_ERROR = "user_error"        # the function raised or the process crashed by itself
    PREEMPTED = "preempted"          # the machine got a notice (spot reclaim, drain)
    WORKER_LOST = "worker_lost"      # the worker's heartbeat lapsed
    KILLED = "killed"                # SIGKILL from outside the container (not an OOM we saw)


def classify_exit(exit_code: int, *, preempting: bool = False, requested: bool = False, oom: bool = False) -> LossKind:
    """Classify a container exit (Popen returncode: negative for a signal) into a LossKind."""
    if preempting:
        return LossKind.PREEMPTED
    # A SIGKILL nobody asked for is the infrastructure's doing (chaos, host reclaim), not the code's;
    # an out-of-memory kill is the function's own.
    if exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL) and not requested and not oom:
        return LossKind.KILLED
    return LossKind.USER_ERROR


def charge_attempt(kind: LossKind, *, free_kills: bool = False) -> bool:
    """True when the loss spends one of the user's retries; the rest are re-queued for free.

    An outside SIGKILL looks like an out-of-memory kill where the sandbox cannot tell them apart,
    so it is charged unless `free_kills` (a host whose kills are known to be the infrastructure's).
    """
    if kind is LossKind.KILLED:
        return not free_kills
    return kind is LossKind.USER_ERROR
