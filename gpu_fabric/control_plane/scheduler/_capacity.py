"""New capacity for a request: offerings ranked by price, pins and blocks applied, and deploy-time checks."""
from __future__ import annotations

from dataclasses import dataclass

from gpu_fabric.providers.base import Market, Offering
from gpu_fabric.providers.catalog import Catalog, UnknownGpuType, load_catalog

from ._blocklist import Blocklist
from ._placement import resources_of


class Unsatisfiable(ValueError):
    """Raised at deploy time when no offering of any enabled provider can ever run the function;
    `constraint` names the one that ruled the last candidates out. Relax it, or enable a provider."""

    def __init__(self, message: str, constraint: str):
        super().__init__(message)
        self.constraint = constraint


@dataclass(frozen=True)
class Candidate:
    """One way to get capacity: an instance type in a zone on a market, and what it costs."""

    offering: Offering
    zone: str
    market: Market
    price: float  # USD per instance-hour
    slots: int  # containers of the request one instance holds
    request_index: int  # position of the GPU request in the user's list
    upgrade: bool  # a better GPU than asked for (only for upgradable requests)

    @property
    def gpu(self) -> str:
        return self.offering.gpu

    def describe(self) -> str:
        o = self.offering
        return (f"{o.cloud} {self.zone} {o.instance_type} ({o.gpu_count}x {o.gpu}, {self.market.value}) "
                f"at ${self.price:.2f}/h")


def _pinned(pins, *values: str) -> bool:
    return not pins or any(v in pins for v in values if v)


def slots_of(offering: Offering, count: int, cpu: float, memory_mb: int) -> int:
    """Containers needing `count` GPUs, `cpu` and `memory_mb` one instance of `offering` holds."""
    by_gpu = offering.gpu_count // count if count else 64
    return max(0, min(by_gpu, int(offering.cpu // max(cpu, 1e-9)), int(offering.memory_gb * 1024 // max(memory_mb, 1))))


def rank(spec, offerings: list[Offering], blocklist: Blocklist | None = None, *, demand: int = 1,
         catalog: Catalog | None = None) -> tuple[list[Candidate], list[str]]:
    """Candidates for new capacity, best first, and why others were skipped (blocks).

    Order: the user's GPU list first, then exact types before upgrades, then price per useful
    container (an 8-GPU machine only beats a 1-GPU one when there is work for its other GPUs).
    """
    catalog = catalog or load_catalog()
    cpu, memory = resources_of(spec)
    clouds, regions = set(spec.clouds), set(spec.regions)
    requests = list(spec.gpus) or [None]
    out: list[tuple[tuple, Candidate]] = []
    skipped: list[str] = []
    for i, request in enumerate(requests):
        if request is None:
            continue  # CPU-only functions run on workers that exist; they never launch GPU machines
        choice = catalog.resolve(request.type, request.count)
        for offering in offerings:
            if offering.gpu not in choice.types or not _pinned(clouds, offering.cloud):
                continue
            slots = slots_of(offering, choice.count, cpu, memory)
            if slots < 1:
                continue
            upgrade = offering.gpu not in choice.exact
            for market in (Market.SPOT, Market.ON_DEMAND):
                price = offering.price(market)
                if price is None or (market == Market.SPOT and spec.nonpreemptible):
                    continue
                effective = price / min(slots, max(1, demand))
                for zone in offering.zones:
                    if not _pinned(regions, offering.region, zone):
                        continue
                    if blocklist is not None:
                        block = blocklist.blocked(offering.cloud, offering.region, zone, offering.instance_type, market.value)
                        if block is not None:
                            skipped.append(block.describe(blocklist.clock()))
                            continue
                    out.append(((i, upgrade, effective, price), Candidate(offering, zone, market, price, slots, i, upgrade)))
    out.sort(key=lambda pair: pair[0])
    return [c for _, c in out], list(dict.fromkeys(skipped))


def check_satisfiable(spec, offerings: list[Offering], *, catalog: Catalog | None = None, function_name: str = "") -> None:
    """Raise Unsatisfiable (naming the constraint) when no offering could ever run `spec`;
    UnknownGpuType for a GPU type the catalog lacks."""
    catalog = catalog or load_catalog()
    if not spec.gpus:
        return
    cpu, memory = resources_of(spec)
    name = function_name or spec.name
    best: tuple[int, str, str] | None = None  # (how far the candidates got, constraint, message)
    for request in spec.gpus:
        choice = catalog.resolve(request.type, request.count)
        stages = [
            ("gpu", f"gpu={request.type!r}", lambda o: o.gpu in choice.types),
            ("clouds", f"clouds={sorted(spec.clouds)}", lambda o: _pinned(set(spec.clouds), o.cloud)),
            ("regions", f"regions={sorted(spec.regions)}", lambda o: _pinned(set(spec.regions), o.region, *o.zones)),
            ("count", f"{choice.count} GPUs per container", lambda o: o.gpu_count >= choice.count),
            ("resources", f"cpu={cpu:g}, memory={memory} MiB", lambda o: slots_of(o, choice.count, cpu, memory) >= 1),
            ("nonpreemptible", "nonpreemptible=True", lambda o: not spec.nonpreemptible or o.on_demand is not None),
        ]
        left = offerings
        for depth, (constraint, text, keep) in enumerate(stages):
            kept = [o for o in left if keep(o)]
            if not kept:
                where = sorted({f"{o.cloud}/{o.region}" for o in left})
                seen = f" (before it: {', '.join(where[:8])}{'...' if len(where) > 8 else ''})" if where else ""
                if constraint == "gpu":
                    seen = " (the enabled providers offer: " + ", ".join(sorted({o.gpu for o in offerings})) + ")" if offerings else " (no provider is enabled)"
                message = f"nothing can run {name}: no offering satisfies {text}{seen}"
                if best is None or depth > best[0]:
                    best = (depth, constraint, message)
                break
            left = kept
        else:
            return
    assert best is not None
    raise Unsatisfiable(best[2], best[1])


__all__ = ["Candidate", "Unsatisfiable", "UnknownGpuType", "check_satisfiable", "rank", "slots_of"]
