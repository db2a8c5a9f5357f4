"""Load: many concurrent SDK clients and a large `.map()` against one fabric, on SQLite and PostgreSQL.

CI runs small sizes; LOAD_SCALE=full runs the issue's (200 clients x 100 calls, a 10,000-input map).
"""
from __future__ import annotations

import pytest

import core_executor as fabric

from . import load_apps, loadgen

pytestmark = [pytest.mark.integration, pytest.mark.load]

# Generous: the control plane holds inputs and outputs of live calls only (measured: a few KiB each).
MAX_RSS_GROWTH_MIB = 400 if loadgen.FULL else 150
MAX_BYTES_PER_QUEUED_INPUT = 16 * 1024


def _load(fab, capsys):
    load_apps.app.deploy()
    echo = fabric.Function.from_name("load", "echo")
    echo.remote(-1)  # a warm container
    rss_before = loadgen.rss_mib(fab.proc.pid)
    clients = loadgen.run_clients(fab.url, fab.token, echo, loadgen.CLIENTS, loadgen.CALLS_PER_CLIENT, timeout_s=900)
    mapped = loadgen.run_map(echo, loadgen.MAP_INPUTS)
    rss_after = loadgen.rss_mib(fab.proc.pid)
    with capsys.disabled():
        print(f"\n{clients.line()}\n{mapped.line()}\ncontrol plane RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    assert not clients.errors, clients.errors[:5]
    assert clients.calls == loadgen.CLIENTS * loadgen.CALLS_PER_CLIENT
    assert not mapped.errors, mapped.errors
    assert rss_after - rss_before < MAX_RSS_GROWTH_MIB, (rss_before, rss_after)


def test_concurrent_clients_and_a_large_map_on_sqlite(start_fabric, capsys):
    _load(start_fabric("--workers", "1"), capsys)


def test_concurrent_clients_and_a_large_map_on_postgresql(start_fabric, pg_url, capsys):
    _load(start_fabric("--workers", "1", "--database", pg_url), capsys)


def test_queued_inputs_cost_bounded_control_plane_memory(start_fabric, capsys):
    fab = start_fabric("--workers", "1")
    n = 10_000 if loadgen.FULL else 3_000
    with load_apps.app.run():
        before, per_input = loadgen.rss_per_queued_input(fab.proc.pid, load_apps.gate, n)
    with capsys.disabled():
        print(f"\ncontrol plane RSS {before:.0f} MiB, {per_input:.0f} bytes per queued input ({n} queued)")
    assert per_input < MAX_BYTES_PER_QUEUED_INPUT
