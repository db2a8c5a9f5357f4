"""Map internals as pure logic: output reassembly, batching, the output loop, and the log printer."""
from __future__ import annotations

import io
import random
from types import SimpleNamespace as NS

import pytest

from core_executor._logs import LogPrinter, format_entry
from core_executor._map import InputFeeder, OutputReassembler, batches, iter_outputs, send_with_backoff
from core_executor.exception import InputCancellation, OutputExpiredError, ResourceExhaustedError


def test_ordered_reassembly_releases_consecutive_runs():
    r = OutputReassembler(ordered=True)
    assert r.add(2, "c") == []
    assert r.add(1, "b") == []
    assert r.add(0, "a") == ["a", "b", "c"]
    assert r.add(4, "e") == [] and r.pending == 1
    assert r.add(3, "d") == ["d", "e"]
    assert r.add(3, "d-again") == [] and r.count == 5


def test_unordered_reassembly_passes_through_and_drops_duplicates():
    r = OutputReassembler(ordered=False)
    assert r.add(5, "x") == ["x"] and r.add(5, "x") == [] and r.add(0, "y") == ["y"]


def test_reassembly_of_a_random_permutation():
    order = list(range(1000))
    random.Random(4).shuffle(order)
    r = OutputReassembler(ordered=True)
    out = [item for idx in order for item in r.add(idx, idx)]
    assert out == list(range(1000)) and r.pending == 0


def test_batches():
    assert list(batches([], 3)) == [([], True)]
    assert list(batches(range(3), 3)) == [([0, 1, 2], True)]
    assert list(batches(range(7), 3)) == [([0, 1, 2], False), ([3, 4, 5], False), ([6], True)]


def test_send_with_backoff_resends_the_same_batch():
    attempts, sleeps = [], []

    def send():
        attempts.append(1)
        if len(attempts) < 3:
            raise ResourceExhaustedError("full")
        return "ok"

    assert send_with_backoff(send, sleep=sleeps.append) == "ok"
    assert len(attempts) == 3 and sleeps[1] > sleeps[0]


def _out(idx, seq, log_seq=0):
    return NS(idx=idx, seq=seq, log_seq=log_seq, result=None)


def _resp(outputs, num_inputs, closed=True, cancelled=False):
    return NS(outputs=outputs, num_inputs=num_inputs, num_done=len(outputs), closed=closed, cancelled=cancelled)


def test_iter_outputs_orders_and_advances_the_cursor():
    pages = [_resp([_out(1, 1, 5), _out(0, 2, 7)], 3), _resp([_out(2, 3)], 3)]
    cursors, logs = [], []

    def get(cursor, wait):
        cursors.append(cursor)
        return pages.pop(0)

    out = list(iter_outputs(get, feeder=None, total=3, ordered=True, wait_logs=logs.append))
    assert [o.idx for o in out] == [0, 1, 2]
    assert cursors == [0, 2] and logs == [7, 0]


def test_iter_outputs_learns_the_total_from_a_closed_call():
    pages = [_resp([_out(0, 1)], 2), _resp([_out(1, 2)], 2)]
    out = list(iter_outputs(lambda c, w: pages.pop(0), feeder=None, total=None, ordered=True))
    assert [o.idx for o in out] == [0, 1]


def test_iter_outputs_raises_on_cancel_and_expiry():
    with pytest.raises(InputCancellation):
        list(iter_outputs(lambda c, w: _resp([], 2, cancelled=True), feeder=None, total=2, ordered=True))
    expired = NS(outputs=[], num_inputs=2, num_done=2, closed=True, cancelled=False)
    with pytest.raises(OutputExpiredError):
        list(iter_outputs(lambda c, w: expired, feeder=None, total=None, ordered=True))


def test_iter_outputs_surfaces_feeder_errors():
    def encode(batch):
        raise ValueError("cannot pickle item 3")

    feeder = InputFeeder(lambda inputs, closed: None, encode, iter([([3], True)]), sent=0)
    with pytest.raises(ValueError):
        feeder.run()  # inline (spawn_map) raises; threaded (map) hands it to the output loop
    with pytest.raises(ValueError, match="item 3"):
        list(iter_outputs(lambda c, w: _resp([], 1), feeder=feeder, total=None, ordered=True))


def test_feeder_sends_the_rest_and_sets_the_total():
    sent = []
    feeder = InputFeeder(lambda inputs, closed: sent.append((inputs, closed)), lambda b: [x * 10 for x in b],
                         batches(range(2, 7), 2), sent=2)
    feeder.start()._thread.join(5)
    assert sent == [([20, 30], False), ([40, 50], False), ([60], True)]
    assert feeder.total == 7 and feeder.error is None


def _entry(seq, data, function_name="square", stream=1):
    return NS(seq=seq, data=data, function_name=function_name, stream=stream)


def test_format_entry():
    assert format_entry(_entry(1, "squaring 4\n")) == ("[square] squaring 4\n", False)
    assert format_entry(_entry(1, "a\nb")) == ("[square] a\n[square] b\n", False)
    assert format_entry(_entry(1, "oops", stream=2)) == ("[square] oops\n", True)
    assert format_entry(_entry(1, "scheduling", function_name="", stream=3)) == ("[fabric] scheduling\n", True)


def test_printer_prints_once_and_tracks_seq():
    out, err = io.StringIO(), io.StringIO()
    printer = LogPrinter(client=None, app_id="ap", stdout=out, stderr=err)
    printer.print_entries([_entry(1, "one"), _entry(2, "two", stream=2)])
    printer.print_entries([_entry(2, "two", stream=2), _entry(3, "three")])
    assert out.getvalue() == "[square] one\n[square] three\n" and err.getvalue() == "[square] two\n"
    assert printer.printed_seq == 3
    assert printer.wait_for(3, timeout=0) and not printer.wait_for(4, timeout=0.01)
