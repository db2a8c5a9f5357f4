"""AWS prices: on-demand from the AWS Price List (Pricing) API, spot from EC2's current spot prices."""
from __future__ import annotations

import datetime
import json

from ._common import PricingError, RefreshResult, mark_priced, set_price

__all__ = ["refresh_aws", "SOURCE"]

SOURCE = "AWS Price List API (pricing:GetProducts) and EC2 DescribeSpotPriceHistory"
# The Price List API is served from a few regions only; us-east-1 answers for every region's prices.
PRICING_REGION = "us-east-1"


def refresh_aws(data: dict, session=None, now: datetime.datetime | None = None) -> RefreshResult:
    """Update the AWS offerings of catalog `data` in place and say what changed.

    On-demand: the Linux, shared-tenancy, no-preinstalled-software price of the instance type in the
    region. Spot: the cheapest availability zone's price in effect at `now` (a start time of now makes
    EC2 return each zone's current price rather than its history). `session`: a boto3 Session
    (default: the standard credential chain). Raises PricingError when AWS cannot be reached or
    refuses the credentials.
    """
    try:
        import boto3  # lazy: only the refresh command needs it
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise PricingError("aws: boto3 is not installed: pip install 'gpu-fabric[aws]'") from exc

    now = now or datetime.datetime.now(datetime.timezone.utc)
    result = RefreshResult("aws", SOURCE)
    by_region: dict[str, list[dict]] = {}
    for o in data["offerings"]:
        if o["cloud"] == "aws":
            by_region.setdefault(o["region"], []).append(o)
    prices: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    try:
        session = session or boto3.session.Session()
        pricing = session.client("pricing", region_name=PRICING_REGION)
        for region, offers in sorted(by_region.items()):
            types = sorted({o["instance_type"] for o in offers})
            spot = _current_spot(session.client("ec2", region_name=region), types, now)
            for t in types:
                prices[(region, t)] = (_on_demand(pricing, region, t), spot.get(t))
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise PricingError(f"aws: the pricing API refused the request ({code}: {exc}); check the credentials "
                           "and that they allow pricing:GetProducts and ec2:DescribeSpotPriceHistory") from exc
    except BotoCoreError as exc:
        raise PricingError(f"aws: {exc}; configure credentials (aws configure, AWS_PROFILE or "
                           "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and check the network") from exc
    # Everything was read before anything changes: a failure above leaves `data` as it was.
    for region, offers in sorted(by_region.items()):
        for o in offers:
            result.checked += 1
            od, spot = prices[(region, o["instance_type"])]
            if od is None:
                result.unpriced.append(f"{region} {o['instance_type']}: no on-demand Linux price listed")
                continue
            set_price(result, o, "on_demand", od)
            mark_priced(result, o)
            # No spot price in any zone means the type cannot be bought as spot there.
            set_price(result, o, "spot", spot if spot is not None and spot < od else None)
    return result


def _current_spot(ec2, types: list[str], now: datetime.datetime) -> dict[str, float]:
    spot: dict[str, float] = {}
    paginator = ec2.get_paginator("describe_spot_price_history")
    for page in paginator.paginate(InstanceTypes=types, ProductDescriptions=["Linux/UNIX"], StartTime=now):
        for item in page["SpotPriceHistory"]:
            price = float(item["SpotPrice"])
            t = item["InstanceType"]
            spot[t] = min(price, spot.get(t, price))
    return spot


def _on_demand(pricing, region: str, instance_type: str) -> float | None:
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
                    return round(usd, 5)
    return None
