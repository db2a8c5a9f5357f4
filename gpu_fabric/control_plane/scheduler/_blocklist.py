"""Places that recently failed to launch (zone, region or cloud), skipped until their block expires."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gpu_fabric.providers.base import LaunchError, Market

# How long a failure keeps a place out of the running, by kind: capacity comes back within
# minutes, quotas and credentials need a person.
DEFAULT_TTL_S = {
    "capacity": 600.0, "quota": 3600.0, "auth": 3600.0, "invalid": 3600.0, "transient": 60.0,
    "no-register": 900.0,
}


@dataclass(frozen=True)
class Block:
    """One blocked place. Empty fields match anything (a cloud-level block has only `cloud`)."""

    cloud: str
    region: str
    zone: str
    instance_type: str
    market: str
    kind: str
    reason: str
    until: float

    @property
    def scope(self) -> str:
        return "zone" if self.zone else "region" if self.region else "cloud"

    def describe(self, now: float) -> str:
        where = "/".join(p for p in (self.cloud, self.region, self.zone) if p)
        what = " ".join(p for p in (self.instance_type, self.market) if p)
        return f"{where}{' ' + what if what else ''} blocked ({self.kind}, {max(0.0, self.until - now) / 60:.0f}m left): {self.reason}"


class Blocklist:
    """Failed places keyed by (cloud, region, zone, instance_type, market), as SkyPilot's failover does.

    A zone-level capacity failure blocks that instance type and market in that zone; a quota
    failure blocks the region for that market; an auth failure blocks the whole cloud.
    """

    def __init__(self, clock: Callable[[], float], ttl_s: dict | None = None):
        self.clock = clock
        self.ttl_s = dict(DEFAULT_TTL_S, **(ttl_s or {}))
        self._blocks: dict[tuple, Block] = {}

    def add(self, *, cloud: str, region: str = "", zone: str = "", instance_type: str = "", market: str = "",
            kind: str, reason: str) -> Block:
        block = Block(cloud, region, zone, instance_type, market, kind, reason, self.clock() + self.ttl_s.get(kind, 600.0))
        self._blocks[(cloud, region, zone, instance_type, market)] = block
        return block

    def add_error(self, err: LaunchError) -> Block:
        """Block the place `err` names, at the level its scope says."""
        market = err.market.value if isinstance(err.market, Market) else (err.market or "")
        reason = str(err)
        if err.scope == "cloud":
            return self.add(cloud=err.cloud, kind=err.kind, reason=reason)
        if err.scope == "region":
            # Quotas are counted per market (spot and on-demand limits differ); a bad image or
            # an unopened region fails every market.
            return self.add(cloud=err.cloud, region=err.region, market=market if err.kind == "quota" else "",
                            kind=err.kind, reason=reason)
        return self.add(cloud=err.cloud, region=err.region, zone=err.zone, instance_type=err.instance_type,
                        market=market, kind=err.kind, reason=reason)

    def blocked(self, cloud: str, region: str, zone: str, instance_type: str, market: str) -> Block | None:
        """The block that covers this place, if any (expired blocks are dropped on the way)."""
        if not self._blocks:
            return None
        now = self.clock()
        for key in ((cloud, "", "", "", ""), (cloud, region, "", "", ""), (cloud, region, "", "", market),
                    (cloud, region, zone, "", ""), (cloud, region, zone, instance_type, market)):
            block = self._blocks.get(key)
            if block is not None:
                if block.until > now:
                    return block
                del self._blocks[key]
        return None

    def active(self) -> list[Block]:
        now = self.clock()
        return [b for b in self._blocks.values() if b.until > now]

    def clear(self, cloud: str | None = None) -> None:
        """Forget blocks (of one cloud), e.g. after its credentials were fixed."""
        self._blocks = {k: b for k, b in self._blocks.items() if cloud is not None and b.cloud != cloud}
