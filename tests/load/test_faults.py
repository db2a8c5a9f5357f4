"""Faults under load: the control plane SIGKILLed and restarted mid-map, a worker killed mid-map,
PostgreSQL connections dropped mid-map. Every input's output reaches the caller exactly once."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from core_executor import _map

from . import load_apps, loadgen

pytestmark = [pytest.mark.integration, pytest.mark.load]

MAP_INPUTS = 10_000 if loadgen.FULL else 3_000
SERVE_ARGS = ("--heartbeat-timeout", "3")


def _paced(n: int, at_input: dict, every: int = 500, pause_s: float = 0.2):
    """Inputs produced over a few seconds, so the map is still sending when a fault hits;
    at_input[i]() runs (in the SDK's feeder thread) just before input i is produced."""
    for i in range(n):
        fault = at_input.pop(i, None)
        if fault is not None:
            fault()
        if i % every == every - 1:
            time.sleep(pause_s)
        yield i


@pytest.fixture
def wire_duplicates(monkeypatch):
    """Counts outputs the fabric handed to the SDK more than once (the SDK drops them)."""
    counts = {"duplicates": 0}
    add = _map.OutputReassembler.add

    def counting(self, idx, item):
        if idx in self._seen:
            counts["duplicates"] += 1
        return add(self, idx, item)

    monkeypatch.setattr(_map.OutputReassembler, "add", counting)
    return counts


def _map_with_faults(at_output: dict, at_input: dict | None = None, deadline_s: float = 300.0) -> list[int]:
    """Map `slow_square` over paced inputs; call at_output[k]() once k outputs have arrived."""
    got: list[int] = []
    deadline = time.monotonic() + deadline_s
    for value in load_apps.slow_square.map(_paced(MAP_INPUTS, at_input or {}), kwargs={"seconds": 0.001}):
        got.append(value)
        fault = at_output.pop(len(got), None)
        if fault is not None:
            fault()
        assert time.monotonic() < deadline, f"{len(got)} of {MAP_INPUTS} outputs after {deadline_s:.0f} s"
    return got


def _expected() -> list[int]:
    return [x * x for x in range(MAP_INPUTS)]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_control_plane_sigkilled_and_restarted_mid_map(start_fabric, request, wire_duplicates, capsys, database):
    args = SERVE_ARGS
    if database == "postgresql":
        args += ("--database", request.getfixturevalue("pg_url"))
    fab = start_fabric(*args)
    restarts = []
    restarting: list[threading.Thread] = []

    def restart(dead) -> None:
        nonlocal fab
        t0 = time.monotonic()
        fab = start_fabric(*args, port=dead.port, data_dir=dead.data_dir)
        restarts.append(time.monotonic() - t0)

    def kill_and_restart() -> None:
        dead = fab
        dead.stop(signal.SIGKILL)  # the whole serve process group: control plane, workers, containers
        restart(dead)

    def kill_while_sending() -> None:
        # From the feeder thread: the next batch goes out while the fabric is down.
        dead = fab
        dead.stop(signal.SIGKILL)
        restarting.append(threading.Thread(target=restart, args=(dead,)))
        restarting[0].start()

    with load_apps.app.run():
        got = _map_with_faults({MAP_INPUTS * 4 // 5: kill_and_restart}, at_input={MAP_INPUTS // 2: kill_while_sending})
        restarting[0].join(60)
    with capsys.disabled():
        print(f"\n{database}: {len(restarts)} restarts ({', '.join(f'{s:.1f} s' for s in restarts)}), "
              f"{wire_duplicates['duplicates']} duplicate outputs on the wire (dropped by the SDK)")
    assert len(restarts) == 2
    assert got == _expected()


def test_worker_killed_mid_map(start_fabric):
    fab = start_fabric(*SERVE_ARGS, "--workers", "2")
    killed = []

    def kill_a_worker():
        victim = fab.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    with load_apps.app.run():
        got = _map_with_faults({MAP_INPUTS // 3: kill_a_worker})
    assert killed and got == _expected()


def _fabric_backends(serve_pid: int, conn) -> list[int]:
    """PostgreSQL backend pids serving the control plane's connections (matched by client port)."""
    import psutil

    ports = [c.laddr.port for c in psutil.Process(serve_pid).net_connections(kind="tcp")
             if c.raddr and c.status == psutil.CONN_ESTABLISHED]
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()",
                        (ports,)).fetchall()
    return [row[0] for row in rows]


def test_postgresql_connections_dropped_mid_map(start_fabric, pg_url, capsys):
    import psycopg

    fab = start_fabric(*SERVE_ARGS, "--database", pg_url)
    dropped = []
    with psycopg.connect(pg_url, autocommit=True) as admin:
        def drop_connections():
            pids = _fabric_backends(fab.proc.pid, admin)
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            dropped.append(len(pids))

        with load_apps.app.run():
            got = _map_with_faults({MAP_INPUTS // 4: drop_connections, MAP_INPUTS * 3 // 4: drop_connections})
    with capsys.disabled():
        print(f"\ndropped the control plane's PostgreSQL connections twice ({dropped} backends)")
    assert dropped and all(dropped), "found no connection of the control plane to drop"
    assert got == _expected()
    assert fab.proc.poll() is None, fab.tail()
