"""OCI prices from Oracle's public price list (the cost estimator's products API: JSON, no credentials).

The list answers `GET .../cetools/api/v1/products/?currencyCode=USD` with
`{"lastUpdated": ..., "items": [...]}`; each item is one part:

    {"partNumber": "B98415", "displayName": "OCI - Compute - GPU - H100", "metricName": "GPU Per Hour",
     "serviceCategory": "Compute - GPU",
     "currencyCodeLocalizations": [{"currencyCode": "USD",
                                    "prices": [{"model": "PAY_AS_YOU_GO", "value": 10}]}]}

GPU shapes are priced per GPU-hour with the host's CPUs, memory and local NVMe included, at the same
price in every commercial region. Display names are not uniform ("OCI - Compute - GPU - H100",
"Compute - GPU - A100 - v2", "OCI- Compute - GPU - ...", doubled spaces) and some parts look like
rentals but are not (NVIDIA AI Enterprise licences, Cloud@Customer appliances, VMware nodes), so a
part is matched by the model after "Compute - GPU - " among parts billed "GPU Per Hour", and the part
number it matched is recorded on the offering so later refreshes match that part exactly.
"""
from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from ._common import PricingError, RefreshResult, mark_priced, set_price

__all__ = ["refresh_oci", "fetch_price_list", "gpu_parts", "PRICE_LIST_URL", "SHAPE_MODELS", "SOURCE"]

PRICE_LIST_URL = "https://apexapps.oracle.com/pls/apex/cetools/api/v1/products/"
URL_ENV = "GPUFABRIC_OCI_PRICE_LIST_URL"
SOURCE = "Oracle Cloud price list API (cetools products)"

# Shape -> the model its GPU part names after "Compute - GPU - " (compared without case or spacing).
SHAPE_MODELS = {
    "BM.GPU.B200.8": "B200", "BM.GPU.H200.8": "H200", "BM.GPU.H100.8": "H100",
    "BM.GPU.L40S.4": "L40S", "BM.GPU.L40S-NC.4": "L40S",
    "BM.GPU.A100-v2.8": "A100 - v2", "BM.GPU4.8": "E4",  # GPU4 is the A100 40GB generation ("E4" hosts)
    "BM.GPU.A10.4": "A10", "VM.GPU.A10.1": "A10", "VM.GPU.A10.2": "A10",
}
# Parts that match the pattern but are not public cloud rentals.
_NOT_RENTALS = re.compile(r"AI Enterprise|Cloud@Customer|VMware|Roving Edge|Dedicated Region|Alloy", re.I)
# Preemptible capacity costs half the on-demand price, and is not offered for bare metal instances
# (OCI documentation, "Preemptible Instances": pricing and "Support and Limitations").
PREEMPTIBLE_DISCOUNT = 0.5


def _model_key(text: str) -> str:
    return re.sub(r"[\s-]", "", text).lower()


def _usd_pay_as_you_go(item: dict, currency: str) -> float | None:
    for localization in item.get("currencyCodeLocalizations") or ():
        if localization.get("currencyCode") != currency:
            continue
        values = [p.get("value") for p in localization.get("prices") or () if p.get("model") == "PAY_AS_YOU_GO"]
        values = [float(v) for v in values if isinstance(v, (int, float)) and v > 0]
        if len(set(values)) == 1:
            return values[0]
    return None


def gpu_parts(payload: dict, currency: str = "USD") -> tuple[dict[str, dict], list[str]]:
    """{model key: {"part": partNumber, "price": per GPU-hour, "name": displayName}} and warnings.

    Also keyed by part number ("#B98415") so an offering that recorded its part finds it again.
    A model priced by two different parts is left out with a warning rather than guessed."""
    items = payload.get("items")
    if not isinstance(items, list):
        raise PricingError("oci: the price list answered without an 'items' list; the API may have changed")
    by_model: dict[str, list[dict]] = {}
    parts: dict[str, dict] = {}
    for item in items:
        name = re.sub(r"\s+", " ", str(item.get("displayName") or "")).strip()
        metric = str(item.get("metricName") or "").strip().lower()
        if metric != "gpu per hour" or _NOT_RENTALS.search(name):
            continue
        m = re.search(r"Compute - GPU - (.+)$", re.sub(r"\bOCI- ", "OCI - ", name))
        price = _usd_pay_as_you_go(item, currency)
        if not m or price is None:
            continue
        part = {"part": str(item.get("partNumber") or ""), "price": price, "name": name}
        by_model.setdefault(_model_key(m.group(1)), []).append(part)
        if part["part"]:
            parts["#" + part["part"]] = part
    warnings = []
    for key, found in by_model.items():
        if len({p["price"] for p in found}) == 1:
            parts[key] = found[0]
        else:
            warnings.append("oci: several GPU parts for " + ", ".join(f"{p['name']} ({p['part']}) {p['price']:g}"
                                                                     for p in found) + "; not used")
    return parts, warnings


def fetch_price_list(url: str = "", currency: str = "USD", timeout_s: float = 60.0) -> dict:
    """The price list as JSON (default URL: ${GPUFABRIC_OCI_PRICE_LIST_URL} or Oracle's)."""
    url = url or os.environ.get(URL_ENV) or PRICE_LIST_URL
    query = urllib.parse.urlencode({"currencyCode": currency})
    full = f"{url}{'&' if '?' in url else '?'}{query}"
    request = urllib.request.Request(full, headers={"Accept": "application/json", "User-Agent": "gpu-fabric"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        raise PricingError(f"oci: the price list at {url} answered HTTP {exc.code} ({exc.reason})") from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PricingError(f"oci: could not reach the price list at {url} ({reason}); check the network") from exc
    except ValueError as exc:
        raise PricingError(f"oci: the price list at {url} did not answer JSON ({exc})") from exc


def refresh_oci(data: dict, url: str = "", payload: dict | None = None, timeout_s: float = 60.0) -> RefreshResult:
    """Update the OCI offerings of catalog `data` in place from the price list; say what changed.

    On-demand: the shape's GPU part price times its GPU count. Spot (preemptible): half of that for
    VM shapes; none for bare metal shapes, which preemptible capacity does not support.
    `payload`: an already fetched price list (otherwise fetched from `url`)."""
    offers = [o for o in data["offerings"] if o["cloud"] == "oci"]
    result = RefreshResult("oci", SOURCE)
    if not offers:
        return result
    payload = payload if payload is not None else fetch_price_list(url, timeout_s=timeout_s)
    parts, result.warnings = gpu_parts(payload)
    if not parts:
        raise PricingError("oci: the price list has no GPU parts billed per GPU-hour; the API may have changed, "
                           "the catalog is left as it was")
    for o in offers:
        result.checked += 1
        shape = o["instance_type"]
        part = parts.get("#" + o["price_part"]) if o.get("price_part") else None
        model = SHAPE_MODELS.get(shape)
        if part is None and model is not None:
            part = parts.get(_model_key(model))
        if part is None:
            why = "no model known for this shape" if model is None and not o.get("price_part") else \
                f"no GPU part for {o.get('price_part') or model!r} in the price list"
            result.unpriced.append(f"{o['region']} {shape}: {why}")
            continue
        on_demand = part["price"] * o["gpu_count"]
        set_price(result, o, "on_demand", on_demand)
        set_price(result, o, "spot", None if shape.startswith("BM.") else on_demand * PREEMPTIBLE_DISCOUNT)
        mark_priced(result, o)
        o["price_part"] = part["part"]
    return result
