"""The adaptive idle window: keep an idle machine only while that is expected to cost less than relaunching it."""
from __future__ import annotations

import pytest

from gpu_fabric.control_plane._idle import IdlePolicy


def _policy(gaps, *, latency=90.0, max_idle=300.0, **kw):
    """A policy that has seen arrivals `gaps` apart (the last one at t=0) and one launch of `latency` seconds."""
    policy = IdlePolicy(max_idle, **kw)
    t = -sum(gaps)
    policy.arrival("fn", t)
    for gap in gaps:
        t += gap
        policy.arrival("fn", t)
    policy.launched("aws", latency)
    return policy


def _keep(policy, *, idle, now, price=3.0):
    return policy.verdict(pool="fn", provider="aws", price_per_hour=price, idle_s=idle, now=now)


def test_without_an_arrival_pattern_a_machine_is_kept_as_long_as_a_relaunch_takes():
    policy = _policy([], latency=90)
    assert _keep(policy, idle=89, now=100).keep
    verdict = _keep(policy, idle=90, now=101)
    assert not verdict.keep and "no arrival pattern" in verdict.reason and "90s" in verdict.reason


def test_hourly_bursts_release_machines_as_soon_as_they_idle():
    policy = _policy([3600.0] * 6)
    verdict = _keep(policy, idle=1, now=400)  # the burst ended; the next is ~53 minutes away
    assert not verdict.keep and "costs more than a 90s relaunch" in verdict.reason


def test_short_gaps_keep_machines_for_the_next_arrival():
    policy = _policy([120.0] * 8)
    assert _keep(policy, idle=10, now=60).keep  # the next input is ~60 s away: idling 60 s beats a 90 s relaunch
    verdict = _keep(policy, idle=90, now=140)  # later than every gap seen (10% late included): the pattern broke
    assert not verdict.keep and "longer than any of the last 8 gaps" in verdict.reason


def test_a_gap_longer_than_a_relaunch_is_not_worth_waiting_for():
    policy = _policy([200.0] * 8, latency=60)
    assert not _keep(policy, idle=5, now=20).keep  # 180 s of idling against a 60 s relaunch


def test_mixed_gaps_weigh_the_likely_reuse_against_the_unlikely():
    policy = _policy([30.0, 3600.0] * 4)
    # 23 s left to the short gap (3 s late allowed): (23 + (23 + 90)) / 2 = 68 < 90 machine-seconds -> keep.
    assert _keep(policy, idle=5, now=10).keep
    # Mostly long gaps: 1 short in 8: (23 + 7 * 113) / 8 = 101.75 > 90 -> terminate.
    policy = _policy([30.0] + [3600.0] * 7)
    assert not _keep(policy, idle=5, now=10).keep


def test_the_idle_window_bounds_every_rule():
    policy = _policy([100.0] * 8, max_idle=100)
    assert _keep(policy, idle=30, now=40).keep  # the next arrival is 60 s away, within the 70 s left
    verdict = _keep(policy, idle=100, now=99)
    assert not verdict.keep and "--idle-window of 100s" in verdict.reason
    # The same machine with only 30 s of window left cannot wait the 60 s: released now.
    assert not _keep(_policy([100.0] * 8, max_idle=60), idle=30, now=40).keep
    # A hold that would run past the window is no reason to keep the machine now.
    policy = _policy([200.0] * 8, latency=300, max_idle=100)
    assert not _keep(policy, idle=10, now=20).keep


@pytest.mark.parametrize("kw, price", [({"adaptive": False}, 3.0), ({}, 0.0)])
def test_fixed_rule_and_free_machines_keep_the_whole_window(kw, price):
    policy = _policy([3600.0] * 6, **kw)
    assert _keep(policy, idle=299, now=400, price=price).keep
    assert not _keep(policy, idle=300, now=401, price=price).keep


def test_launch_latency_is_the_median_of_measured_launches_and_bursts_merge():
    policy = IdlePolicy(300, default_latency_s=120)
    assert policy.latency("gcp") == 120
    for seconds in (50, 60, 600):
        policy.launched("gcp", seconds)
    assert policy.latency("gcp") == 60  # one slow boot does not move it
    for t in (0.0, 0.2, 0.4, 100.0):  # a map's batches within a second are one arrival
        policy.arrival("fn", t)
    assert policy.gaps("fn") == [pytest.approx(99.6)]
