"""bench/scheduler.py's simulated day, shortened: the adaptive idle window keeps machines below all-AWS on-demand."""
from __future__ import annotations

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_scheduler", os.path.join(ROOT, "bench", "scheduler.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_quarter_day_of_bursts_costs_less_than_on_demand_with_nothing_lost():
    bench = _bench()
    fixed = bench.simulated_day(hours=6.0, adaptive_idle=False)
    adaptive = bench.simulated_day(hours=6.0, adaptive_idle=True)
    assert fixed["lost"] == adaptive["lost"] == 0 and adaptive["completed"] == adaptive["submitted"]
    assert adaptive["running_at_end"] == 0
    assert adaptive["machines_usd"] < adaptive["baseline_usd"]
    assert adaptive["machines_usd"] < 0.75 * fixed["machines_usd"]
