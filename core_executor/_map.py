"""Many inputs on one call: batched sending with backpressure, and output reassembly."""
from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from .exception import InputCancellation, OutputExpiredError, ResourceExhaustedError

__all__ = ["OutputReassembler", "InputFeeder", "iter_outputs", "send_with_backoff"]

POLL_WAIT_S = 25.0
OUTPUTS_PER_POLL = 1000


class OutputReassembler:
    """Turns outputs arriving in any order into the order the caller asked for.

    `add(idx, item)` returns the items now ready: with `ordered`, the run of consecutive
    indices starting at the next one expected; otherwise just `item`. Duplicates (an output
    delivered twice after a reconnect) are dropped.
    """

    def __init__(self, ordered: bool):
        self.ordered = ordered
        self.next_idx = 0
        self._pending: dict[int, Any] = {}
        self._seen: set[int] = set()

    @property
    def count(self) -> int:
        """Distinct outputs received so far."""
        return len(self._seen)

    @property
    def pending(self) -> int:
        """Outputs received but held back waiting for an earlier index."""
        return len(self._pending)

    def add(self, idx: int, item: Any) -> list[Any]:
        """Record output `idx`; return the items ready to hand over, in order."""
        if idx in self._seen:
            return []
        self._seen.add(idx)
        if not self.ordered:
            return [item]
        if idx != self.next_idx:
            self._pending[idx] = item
            return []
        ready = [item]
        self.next_idx += 1
        pending = self._pending
        while self.next_idx in pending:
            ready.append(pending.pop(self.next_idx))
            self.next_idx += 1
        return ready


def send_with_backoff(send: Callable[[], Any], *, stop: Callable[[], bool] = lambda: False,
                      sleep: Callable[[float], None] = time.sleep) -> Any:
    """Call `send` until the fabric stops answering RESOURCE_EXHAUSTED (nothing was accepted then)."""
    delay = 0.02
    while True:
        try:
            return send()
        except ResourceExhaustedError:
            if stop():
                raise
            sleep(delay)
            delay = min(delay * 2, 1.0)


def batches(calls: Iterable[Any], size: int) -> Iterator[tuple[list[Any], bool]]:
    """Yield (batch, is_last) for `calls`, `size` at a time; an empty input yields ([], True)."""
    it = iter(calls)
    batch = list(itertools.islice(it, size))
    while True:
        nxt = list(itertools.islice(it, size))
        yield batch, not nxt
        if not nxt:
            return
        batch = nxt


class InputFeeder:
    """Sends the batches after the first one (`FunctionPutInputs`), in a thread or inline."""

    def __init__(self, put: Callable[[list, bool], Any], encode: Callable[[list], list],
                 rest: Iterator[tuple[list, bool]], sent: int):
        self._put = put
        self._encode = encode
        self._rest = rest
        self.sent = sent  # inputs the fabric accepted so far
        self.total: int | None = None  # set once the last batch is accepted
        self.error: BaseException | None = None
        self.stopped = False
        self.progress = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Send every remaining batch (errors are kept in `error`, and re-raised when inline)."""
        try:
            for batch, is_last in self._rest:
                if self.stopped:
                    return
                inputs = self._encode(batch)
                send_with_backoff(lambda: self._put(inputs, is_last), stop=lambda: self.stopped)
                self.sent += len(batch)
                if is_last:
                    self.total = self.sent
                self.progress.set()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self.error = exc
            self.progress.set()
            if self._thread is None:
                raise

    def start(self) -> "InputFeeder":
        """Run in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="gpufabric-map-feeder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending (the call is being cancelled)."""
        self.stopped = True


def iter_outputs(
    get_outputs: Callable[[int, float], Any],
    *,
    feeder: InputFeeder | None,
    total: int | None,
    ordered: bool,
    wait_logs: Callable[[int], Any] | None = None,
) -> Iterator[Any]:
    """Long-poll a call's outputs and yield FunctionOutput messages (in input order if `ordered`).

    `get_outputs(cursor, wait_s)` is one FunctionGetOutputs. The call is complete when every
    input (`total`, from the feeder, or the server's count once the call is closed) has an output.
    """
    reasm = OutputReassembler(ordered)
    cursor = 0
    while True:
        if feeder is not None:
            if feeder.error is not None:
                raise feeder.error
            if feeder.total is not None:
                total = feeder.total
        if total is not None and reasm.count >= total:
            return
        if feeder is not None and feeder.total is None and reasm.count >= feeder.sent:
            # Every accepted input has its output: nothing can come until the feeder sends more.
            feeder.progress.wait(0.1)
            feeder.progress.clear()
            continue
        resp = get_outputs(cursor, POLL_WAIT_S)
        outputs = resp.outputs
        if outputs:
            cursor = max(cursor, max(o.seq for o in outputs))
            if wait_logs is not None:
                wait_logs(max(o.log_seq for o in outputs))
            for out in outputs:
                yield from reasm.add(out.idx, out)
        elif resp.cancelled:
            raise InputCancellation("the call was cancelled")
        elif resp.closed and resp.num_done >= resp.num_inputs and reasm.count < resp.num_inputs:
            raise OutputExpiredError(
                f"{resp.num_inputs - reasm.count} of the call's outputs expired before they were read"
            )
        if resp.closed and feeder is None and total is None and reasm.count >= resp.num_inputs:
            # Outputs that expired before we asked would never come.
            total = resp.num_inputs
