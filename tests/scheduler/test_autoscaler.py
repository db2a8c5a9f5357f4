"""The scheduler and autoscaler driving simulated clouds in simulated time (no sleeps)."""
from __future__ import annotations

import pytest

from gpu_fabric.control_plane._autoscaler import Budgets
from gpu_fabric.control_plane.scheduler._simulation import SimFleet
from gpu_fabric.proto import common_pb2
from gpu_fabric.providers import load_catalog
from gpu_fabric.providers.simulated import SimClock, SimulatedProvider


def _spec(*gpus, **kw):
    return common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type=t, count=n) for t, n in gpus], **kw)


def _cloud(name, clock, **kw):
    return SimulatedProvider(name, load_catalog().for_cloud(name), clock=clock, spot_swing=0.0, launch_latency_s=60, **kw)


def _run(fleet, seconds, dt=5.0):
    for _ in range(int(seconds / dt)):
        fleet.step(dt)


def test_scales_up_from_zero_on_the_cheapest_offering_then_back_to_zero():
    clock = SimClock()
    aws, gcp = _cloud("aws", clock), _cloud("gcp", clock)
    fleet = SimFleet(clock, [aws, gcp], idle_window_s=120, scaledown_window_s=30)
    fn = fleet.add_function("f", _spec(("L4", 1)), duration_s=10)
    fleet.submit(fn, 3)
    fleet.step(1)
    first = aws.launch_calls + gcp.launch_calls
    assert first, "nothing was launched for queued inputs"
    cheapest = min((o.spot for o in load_catalog().offerings if o.gpu == "L4" and o.gpu_count == 1))
    assert first[0].offering.spot == cheapest and first[0].market.value == "spot"
    _run(fleet, 200)
    assert fleet.completed == 3 and fleet.queued() == 0
    _run(fleet, 400)
    assert not fleet.workers and not aws.running and not gcp.running  # scaled to zero, nothing leaks
    assert any("launch" in line for line in fleet.logs)


def test_gpu_fallback_order_and_strict_versus_upgradable():
    clock = SimClock()
    # No H100 capacity anywhere on aws: "H100" upgrades to H200; "H100!" must wait.
    aws = _cloud("aws", clock, capacity={("", "", "p5.4xlarge", ""): 0, ("", "", "p5.48xlarge", ""): 0})
    fleet = SimFleet(clock, [aws])
    fn = fleet.add_function("up", _spec(("H100", 1)), duration_s=5)
    fleet.submit(fn, 1)
    _run(fleet, 10, dt=1)  # every H100 zone and market is tried (and blocked) before the upgrade
    assert aws.running and all(la.candidate.gpu == "H200" for la in fleet.autoscaler.launches.values())
    assert {r.offering.gpu for r in aws.launch_calls[:-1]} == {"H100"}

    clock2 = SimClock()
    aws2 = _cloud("aws", clock2, capacity={("", "", "p5.4xlarge", ""): 0, ("", "", "p5.48xlarge", ""): 0})
    strict = SimFleet(clock2, [aws2])
    sfn = strict.add_function("strict", _spec(("H100!", 1)), duration_s=5)
    strict.submit(sfn, 1)
    _run(strict, 10, dt=1)
    assert not aws2.running and any("no capacity" in line for line in strict.logs)

    # A fallback list is tried in order: B200 first, then L4.
    clock3 = SimClock()
    aws3 = _cloud("aws", clock3)
    fb = SimFleet(clock3, [aws3])
    ffn = fb.add_function("fb", _spec(("B200", 1), ("L4", 1)), duration_s=5)
    fb.submit(ffn, 1)
    fb.step(1)
    assert aws3.launch_calls[0].offering.gpu == "B200"


def test_pins_and_nonpreemptible():
    clock = SimClock()
    aws, gcp = _cloud("aws", clock), _cloud("gcp", clock)
    fleet = SimFleet(clock, [aws, gcp])
    fn = fleet.add_function("f", _spec(("A100-80GB", 1), clouds=["gcp"], regions=["europe-west4"], nonpreemptible=True), duration_s=5)
    fleet.submit(fn, 1)
    fleet.step(1)
    (req,) = gcp.launch_calls
    assert not aws.launch_calls
    assert req.offering.region == "europe-west4" and req.market.value == "on-demand"


def test_failover_across_zone_region_and_cloud():
    clock = SimClock()
    zones = load_catalog().for_cloud("aws", ["us-east-1"])[0].zones
    # aws us-east-1: every zone out of g6.xlarge spot; us-west-2: spot quota 0; gcp: bad credentials at launch.
    capacity = {("us-east-1", z, "g6.xlarge", "spot"): 0 for z in zones}
    aws = _cloud("aws", clock, capacity=capacity, quota={("us-west-2", "spot"): 0, ("eu-west-1", "spot"): 0})
    gcp = _cloud("gcp", clock)
    fleet = SimFleet(clock, [aws, gcp])
    gcp.credentials_ok = False  # rejected at launch time, after the availability check passed
    fleet.autoscaler.check_providers(force=True)
    gcp.credentials_ok = False
    fleet.autoscaler.availability["gcp"] = type(fleet.autoscaler.availability["aws"])(True)
    fn = fleet.add_function("f", _spec(("L4", 1)), duration_s=5)
    fleet.submit(fn, 1)
    fleet.step(1)
    tried = [(r.offering.cloud, r.zone, r.market.value) for r in aws.launch_calls + gcp.launch_calls]
    blocks = {(b.scope, b.cloud, b.region) for b in fleet.scheduler.blocklist.active()}
    assert ("zone", "aws", "us-east-1") in blocks and ("region", "aws", "us-west-2") in blocks
    assert ("cloud", "gcp", "") in blocks and not fleet.autoscaler.availability["gcp"].enabled
    # It ended on a place that works: aws on-demand (spot was out everywhere it was tried).
    assert len(aws.running) == 1 and next(iter(aws.running.values())).instance.market.value == "on-demand"
    assert len([t for t in tried if t[0] == "gcp"]) == 1, "a cloud-level block stops further tries there"
    assert any(line.startswith("scheduler: failover") for line in fleet.logs)


def test_worker_that_never_registers_is_terminated_and_placement_retried():
    clock = SimClock()
    aws = _cloud("aws", clock)
    fleet = SimFleet(clock, [aws], launch_timeout_s=300)
    fn = fleet.add_function("f", _spec(("T4", 1)), duration_s=5)
    first_zone = fleet.scheduler.rank(fn.spec, fleet.autoscaler.offerings())[0][0].zone  # the cheapest place
    aws.never_registers = {first_zone}
    fleet.submit(fn, 1)
    fleet.step(1)
    assert aws.launch_calls[0].zone == first_zone
    _run(fleet, 420)
    assert aws.terminated, "the silent machine was not terminated"
    assert aws.launch_calls[1].zone != first_zone
    assert fleet.completed == 1
    assert any("did not register" in line for line in fleet.logs)


def test_budget_stop_keeps_inputs_queued_and_says_so():
    clock = SimClock()
    aws = _cloud("aws", clock)
    fleet = SimFleet(clock, [aws], budgets=Budgets(total=0.1), idle_window_s=10_000, max_launches_per_tick=1)
    fn = fleet.add_function("f", _spec(("H100", 8)), duration_s=3600)
    fleet.submit(fn, 3)
    _run(fleet, 900, dt=30)
    launched = len(aws.launch_calls)
    assert launched == 1 and fleet.ledger.spend() >= 0.1
    _run(fleet, 900, dt=30)
    assert len(aws.launch_calls) == launched  # stopped launching
    assert fleet.queued() + fleet.running() + fleet.completed == 3  # nothing dropped
    assert sum("budget" in line for line in fleet.logs) == 1


def test_a_disabled_provider_says_why_and_the_others_keep_working():
    clock = SimClock()
    aws, gcp = _cloud("aws", clock, credentials_ok=False), _cloud("gcp", clock)
    fleet = SimFleet(clock, [aws, gcp])
    assert "credentials" in fleet.autoscaler.check_providers(force=True)["aws"].reason
    fn = fleet.add_function("f", _spec(("T4", 1)), duration_s=5)
    fleet.submit(fn, 1)
    fleet.step(1)
    assert gcp.launch_calls and not aws.launch_calls


def test_join_tokens_admit_only_live_launches():
    clock = SimClock()
    aws = _cloud("aws", clock)
    fleet = SimFleet(clock, [aws], join_token_ttl_s=600)
    fn = fleet.add_function("f", _spec(("T4", 1)), duration_s=5)
    fleet.submit(fn, 1)
    fleet.step(1)
    (launch,) = fleet.autoscaler.launches.values()
    assert fleet.autoscaler.allows("Bearer " + launch.token)
    forged = launch.token[:-1] + ("1" if launch.token[-1] == "0" else "0")
    assert not fleet.autoscaler.allows("Bearer " + forged)
    assert not fleet.autoscaler.allows("Bearer gfj1.nope.1.x")
    fleet.autoscaler.shutdown()
    assert not fleet.autoscaler.allows("Bearer " + launch.token)


@pytest.mark.parametrize("n", [1, 40])
def test_a_big_machine_wins_only_when_there_is_work_for_it(n):
    from gpu_fabric.providers.base import Offering

    clock = SimClock()
    small = Offering("sim", "r1", ("r1a",), "one-gpu", "A10G", 1, 8, 32, 1.0, None)
    big = Offering("sim", "r1", ("r1a",), "eight-gpu", "A10G", 8, 64, 256, 6.0, None)  # cheaper per GPU
    sim = SimulatedProvider("sim", [small, big], clock=clock)
    fleet = SimFleet(clock, [sim])
    fn = fleet.add_function("f", _spec(("A10G", 1)), duration_s=30)
    fleet.submit(fn, n)
    fleet.step(1)
    # 40 queued inputs of ~60 s drain in the 5-minute target with 8 containers: one 8-GPU machine.
    assert [r.offering.instance_type for r in sim.launch_calls] == (["one-gpu"] if n == 1 else ["eight-gpu"])


def test_a_workspace_at_its_budget_stops_launching_for_it_only():
    clock = SimClock()
    aws = _cloud("aws", clock)
    fleet = SimFleet(clock, [aws], budgets=Budgets(workspaces={"ml": 0.5}), idle_window_s=10_000, max_launches_per_tick=1)
    train = fleet.add_function("train", _spec(("H100", 8)), duration_s=3600, app="trainer", workspace="ml")
    evals = fleet.add_function("evals", _spec(("H100", 8)), duration_s=3600, app="evaluator", workspace="ml")
    serve = fleet.add_function("serve", _spec(("H100", 8)), duration_s=3600, app="server", workspace="web")
    fleet.submit(train, 2)
    _run(fleet, 900, dt=30)  # one 8x H100 machine for ml, past $0.50 by now
    assert fleet.ledger.spend(workspace="ml") >= 0.5
    ml_launches = len(aws.launch_calls)
    fleet.submit(train, 2)
    fleet.submit(evals, 2)
    fleet.submit(serve, 2)
    _run(fleet, 900, dt=30)
    launched_for = [r.labels["gpufabric-app"] for r in aws.launch_calls[ml_launches:]]
    assert launched_for and set(launched_for) == {"ap-server"}  # web goes on; ml waits
    budget_lines = [line for line in fleet.logs if "budget" in line]
    assert len(budget_lines) == 2, budget_lines  # one event per app of the workspace (trainer, evaluator)
    assert all("workspace 'ml'" in line and "--workspace-budget ml=USD" in line for line in budget_lines)
    assert len(train.queue) + len(evals.queue) >= 4 - 1  # waiting, not dropped
    assert fleet.queued() + fleet.running() + fleet.completed == 8


def test_an_app_budget_counts_each_workspace_on_its_own():
    clock = SimClock()
    aws = _cloud("aws", clock)
    fleet = SimFleet(clock, [aws], budgets=Budgets(apps={"trainer": 0.5}), idle_window_s=10_000, max_launches_per_tick=1)
    mine = fleet.add_function("train-a", _spec(("H100", 8)), duration_s=3600, app="trainer", workspace="a",
                              app_id="ap-a-trainer")
    theirs = fleet.add_function("train-b", _spec(("H100", 8)), duration_s=3600, app="trainer", workspace="b",
                                app_id="ap-b-trainer")
    fleet.submit(mine, 2)
    _run(fleet, 900, dt=30)
    assert fleet.ledger.spend(app="trainer", workspace="a") >= 0.5 > fleet.ledger.spend(app="trainer", workspace="b")
    before = len(aws.launch_calls)
    fleet.submit(mine, 2)
    fleet.submit(theirs, 2)
    _run(fleet, 900, dt=30)
    launched_for = [r.labels["gpufabric-app"] for r in aws.launch_calls[before:]]
    assert launched_for and set(launched_for) == {"ap-b-trainer"}  # b's "trainer" is another app
    budget_lines = [line for line in fleet.logs if "budget" in line]
    assert len(budget_lines) == 1 and "app 'trainer' of workspace 'a'" in budget_lines[0], budget_lines


def test_workspace_spend_is_its_containers_plus_the_idle_rest_of_its_machines():
    from gpu_fabric.providers.base import Offering

    clock = SimClock()
    box = Offering("sim", "r1", ("r1a",), "two-gpu", "L4", 2, 16, 64, 3600.0, None)  # $1 a second
    sim = SimulatedProvider("sim", [box], clock=clock, launch_latency_s=0)
    fleet = SimFleet(clock, [sim], idle_window_s=10_000, scaledown_window_s=10_000)
    mine = fleet.add_function("mine", _spec(("L4", 1)), duration_s=100, app="a", workspace="ws-a")
    fleet.submit(mine, 1)
    fleet.step(1)  # launched (and booted: no latency) for ws-a
    fleet.step(1)  # registered; a container of ws-a holds one of its two GPUs
    theirs = fleet.add_function("theirs", _spec(("L4", 1)), duration_s=100, app="b", workspace="ws-b")
    fleet.submit(theirs, 1)
    fleet.step(1)  # placed on ws-a's machine: the second GPU
    clock.advance(10)
    # ws-b pays its container's share ($0.50/s); ws-a pays its own share and the rest of its machine.
    machine = fleet.ledger.spend()
    assert fleet.ledger.spend(workspace="ws-b") == pytest.approx(0.5 * 10)
    assert fleet.ledger.spend(workspace="ws-a") + fleet.ledger.spend(workspace="ws-b") == pytest.approx(machine, rel=1e-6)


def _hourly_bursts(adaptive: bool) -> tuple[SimFleet, SimulatedProvider]:
    clock = SimClock()
    aws = _cloud("aws", clock)
    fleet = SimFleet(clock, [aws], idle_window_s=300, scaledown_window_s=30, adaptive_idle=adaptive)
    fn = fleet.add_function("embed", _spec(("L4", 1)), duration_s=20)
    for _hour in range(6):
        fleet.submit(fn, 20)
        _run(fleet, 3600, dt=10)
    return fleet, aws


def test_adaptive_idle_window_releases_machines_between_hourly_bursts():
    fixed, _ = _hourly_bursts(adaptive=False)
    adaptive, aws = _hourly_bursts(adaptive=True)
    assert fixed.completed == adaptive.completed == 120 and not aws.running
    fixed_usd, adaptive_usd = fixed.ledger.spend(), adaptive.ledger.spend()
    assert adaptive_usd < 0.75 * fixed_usd, (adaptive_usd, fixed_usd)
    assert any("scale-down" in line and "costs more than" in line for line in adaptive.logs)


def test_adaptive_idle_window_keeps_machines_when_inputs_come_back_soon():
    clock = SimClock()
    aws = _cloud("aws", clock)  # 60 s launches
    fleet = SimFleet(clock, [aws], idle_window_s=300, scaledown_window_s=5)
    fn = fleet.add_function("f", _spec(("T4", 1)), duration_s=5)
    for _ in range(30):  # one input every 40 s: idling ~30 s beats a 60 s relaunch
        fleet.submit(fn, 1)
        _run(fleet, 40, dt=5)
    assert fleet.completed == 30
    assert len(aws.launch_calls) <= 2, [line for line in fleet.logs if "scale-down" in line]
