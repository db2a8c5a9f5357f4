"""The GPU catalog: GPU types, their upgrades, and instance offerings with prices per cloud and region."""
from __future__ import annotations

import difflib
import json
import os
import pathlib
import sys
from dataclasses import dataclass
from functools import lru_cache

from .base import Offering

__all__ = ["Catalog", "UnknownGpuType", "load_catalog", "parse_gpu", "GpuChoice"]

DEFAULT_PATH = pathlib.Path(__file__).with_name("catalog.json")


class UnknownGpuType(ValueError):
    """Raised for a GPU type the catalog does not know; names the valid ones and the closest match."""

    def __init__(self, name: str, valid: list[str]):
        close = difflib.get_close_matches(name.upper(), valid, n=1, cutoff=0.3)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown GPU type {name!r}{hint} Valid types: {', '.join(valid)} (or 'any'; add '!' to forbid upgrades, e.g. 'H100!')")
        self.name, self.valid, self.closest = name, valid, close[0] if close else ""


@dataclass(frozen=True)
class GpuChoice:
    """One entry of a function's GPU list: which types satisfy it, in preference order."""

    requested: str  # as written ("H100", "a100", "H100!")
    types: tuple[str, ...]  # catalog types that satisfy it: exact ones first, then upgrades
    exact: frozenset
    count: int
    strict: bool


class Catalog:
    """GPU types and offerings, loaded from a JSON data file (see catalog.json's date and sources)."""

    def __init__(self, data: dict):
        self.date = data.get("date", "")
        self.sources = data.get("sources", {})
        self.gpus: dict[str, dict] = data["gpus"]
        self.upgrades: dict[str, list[str]] = data.get("upgrades", {})
        self.gcp_accelerators: dict[str, str] = data.get("gcp_accelerators", {})
        self.offerings = [
            Offering(o["cloud"], o["region"], tuple(o["zones"]), o["instance_type"], o["gpu"], o["gpu_count"],
                     o["cpu"], o["memory_gb"], o["on_demand"], o.get("spot"), o.get("accelerator", ""))
            for o in data["offerings"]
        ]
        self._aliases: dict[str, list[str]] = {}
        for name, info in self.gpus.items():
            self._aliases.setdefault(name, []).append(name)
            for alias in info.get("aliases", ()):
                self._aliases.setdefault(alias, []).append(name)

    @property
    def gpu_types(self) -> list[str]:
        return list(self.gpus)

    def for_cloud(self, cloud: str, regions: list[str] | None = None) -> list[Offering]:
        """Offerings of one cloud, narrowed to `regions` when given."""
        return [o for o in self.offerings if o.cloud == cloud and (not regions or o.region in regions)]

    def resolve(self, requested: str, count: int = 1) -> GpuChoice:
        """Parse one GPU request ("H100", "h100!", "A100", "any"); raises UnknownGpuType."""
        name = requested.strip()
        strict = name.endswith("!")
        base = name.rstrip("!").strip().upper()
        if base in ("", "ANY"):
            return GpuChoice(requested, tuple(self.gpus), frozenset(self.gpus), max(1, count), strict)
        exact = self._aliases.get(base)
        if exact is None:
            raise UnknownGpuType(requested, list(self.gpus) + sorted(a for a in self._aliases if a not in self.gpus))
        types = list(exact)
        if not strict:
            for t in exact:
                types += [u for u in self.upgrades.get(t, ()) if u not in types]
        return GpuChoice(requested, tuple(types), frozenset(exact), max(1, count), strict)


@lru_cache(maxsize=4)
def _load(path: str, mtime: float) -> Catalog:
    with open(path) as f:
        return Catalog(json.load(f))


def load_catalog(path: str | os.PathLike | None = None) -> Catalog:
    """The catalog at `path` (default: the packaged catalog.json, or $GPUFABRIC_CATALOG)."""
    path = str(path or os.environ.get("GPUFABRIC_CATALOG") or DEFAULT_PATH)
    return _load(path, os.path.getmtime(path))


def parse_gpu(requested: str, count: int = 1, catalog: Catalog | None = None) -> GpuChoice:
    """`Catalog.resolve` on the default catalog."""
    return (catalog or load_catalog()).resolve(requested, count)


# ------------------------------------------------------------------ refresh
def refresh_aws(data: dict, session=None) -> int:
    """Update AWS prices in `data` in place: spot from EC2 spot price history (cheapest zone),
    on-demand from the Pricing API. Returns how many prices changed."""
    import boto3  # lazy: only the refresh command needs it

    session = session or boto3.session.Session()
    changed = 0
    by_region: dict[str, list[dict]] = {}
    for o in data["offerings"]:
        if o["cloud"] == "aws":
            by_region.setdefault(o["region"], []).append(o)
    pricing = session.client("pricing", region_name="us-east-1")  # the Pricing API lives in few regions
    for region, offers in by_region.items():
        ec2 = session.client("ec2", region_name=region)
        types = sorted({o["instance_type"] for o in offers})
        spot: dict[str, float] = {}
        paginator = ec2.get_paginator("describe_spot_price_history")
        for page in paginator.paginate(InstanceTypes=types, ProductDescriptions=["Linux/UNIX"], MaxResults=1000):
            for item in page["SpotPriceHistory"]:
                price = float(item["SpotPrice"])
                t = item["InstanceType"]
                spot[t] = min(price, spot.get(t, price))
        for o in offers:
            if o["instance_type"] in spot and spot[o["instance_type"]] != o.get("spot"):
                o["spot"] = round(spot[o["instance_type"]], 4)
                changed += 1
            od = _aws_on_demand(pricing, region, o["instance_type"])
            if od is not None and od != o["on_demand"]:
                o["on_demand"] = od
                changed += 1
    return changed


def _aws_on_demand(pricing, region: str, instance_type: str) -> float | None:
    filters = [
        {"Type": "TERM_MATCH", "Field": k, "Value": v}
        for k, v in (("instanceType", instance_type), ("regionCode", region), ("operatingSystem", "Linux"),
                     ("tenancy", "Shared"), ("preInstalledSw", "NA"), ("capacitystatus", "Used"))
    ]
    for raw in pricing.get_products(ServiceCode="AmazonEC2", Filters=filters, MaxResults=10).get("PriceList", []):
        product = json.loads(raw) if isinstance(raw, str) else raw
        for term in product.get("terms", {}).get("OnDemand", {}).values():
            for dim in term.get("priceDimensions", {}).values():
                usd = float(dim.get("pricePerUnit", {}).get("USD", 0) or 0)
                if usd > 0:
                    return round(usd, 4)
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m gpu_fabric.providers.catalog refresh --cloud aws [--out FILE]` | `show`."""
    import argparse
    import datetime

    parser = argparse.ArgumentParser(prog="python -m gpu_fabric.providers.catalog")
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("refresh", help="update prices from a cloud's pricing API (AWS has one the SDK reaches)")
    ref.add_argument("--cloud", choices=["aws"], default="aws")
    ref.add_argument("--out", default=str(DEFAULT_PATH))
    sub.add_parser("show", help="print the GPU types and the cheapest offering of each")
    args = parser.parse_args(argv)
    if args.command == "show":
        cat = load_catalog()
        print(f"catalog of {cat.date}")
        for gpu in cat.gpu_types:
            offers = [o for o in cat.offerings if o.gpu == gpu]
            best = min(offers, key=lambda o: o.on_demand / o.gpu_count)
            print(f"{gpu:10} {len(offers):3} offerings, from ${best.on_demand / best.gpu_count:.2f}/GPU-h ({best.cloud} {best.instance_type})")
        return 0
    with open(DEFAULT_PATH) as f:
        data = json.load(f)
    changed = refresh_aws(data)
    data["date"] = datetime.date.today().isoformat()
    with open(args.out, "w") as f:
        json.dump(data, f, indent=1)
    print(f"{changed} prices updated in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
