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

__all__ = ["Catalog", "UnknownGpuType", "load_catalog", "parse_gpu", "GpuChoice", "refresh"]

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
        self.verification: dict = data.get("verification", {})  # how and when the prices were checked
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
def refresh(data: dict, clouds: list[str], *, gcp_api_key: str | None = None,
            oci_url: str = "") -> tuple[list, dict[str, str]]:
    """Refresh the prices of `clouds` in catalog `data` (in place) from their pricing APIs.

    Returns (RefreshResults of the clouds that succeeded, {cloud: error message} of those that did not).
    A cloud that fails changes nothing in `data`."""
    from . import pricing  # lazy: the SDKs behind it are only needed here

    results, errors = [], {}
    for cloud in clouds:
        try:
            if cloud == "aws":
                results.append(pricing.refresh_aws(data))
            elif cloud == "gcp":
                results.append(pricing.refresh_gcp(data, api_key=gcp_api_key))
            elif cloud == "oci":
                results.append(pricing.refresh_oci(data, url=oci_url))
            else:
                raise ValueError(f"unknown cloud {cloud!r}")
        except pricing.PricingError as exc:
            errors[cloud] = str(exc)
    return results, errors


def _record_refresh(data: dict, results: list, date: str) -> None:
    data["date"] = date
    refreshed = data.setdefault("refreshed", {})
    sources = data.setdefault("verification", {}).setdefault("sources", {})
    for result in results:
        refreshed[result.cloud] = {"date": date, "source": result.source}
        sources[result.key] = f"{result.source}, read by the refresh command on {date}"


def _report(results: list, errors: dict[str, str], threshold: float, out) -> None:
    large = []
    for result in results:
        print(f"{result.cloud}: {result.checked} offerings checked, {len(result.changes)} prices changed "
              f"({result.source})", file=out)
        for change in result.changes:
            print(f"  {change}", file=out)
            if change.is_large(threshold):
                large.append(change)
        for line in result.unpriced:
            print(f"  not priced, left as it was: {line}", file=out)
        for line in result.warnings:
            print(f"  warning: {line}", file=out)
    if large:
        print(f"LARGE CHANGES (more than {threshold:.0%}, or a price appearing/disappearing): review them", file=out)
        for change in large:
            print(f"  {change}", file=out)
    for cloud, message in errors.items():
        print(f"error: {message}", file=out)


def main(argv: list[str] | None = None) -> int:
    """`python -m gpu_fabric.providers.catalog show` | `refresh --cloud aws|gcp|oci|all [--out FILE]`."""
    import argparse
    import copy
    import datetime
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m gpu_fabric.providers.catalog")
    sub = parser.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("refresh", help="update prices from the clouds' pricing APIs "
                                         "(AWS Price List + spot prices, GCP Cloud Billing Catalog, OCI price list)")
    ref.add_argument("--cloud", choices=["aws", "gcp", "oci", "all"], default="all")
    ref.add_argument("--catalog", default="", help="catalog to read (default: $GPUFABRIC_CATALOG or the packaged one)")
    ref.add_argument("--out", default="", help="where to write (default: the catalog read)")
    ref.add_argument("--partial", action="store_true",
                     help="with --cloud all, write the clouds that succeeded even if others failed")
    ref.add_argument("--large-change", type=float, default=0.5, metavar="FRACTION",
                     help="report price moves larger than this (default 0.5 = 50%%)")
    ref.add_argument("--dry-run", action="store_true", help="report the changes, write nothing")
    ref.add_argument("--gcp-api-key", default=None, help="API key for the Cloud Billing Catalog "
                                                         "(default: $GPUFABRIC_GCP_API_KEY, else application-default credentials)")
    ref.add_argument("--oci-url", default="", help="OCI price list URL (default: $GPUFABRIC_OCI_PRICE_LIST_URL or Oracle's)")
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

    from .pricing import dump_catalog

    source = args.catalog or os.environ.get("GPUFABRIC_CATALOG") or str(DEFAULT_PATH)
    out = args.out or source
    with open(source) as f:
        original = json.load(f)
    data = copy.deepcopy(original)
    clouds = ["aws", "gcp", "oci"] if args.cloud == "all" else [args.cloud]
    today = datetime.date.today().isoformat()
    results, errors = refresh(data, clouds, gcp_api_key=args.gcp_api_key, oci_url=args.oci_url)
    _report(results, errors, args.large_change, sys.stdout)
    if errors and not (args.partial and results):
        # A cloud that failed must not leave half a refresh behind: nothing is written.
        hint = "" if len(clouds) == 1 else "; refresh the others alone (--cloud NAME) or pass --partial"
        print(f"{out} left unchanged{hint}")
        return 1
    if args.dry_run:
        print("dry run: nothing written")
        return 0
    if errors:  # --partial: keep only the clouds that succeeded
        data = _merge(original, data, [r.cloud for r in results])
    _record_refresh(data, results, today)
    text = dump_catalog(data)
    Catalog(json.loads(text))  # the result must still load before it replaces the file
    directory = os.path.dirname(os.path.abspath(out))
    with tempfile.NamedTemporaryFile("w", dir=directory, suffix=".json", delete=False) as f:
        f.write(text)
    os.replace(f.name, out)
    print(f"{sum(len(r.changes) for r in results)} prices updated in {out}")
    return 1 if errors else 0


def _merge(original: dict, refreshed: dict, clouds: list[str]) -> dict:
    """`original` with the offerings of `clouds` taken from `refreshed` (same order, same length)."""
    merged = json.loads(json.dumps(original))
    merged["offerings"] = [new if new["cloud"] in clouds else old
                           for old, new in zip(original["offerings"], refreshed["offerings"])]
    return merged


if __name__ == "__main__":
    sys.exit(main())
