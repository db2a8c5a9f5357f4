"""Launches across a control-plane restart, in simulated time: adopted, billed, or terminated."""
from __future__ import annotations

import pytest

from gpu_fabric.control_plane._launches import ALIVE_KEY, restore
from gpu_fabric.control_plane._store import SQLiteStore
from gpu_fabric.control_plane.scheduler._simulation import SimFleet
from gpu_fabric.proto import common_pb2
from gpu_fabric.providers import LaunchRequest, Market, load_catalog, startup_script
from gpu_fabric.providers.simulated import SimClock, SimulatedProvider


def _spec(gpu, count=1):
    return common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type=gpu, count=count)])


def _fleet(clock, aws, store, **kw):
    """A control plane (SimFleet) over the cloud `aws` with its launches in `store`."""
    fleet = SimFleet(clock, [aws], store=store, idle_window_s=10_000, launch_timeout_s=600, **kw)
    fleet.add_function("serve", _spec("L4"), duration_s=600, app="web")
    fleet.add_function("batch", _spec("T4"), duration_s=600, app="web")
    fleet.add_function("train", _spec("A10G"), duration_s=600, app="ml")
    return fleet


def test_a_restart_adopts_running_machines_closes_vanished_ones_and_terminates_strays(tmp_path):
    clock = SimClock()
    aws = SimulatedProvider("aws", load_catalog().for_cloud("aws", ["us-east-1"]), clock=clock, spot_swing=0.0,
                            launch_latency_s=60)
    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    first = _fleet(clock, aws, store)
    serve, batch, train = (first.functions[f"fu-{name}"] for name in ("serve", "batch", "train"))
    first.submit(serve, 1)
    first.submit(batch, 1)
    first.step(1)
    serve_launches = dict(first.autoscaler.launches)  # one machine each
    for _ in range(20):  # the machines boot and register; their inputs run
        first.step(5)
    assert first.running() == 2 and len(serve_launches) == 2 and all(la.worker_id for la in serve_launches.values())
    aws.never_registers = {z for o in aws.offerings() for z in o.zones}  # train's machine will boot no worker
    first.submit(train, 1)
    first.step(1)
    (train_launch,) = [la for la in first.autoscaler.launches.values() if la.function_id == "fu-train"]
    rows = {row.launch_id: row for row in store.launches()}
    assert set(rows) == set(serve_launches) | {train_launch.launch_id}
    assert all(rows[i].state == "registered" and rows[i].worker_id for i in serve_launches)
    assert rows[train_launch.launch_id].state == "booting" and rows[train_launch.launch_id].instance_id
    assert rows[train_launch.launch_id].join_token_id.startswith(train_launch.launch_id + ".")
    assert train_launch.token not in repr(rows)  # only the token's id is stored, never the token

    # The control plane dies (no shutdown: its machines keep running). While it is down, one serve
    # machine vanishes (preempted) and someone launches a machine tagged with this fabric by hand.
    first.step(30)
    first.autoscaler.tick(first)
    alive_at = float(store.get_meta(ALIVE_KEY))
    store.close()
    (gone_id,) = [i for i, la in serve_launches.items() if la.function_id == "fu-batch"]
    (kept_id,) = [i for i, la in serve_launches.items() if la.function_id == "fu-serve"]
    gone_charge_from = serve_launches[gone_id].charged_from
    clock.advance(120)
    aws.terminate(serve_launches[gone_id].instance)
    offering = serve_launches[kept_id].candidate.offering
    stray = aws.launch(LaunchRequest(offering, offering.zones[0], Market.ON_DEMAND, "gf-unknown",
                                     startup_script(url="grpc://x:1", join_token="t", hostname="gf-unknown")))
    clock.advance(30)

    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    second = _fleet(clock, aws, store, rejoin_timeout_s=120)
    restored = restore(second.autoscaler, second)
    assert sorted(restored.adopted) == sorted([kept_id, train_launch.launch_id])
    assert restored.closed == [gone_id] and [i.instance_id for i in restored.terminated] == [stray.instance_id]
    assert stray.instance_id not in aws.running and gone_id not in {r.launch_id for r in store.launches()}
    # The vanished machine is billed up to when the control plane last saw it, once.
    (closed,) = [c for c in second.ledger.closed if c.kind == "instance"]
    assert closed.seconds == pytest.approx(alive_at - gone_charge_from)
    # The adopted ones go on being charged from their launch, not from the restart.
    kept = second.autoscaler.launches[kept_id]
    assert second.ledger.open["instance:" + kept_id].started_at == serve_launches[kept_id].charged_from
    assert kept.state == "rejoining" and second.autoscaler.allows("Bearer " + kept.token)

    # The engine re-queues the inputs of the old control plane; the surviving worker re-registers
    # with its old id and takes them: no machine is launched for serve.
    second.submit(second.functions["fu-serve"], 1)
    old_worker = serve_launches[kept_id].worker_id
    second.register(kept.instance, offering, worker_id=old_worker)
    assert kept.state == "registered" and kept.worker_id == old_worker
    launches_before = len(aws.launch_calls)
    second.step(1)
    assert second.running() >= 1
    assert all(r.offering.gpu != "L4" for r in aws.launch_calls[launches_before:])

    # The train machine never registered: its launch timeout runs from its launch, not the restart.
    timeout_at = train_launch.started_at + 600
    while clock() <= timeout_at:
        assert train_launch.launch_id in second.autoscaler.launches
        second.step(10)
    assert train_launch.launch_id not in second.autoscaler.launches
    assert train_launch.instance.instance_id not in aws.running
    assert any("did not register within 600s" in line for line in second.logs)
    store.close()


def test_an_adopted_machine_whose_worker_never_comes_back_is_terminated(tmp_path):
    clock = SimClock()
    aws = SimulatedProvider("aws", load_catalog().for_cloud("aws", ["us-east-1"]), clock=clock, launch_latency_s=10)
    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    first = _fleet(clock, aws, store)
    first.submit(first.functions["fu-serve"], 1)
    for _ in range(5):
        first.step(5)
    (launch,) = first.autoscaler.launches.values()
    assert launch.worker_id
    store.close()
    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    second = _fleet(clock, aws, store, rejoin_timeout_s=60)
    assert restore(second.autoscaler, second).adopted == [launch.launch_id]
    for _ in range(7):
        second.step(10)
    assert not second.autoscaler.launches and launch.instance.instance_id not in aws.running
    assert any("did not come back within 60s" in line for line in second.logs)
    assert store.launches() == []
    store.close()


def test_shutdown_terminates_or_keeps_machines_as_asked(tmp_path):
    clock = SimClock()
    aws = SimulatedProvider("aws", load_catalog().for_cloud("aws", ["us-east-1"]), clock=clock, launch_latency_s=10)
    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    fleet = _fleet(clock, aws, store)
    fleet.submit(fleet.functions["fu-serve"], 1)
    fleet.step(1)
    fleet.autoscaler.shutdown(keep_machines=True)
    assert aws.running and len(store.launches()) == 1
    fleet.autoscaler.shutdown()
    assert not aws.running and store.launches() == []
    store.close()


def test_a_launch_in_flight_when_the_control_plane_died_is_found_by_its_name(tmp_path):
    from gpu_fabric.control_plane._launches import to_row

    clock = SimClock()
    aws = SimulatedProvider("aws", load_catalog().for_cloud("aws", ["us-east-1"]), clock=clock, launch_latency_s=10)
    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    first = _fleet(clock, aws, store)
    first.submit(first.functions["fu-serve"], 1)
    first.submit(first.functions["fu-batch"], 1)
    first.step(1)
    made, lost = sorted(first.autoscaler.launches.values(), key=lambda la: la.function_id)
    # As if the control plane had died while both requests were in flight: rows without instance ids;
    # the cloud made one of the two machines, the other request never arrived.
    for launch in (made, lost):
        row = to_row(launch)
        row.instance_id, row.state, row.charged_from = "", "launching", 0.0
        store.put_launch(row)
    aws.terminate(lost.instance)
    store.close()
    store = SQLiteStore(str(tmp_path / "state.sqlite3"))
    second = _fleet(clock, aws, store)
    restored = restore(second.autoscaler, second)
    assert restored.adopted == [made.launch_id] and restored.closed == [lost.launch_id]
    adopted = second.autoscaler.launches[made.launch_id]
    assert adopted.state == "booting" and adopted.instance.instance_id == made.instance.instance_id
    assert [r.instance_id for r in store.launches()] == [made.instance.instance_id]
    assert not [c for c in second.ledger.closed if c.kind == "instance"]  # never charged: nothing to close
    store.close()
