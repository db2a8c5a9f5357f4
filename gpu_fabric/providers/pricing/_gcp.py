"""GCP prices from the Cloud Billing Catalog API: Compute Engine's GPU, vCPU, memory and Local SSD SKUs.

Compute Engine prices a GPU VM as parts, each a SKU with its own regional price:

* the GPUs, per GPU-hour ("Nvidia Tesla T4 GPU running in Americas", "Nvidia H100 80GB GPU ...",
  "H200 141GB GPU ..."); some newer series sell a GPU together with its share of the VM
  ("A4 Nvidia B200 (1 gpu slice) running in ...");
* the machine family's vCPUs per hour and memory per GiB-hour ("A2 Instance Core running in ...",
  "G2 Instance Ram running in ...", "N1 Predefined Instance Core running in ...");
* Local SSD that some machine types bundle, per GiB-month ("SSD backed Local Storage").

Spot capacity has its own SKUs (usage type "Preemptible"; descriptions say "Spot Preemptible ..." or
"... attached to Spot Preemptible VMs"). A SKU names the regions it applies to in `service_regions`;
its description names a multi-region ("Americas") for display only, so regions come from the field.
"""
from __future__ import annotations

import logging
import os
import re

from ._common import PricingError, RefreshResult, mark_priced, set_price

__all__ = ["refresh_gcp", "COMPUTE_ENGINE_SERVICE", "SOURCE", "price_table", "offering_price"]

log = logging.getLogger("gpu_fabric.providers.pricing.gcp")

# The Compute Engine service in the Cloud Billing Catalog ("services/{service_id}").
COMPUTE_ENGINE_SERVICE = "services/6F81-5844-456A"
SOURCE = "Cloud Billing Catalog API (Compute Engine SKUs)"
API_KEY_ENV = "GPUFABRIC_GCP_API_KEY"
HOURS_PER_MONTH = 730  # Compute Engine's convention for turning monthly prices into hourly ones

# Instance-type prefix -> the machine family as its vCPU/memory SKUs name it (lowercase, no spaces).
_FAMILIES = (
    ("a3-highgpu", "a3"), ("a3-edgegpu", "a3"), ("a3-megagpu", "a3plus"), ("a3-ultragpu", "a3ultra"),
    ("a4-highgpu", "a4"), ("a2", "a2"), ("g2", "g2"), ("n1", "n1predefined"),
)
# Other spellings of the same families seen in SKU descriptions.
_FAMILY_ALIASES = {"a3high": "a3", "a3mega": "a3plus"}

# GPU SKU description -> GPU key; the first match wins, so the more specific patterns come first.
_GPU_PATTERNS = (
    ("A100-80GB", re.compile(r"\bA100 80GB\b", re.I)),
    ("A100-40GB", re.compile(r"\bA100\b", re.I)),
    ("H100-MEGA", re.compile(r"\bH100 80GB (Mega|Plus)\b", re.I)),
    ("H100", re.compile(r"\bH100\b", re.I)),
    ("H200", re.compile(r"\bH200\b", re.I)),
    ("B200", re.compile(r"\bB200\b", re.I)),
    ("L4", re.compile(r"\bL4\b", re.I)),
    ("T4", re.compile(r"\bT4\b", re.I)),
)
# Descriptions of SKUs that are not the plain on-demand/spot price of a predefined machine.
_EXCLUDED = re.compile(
    r"commit|reserv|sole tenancy|custom|extended|virtual workstation|\bDWS\b|calendar|flex|premium|"
    r"suspended|licen[cs]", re.I)

# Local SSD bundled with a machine type (GiB), which Compute Engine bills on top of the VM and GPUs.
# From the machine types' documentation ("Bundled Local SSD"); types not listed bundle none here.
LOCAL_SSD_GIB = {
    "a2-ultragpu-1g": 375, "a2-ultragpu-2g": 750, "a2-ultragpu-4g": 1500, "a2-ultragpu-8g": 3000,
    "a3-highgpu-1g": 750, "a3-highgpu-2g": 1500, "a3-highgpu-4g": 3000, "a3-highgpu-8g": 6000,
}

# What each kind of SKU must be priced in; anything else is skipped with a warning.
_UNITS = {"gpu": "h", "slice": "h", "core": "h", "ram": "GiBy.h", "lssd": "GiBy.mo"}


def family_of(instance_type: str) -> str:
    """The vCPU/memory SKU family of a machine type ("a2-highgpu-1g" -> "a2"), "" when unknown."""
    for prefix, family in _FAMILIES:
        if instance_type.startswith(prefix):
            return family
    return ""


def _gpu_key(offering: dict) -> str:
    if offering["instance_type"].startswith("a3-megagpu"):
        return "H100-MEGA"
    return offering["gpu"]


def _normalize(description: str) -> str:
    d = re.sub(r"\s+", " ", description).strip()
    d = re.sub(r"^(Spot )?Preemptible ", "", d, flags=re.I)
    d = re.sub(r" attached to (Spot )?Preemptible VMs", "", d, flags=re.I)
    return re.sub(r" running in .*$", "", d, flags=re.I)


def classify(sku) -> tuple[str, str] | None:
    """(kind, key) of a Compute Engine SKU this refresh uses, None for every other SKU.

    kind: "gpu" (key: GPU model), "slice" (a GPU sold with its share of the VM), "core"/"ram"
    (key: machine family), "lssd" (Local SSD)."""
    description = sku.description
    if sku.category.usage_type not in ("OnDemand", "Preemptible") or _EXCLUDED.search(description):
        return None
    d = _normalize(description)
    if sku.category.resource_family == "Storage":
        return ("lssd", "") if re.fullmatch(r"SSD backed Local Storage", d, re.I) else None
    if sku.category.resource_family != "Compute":
        return None
    if re.search(r"\bGPU\b", d, re.I):
        for key, pattern in _GPU_PATTERNS:
            if pattern.search(d):
                return ("slice" if re.search(r"gpu slice", d, re.I) else "gpu"), key
        return None
    m = re.fullmatch(r"(.+?) Instance (Core|Ram)", d, re.I)
    if m:
        family = re.sub(r"[\s-]", "", m.group(1)).lower()
        return ("core" if m.group(2).lower() == "core" else "ram"), _FAMILY_ALIASES.get(family, family)
    return None


def _unit_price(sku) -> tuple[str, float] | None:
    if not sku.pricing_info:
        return None
    expression = sku.pricing_info[0].pricing_expression
    rates = sorted(expression.tiered_rates, key=lambda r: r.start_usage_amount)
    if not rates:
        return None
    # A first tier priced at zero is a free allowance, not the rate.
    rate = rates[1] if len(rates) > 1 and _money(rates[0].unit_price) == 0 else rates[0]
    return expression.usage_unit, _money(rate.unit_price)


def _money(money) -> float:
    return int(money.units) + money.nanos / 1e9


def price_table(skus, regions: set[str] | None = None) -> tuple[dict, list[str]]:
    """{(kind, key, region, spot): USD per unit} from Compute Engine SKUs, and warnings.

    A key priced differently by two SKUs in one region is dropped (and warned about): guessing
    which applies would put a wrong price in the catalog, while a missing one is reported."""
    table: dict[tuple, float] = {}
    conflicts: set[tuple] = set()
    warnings: list[str] = []
    for sku in skus:
        kind_key = classify(sku)
        if kind_key is None:
            continue
        kind, key = kind_key
        unit_price = _unit_price(sku)
        if unit_price is None:
            continue
        unit, price = unit_price
        if unit != _UNITS[kind]:
            warnings.append(f"gcp: SKU {sku.sku_id} ({sku.description!r}) is priced per {unit!r}, "
                            f"expected {_UNITS[kind]!r}; skipped")
            continue
        if kind == "lssd":
            price /= HOURS_PER_MONTH
        spot = sku.category.usage_type == "Preemptible"
        for region in sku.service_regions:
            if regions is not None and region not in regions:
                continue
            slot = (kind, key, region, spot)
            if slot in table and abs(table[slot] - price) > 1e-9:
                conflicts.add(slot)
            table.setdefault(slot, price)
    for slot in sorted(conflicts):
        kind, key, region, spot = slot
        warnings.append(f"gcp: several {'spot' if spot else 'on-demand'} {kind} SKUs for {key or kind} in "
                        f"{region} with different prices; not used")
        del table[slot]
    return table, warnings


def offering_price(offering: dict, table: dict, spot: bool) -> tuple[float | None, str]:
    """Hourly price of a catalog offering from the SKU table, or (None, what is missing)."""
    region, itype = offering["region"], offering["instance_type"]
    count = offering["gpu_count"]
    gpu_key = _gpu_key(offering)
    gpu = table.get(("gpu", gpu_key, region, spot))
    if gpu is None and ("slice", gpu_key, region, spot) in table:
        return count * table[("slice", gpu_key, region, spot)], ""
    family = family_of(itype)
    parts = {"GPU " + gpu_key: gpu, family + " vCPU": table.get(("core", family, region, spot)),
             family + " memory": table.get(("ram", family, region, spot))}
    ssd_gib = LOCAL_SSD_GIB.get(itype, 0)
    if ssd_gib:
        parts["Local SSD"] = table.get(("lssd", "", region, spot))
    missing = [name for name, value in parts.items() if value is None]
    if not family or missing:
        what = ", ".join(missing) if family else f"machine family of {itype}"
        return None, f"no {'spot' if spot else 'on-demand'} SKU for {what}"
    price = (count * gpu + offering["cpu"] * parts[family + " vCPU"]
             + offering["memory_gb"] * parts[family + " memory"] + ssd_gib * parts.get("Local SSD", 0.0))
    return price, ""


def _client(api_key: str | None):
    try:
        from google.cloud import billing_v1  # lazy: only the refresh command needs it
    except ImportError as exc:
        raise PricingError("gcp: google-cloud-billing is not installed: pip install 'gpu-fabric[gcp]'") from exc
    from google.auth.exceptions import DefaultCredentialsError
    try:
        return billing_v1.CloudCatalogClient(client_options={"api_key": api_key} if api_key else None)
    except DefaultCredentialsError as exc:
        raise PricingError(
            "gcp: no Google credentials: run `gcloud auth application-default login`, set "
            f"GOOGLE_APPLICATION_CREDENTIALS, or give an API key (--gcp-api-key or ${API_KEY_ENV})") from exc


def list_compute_skus(client, currency: str = "USD"):
    """Every Compute Engine SKU, priced in `currency`, through `client` (a CloudCatalogClient)."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud import billing_v1

    request = billing_v1.ListSkusRequest(parent=COMPUTE_ENGINE_SERVICE, currency_code=currency, page_size=5000)
    try:
        return list(client.list_skus(request=request))
    except (gexc.Unauthenticated, gexc.Unauthorized, gexc.PermissionDenied, gexc.Forbidden,
            auth_exc.DefaultCredentialsError, auth_exc.RefreshError) as exc:
        raise PricingError(f"gcp: the Cloud Billing Catalog API refused the credentials ({exc}); enable the "
                           "Cloud Billing API for the project or use an API key that may call it") from exc
    except (gexc.GoogleAPICallError, auth_exc.TransportError, ConnectionError, OSError) as exc:
        raise PricingError(f"gcp: could not read the Cloud Billing Catalog ({exc}); check the network") from exc


def refresh_gcp(data: dict, client=None, api_key: str | None = None) -> RefreshResult:
    """Update the GCP offerings of catalog `data` in place from Compute Engine's SKUs; say what changed.

    `client`: a billing_v1.CloudCatalogClient (tests pass one over a stubbed transport); default: one
    with application-default credentials, or `api_key` (default ${GPUFABRIC_GCP_API_KEY}).
    An offering whose parts are not all priced keeps its prices and is listed in `unpriced`."""
    offers = [o for o in data["offerings"] if o["cloud"] == "gcp"]
    result = RefreshResult("gcp", SOURCE)
    if not offers:
        return result
    client = client or _client(api_key or os.environ.get(API_KEY_ENV))
    skus = list_compute_skus(client)
    table, result.warnings = price_table(skus, {o["region"] for o in offers})
    if not table:
        raise PricingError(f"gcp: the Cloud Billing Catalog returned {len(skus)} Compute Engine SKUs but none "
                           "this refresh understands; the API may have changed, the catalog is left as it was")
    for o in offers:
        result.checked += 1
        on_demand, why = offering_price(o, table, spot=False)
        if on_demand is None:
            result.unpriced.append(f"{o['region']} {o['instance_type']}: {why}")
            continue
        set_price(result, o, "on_demand", on_demand)
        mark_priced(result, o)
        spot, why = offering_price(o, table, spot=True)
        if spot is not None and spot < on_demand:
            set_price(result, o, "spot", spot)
        elif o.get("spot") is not None and o["spot"] >= on_demand:
            set_price(result, o, "spot", None)  # a kept spot price may not exceed the new on-demand one
            result.warnings.append(f"gcp: {o['region']} {o['instance_type']}: spot price dropped "
                                   f"({why or 'not cheaper than on-demand'})")
        elif o.get("spot") is not None:
            result.warnings.append(f"gcp: {o['region']} {o['instance_type']}: spot price kept ({why or 'not cheaper'})")
    return result
