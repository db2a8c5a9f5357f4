"""Scheduler bench: placement decisions per second, memory per queued input, and a simulated day of spot preemptions.

Run: python bench/scheduler.py [--quick]
"""
from __future__ import annotations

import argparse
import collections
import gc
import random
import sys
import time
import tracemalloc

from gpu_fabric.control_plane.scheduler import GpuSlot, Scheduler, WorkerCapacity
from gpu_fabric.proto import common_pb2
from gpu_fabric.providers import load_catalog


def _spec(name, gpu, count=1, **kw):
    return common_pb2.FunctionSpec(name=name, gpus=[common_pb2.GpuRequest(type=gpu, count=count)], cpu=2, memory_mb=8192, **kw)


def placement_rate(workers: int = 10_000, inputs: int = 100_000, seed: int = 0) -> dict:
    """`workers` registered workers across three clouds' instance types; place `inputs` containers,
    releasing the oldest placement whenever the fabric is full (steady state), and time it."""
    rng = random.Random(seed)
    catalog = load_catalog()
    offerings = [o for o in catalog.offerings if o.cloud in ("aws", "gcp", "oci")]
    scheduler = Scheduler()
    for i in range(workers):
        o = rng.choice(offerings)
        scheduler.add_worker(WorkerCapacity(f"{o.cloud}-{i}", o.cpu, int(o.memory_gb * 1024),
                                            [GpuSlot(g, o.gpu) for g in range(o.gpu_count)]))
    specs = [_spec("t4", "T4"), _spec("l4", "L4"), _spec("a10g", "A10G"), _spec("h100", "H100"),
             _spec("a100", "A100"), _spec("h100x8", "H100!", 8), _spec("fallback", "B200"),
             common_pb2.FunctionSpec(name="l40s-or-l4", cpu=2, memory_mb=8192,
                                     gpus=[common_pb2.GpuRequest(type="L40S", count=1), common_pb2.GpuRequest(type="L4", count=1)])]
    queue = [rng.choice(specs) for _ in range(inputs)]
    placed: collections.deque = collections.deque()
    decisions = failures = 0
    start = time.perf_counter()
    for spec in queue:
        placement, _ = scheduler.place(spec)
        decisions += 1
        if placement is None:
            failures += 1
            if placed:  # the oldest container finishes; its room goes back
                worker, old = placed.popleft()
                scheduler.release(worker, old)
            continue
        worker = scheduler.index.workers[placement.worker_id]
        scheduler.claim(worker, placement)
        placed.append((worker, placement))
    elapsed = time.perf_counter() - start
    return {"workers": workers, "inputs": inputs, "decisions": decisions, "no_room": failures,
            "seconds": elapsed, "decisions_per_s": decisions / elapsed}


def memory_per_queued_input(n: int = 100_000) -> dict:
    """Bytes the control plane holds per queued input: its InputRec, proto, payload and queue/map entries."""
    from gpu_fabric.control_plane._records import InputRec

    payload_args = b"\x80\x05" + b"x" * 60  # a small pickled (args, kwargs)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    inputs, queue, pending = {}, collections.deque(), set()
    for i in range(n):
        proto = common_pb2.FunctionInput(args=payload_args, python_version="3.11")
        rec = InputRec(f"in-{i:020d}", "fc-00000000000000000000", "fu-00000000000000000000", i, proto, proto.SerializeToString())
        inputs[rec.input_id] = rec
        queue.append(rec.input_id)
        pending.add(rec.input_id)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"inputs": n, "bytes_per_input": used / n, "payload_bytes": len(payload_args)}


def simulated_day(hours: float = 24.0, step_s: float = 10.0, preemptions_per_hour: float = 0.15, seed: int = 1,
                  adaptive_idle: bool = True, idle_window_s: float = 300.0) -> dict:
    """Three simulated clouds with moving spot prices and preemptions; a day of bursty work.

    `adaptive_idle`: idle machines go by the adaptive rule (control_plane/_idle.py) bounded by
    `idle_window_s`; False keeps each for the whole fixed window. Same seed, same work: the two
    runs differ only in that rule."""
    from gpu_fabric.control_plane.scheduler._simulation import SimFleet
    from gpu_fabric.providers.simulated import SimClock, SimulatedProvider

    catalog = load_catalog()
    clock = SimClock()
    clouds = [SimulatedProvider(name, catalog.for_cloud(name), clock=clock, preemptions_per_hour=preemptions_per_hour,
                                spot_swing=0.3, launch_latency_s=90.0, seed=seed + i,
                                default_capacity=40) for i, name in enumerate(("aws", "gcp", "oci"))]
    fleet = SimFleet(clock, clouds, idle_window_s=idle_window_s, scaledown_window_s=60.0, launch_timeout_s=900.0,
                     adaptive_idle=adaptive_idle)
    rng = random.Random(seed)
    fns = [fleet.add_function("embed", _spec("embed", "L4"), duration_s=20, app="search"),
           fleet.add_function("train", _spec("train", "A100", 8), duration_s=1800, app="research"),
           fleet.add_function("infer", _spec("infer", "H100"), duration_s=120, app="serving")]
    submitted = 0
    steps = int(hours * 3600 / step_s)
    for step in range(steps):
        t = step * step_s
        if t % 3600 == 0 and t < (hours - 3) * 3600:  # an hourly burst of work, none in the last hours
            for fn, n in zip(fns, (rng.randint(200, 600), rng.randint(0, 2), rng.randint(20, 80))):
                fleet.submit(fn, n)
                submitted += n
        fleet.step(step_s)
    for _ in range(int(6 * 3600 / 60)):  # drain whatever is left
        if not fleet.queued() and not fleet.running():
            break
        fleet.step(60.0)
    replay = fleet.ledger.replay(catalog, "aws")
    instance_usd = sum(usd for _, _, usd in fleet.ledger.totals("workspace", kind="instance"))
    left = fleet.queued() + fleet.running()
    return {
        "submitted": submitted, "completed": fleet.completed, "lost": submitted - fleet.completed - left,
        "still_queued": left, "preemptions": fleet.preempted, "requeued": fleet.requeued,
        "containers_usd": replay.actual_usd, "machines_usd": instance_usd, "baseline_usd": replay.baseline_usd,
        "saving_vs_containers": replay.saving,
        "saving_vs_machines": 1 - instance_usd / replay.baseline_usd if replay.baseline_usd else 0.0,
        "launches": sum(len(c.launch_calls) for c in clouds), "running_at_end": sum(len(c.running) for c in clouds),
        "idle_usd": idle_usd(fleet.ledger), "waited_s": fleet.wait_s,
    }


def idle_usd(ledger) -> float:
    """Machine cost no container used: each machine's charge less its containers' shares."""
    machines = sum(c.usd for c in ledger.charges() if c.kind == "instance")
    on_machines = sum(c.usd for c in ledger.charges() if c.kind == "container" and c.host_workspace)
    return machines - on_machines


def _versus(saving: float) -> str:
    return f"{abs(saving):.0%} {'below' if saving >= 0 else 'above'} it"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test)")
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    rate = placement_rate(10_000 // scale, 100_000 // scale)
    print(f"placement: {rate['decisions']:,} decisions on {rate['workers']:,} workers in {rate['seconds']:.2f}s "
          f"= {rate['decisions_per_s']:,.0f}/s ({rate['no_room']:,} found no room) [target >= 50,000/s]")
    mem = memory_per_queued_input(100_000 // scale)
    print(f"memory: {mem['bytes_per_input']:,.0f} bytes per queued input (payload {mem['payload_bytes']} bytes)")
    hours = 24.0 / (4 if args.quick else 1)
    days = {rule: simulated_day(hours=hours, adaptive_idle=rule == "adaptive") for rule in ("fixed", "adaptive")}
    print(f"simulated day ({hours:g} h, same work and seed; idle machines: fixed 300 s window vs adaptive, at most 300 s):")
    for rule, day in days.items():
        print(f"  {rule:8} {day['submitted']:,} inputs, {day['completed']:,} done, lost {day['lost']}, "
              f"{day['preemptions']} preemptions ({day['requeued']} re-queued), {day['launches']} launches, "
              f"{day['running_at_end']} left running, mean wait for a container {day['waited_s']:.0f}s")
        print(f"  {'':8} machines ${day['machines_usd']:,.2f} (of it unused by containers: booting, idle, empty GPUs ${day['idle_usd']:,.2f}), GPU containers "
              f"${day['containers_usd']:,.2f}, vs ${day['baseline_usd']:,.2f} for the same GPU-seconds on aws on-demand: "
              f"machines {_versus(day['saving_vs_machines'])}, container time {_versus(day['saving_vs_containers'])}")
    day = days["adaptive"]
    ok = (rate["decisions_per_s"] >= 50_000 and all(d["lost"] == 0 for d in days.values())
          and day["machines_usd"] < day["baseline_usd"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
