"""When an idle launched machine is terminated: an idle window that adapts to each function's arrivals.

A machine that idles costs its price every second; terminating it and launching another when work
comes back costs the launch latency (a new machine is billed while it boots, and the work waits).
So an idle machine is kept only while keeping it is expected to cost less than relaunching:

* `L`: the provider's launch latency, measured (median of its recent launch-to-registration times).
* `gaps`: the function's recent inter-arrival gaps (arrivals closer than `merge_s` are one burst).
* `s`: seconds since the function's last arrival. Only gaps longer than `s` can still happen; each
  leaves `r = gap - s` seconds until the next arrival. Arrivals run a little late (jitter, the
  control plane's tick): a gap counts as `gap + max(merge_s, 10% of gap)`.
* Holding the machine `h` more seconds costs, per remaining gap, `r` if the work comes back
  within `h` (idle until then, no relaunch) and `h + L` if it does not (idle, then a relaunch).
  Terminating now costs `L`. The machine is kept when some `h` up to what is left of the
  `--idle-window` has a lower mean cost than `L`; otherwise it is terminated now.

With fewer than `min_samples` gaps (a new function) the machine is kept for `L` seconds, the
break-even of renting against buying (never more than twice the best choice in hindsight). A
machine that costs nothing (the local provider at price 0) is kept for the whole window. The
`--idle-window` always bounds how long any machine idles.
"""
from __future__ import annotations

import collections
import statistics
from dataclasses import dataclass

__all__ = ["IdlePolicy", "Verdict"]

LATE = 0.1  # an arrival this fraction of its gap late still counts as that gap


@dataclass(frozen=True)
class Verdict:
    """Keep the idle machine or terminate it, and why (shown in the app log on termination)."""

    keep: bool
    reason: str


class IdlePolicy:
    """Per-function arrival history and per-provider launch latency, and the keep-or-terminate rule.

    `max_idle_s`: the upper bound (`--idle-window`). `adaptive=False` keeps every idle machine for
    the whole window (the fixed rule). `default_latency_s` stands in until a provider has a
    measured launch.
    """

    def __init__(self, max_idle_s: float, *, adaptive: bool = True, merge_s: float = 1.0, history: int = 32,
                 min_samples: int = 2, default_latency_s: float = 120.0, latency_history: int = 16):
        self.max_idle_s, self.adaptive = max_idle_s, adaptive
        self.merge_s, self.min_samples, self.default_latency_s = merge_s, min_samples, default_latency_s
        self._history, self._latency_history = history, latency_history
        self._last_arrival: dict[str, float] = {}
        self._gaps: dict[str, collections.deque] = {}
        self._latencies: dict[str, collections.deque] = {}

    # ---------------------------------------------------------------- what is observed
    def arrival(self, pool: str, now: float) -> None:
        """Inputs for `pool` (a function id) arrived at `now`."""
        last = self._last_arrival.get(pool)
        if last is not None and now - last >= self.merge_s:
            self._gaps.setdefault(pool, collections.deque(maxlen=self._history)).append(now - last)
        if last is None or now > last:
            self._last_arrival[pool] = now

    def launched(self, provider: str, seconds: float) -> None:
        """A machine of `provider` registered its worker `seconds` after it was launched."""
        if seconds >= 0:
            self._latencies.setdefault(provider, collections.deque(maxlen=self._latency_history)).append(seconds)

    def latency(self, provider: str) -> float:
        """The provider's launch latency: the median of its recent measured launches."""
        samples = self._latencies.get(provider)
        return statistics.median(samples) if samples else self.default_latency_s

    def gaps(self, pool: str) -> list[float]:
        return list(self._gaps.get(pool, ()))

    # ---------------------------------------------------------------------- the rule
    def verdict(self, *, pool: str, provider: str, price_per_hour: float, idle_s: float, now: float) -> Verdict:
        """Whether a machine of `provider` at `price_per_hour`, launched for `pool` and idle for
        `idle_s` seconds, should be kept now."""
        if idle_s >= self.max_idle_s:
            return Verdict(False, f"idle for {idle_s:.0f}s, the --idle-window of {self.max_idle_s:g}s")
        if not self.adaptive or price_per_hour <= 0:
            return Verdict(True, "")
        launch = self.latency(provider)
        gaps = self._gaps.get(pool, ())
        if len(gaps) < self.min_samples:
            if idle_s < launch:
                return Verdict(True, "")
            return Verdict(False, f"idle for {idle_s:.0f}s, as long as a relaunch takes ({launch:.0f}s), "
                                  "and this function has no arrival pattern yet")
        since = now - self._last_arrival.get(pool, now)
        remaining = sorted(r for g in gaps if (r := g + max(self.merge_s, LATE * g) - since) > 0)
        left = self.max_idle_s - idle_s
        if not remaining:
            return Verdict(False, f"idle for {idle_s:.0f}s; {since:.0f}s since the last arrival is longer than "
                                  f"any of the last {len(gaps)} gaps")
        best_h, best_cost = 0.0, launch
        n = len(remaining)
        for i, h in enumerate(remaining):
            if h > left:
                break
            # Gaps 0..i come back within h (idle until then); the rest idle h and then relaunch.
            cost = (sum(remaining[:i + 1]) + (n - i - 1) * (h + launch)) / n
            if cost < best_cost:
                best_h, best_cost = h, cost
        if best_h > 0:
            return Verdict(True, "")
        soonest = remaining[0]
        return Verdict(False, f"idle for {idle_s:.0f}s; the next arrival is expected in {soonest:.0f}s or later "
                              f"(last {len(gaps)} gaps), and idling that long costs more than a {launch:.0f}s relaunch")
