"""The AWS price refresh through boto3's real clients with botocore's Stubber checking each request."""
from __future__ import annotations

import datetime
import json

import pytest

boto3 = pytest.importorskip("boto3")

from botocore.stub import Stubber  # noqa: E402

from gpu_fabric.providers.pricing import PricingError, refresh_aws  # noqa: E402

pytestmark = pytest.mark.cloud

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


def _offering(itype, on_demand=1.0, spot=0.5):
    return {"cloud": "aws", "region": "us-east-1", "zones": ["us-east-1a"], "instance_type": itype, "gpu": "T4",
            "gpu_count": 1, "cpu": 4, "memory_gb": 16, "on_demand": on_demand, "spot": spot}


def _product(price):
    term = {"priceDimensions": {"d": {"unit": "Hrs", "pricePerUnit": {"USD": f"{price:.10f}"}}}}
    return json.dumps({"product": {"attributes": {}}, "terms": {"OnDemand": {"t": term}}})


def _filters(itype):
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v}
            for k, v in (("instanceType", itype), ("regionCode", "us-east-1"), ("operatingSystem", "Linux"),
                         ("tenancy", "Shared"), ("preInstalledSw", "NA"), ("capacitystatus", "Used"))]


class _Session:
    """A boto3 session whose clients are real but stubbed (no network, no credentials)."""

    def __init__(self):
        real = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        self.clients = {name: real.client(name, region_name="us-east-1") for name in ("pricing", "ec2")}
        self.stubs = {name: Stubber(client) for name, client in self.clients.items()}

    def client(self, name, region_name):
        assert region_name == "us-east-1"
        return self.clients[name]


def test_on_demand_and_current_spot_prices_land_and_requests_are_shaped():
    data = {"offerings": [_offering("g4dn.xlarge"), _offering("g5.xlarge", 1.0, 0.4)]}
    session = _Session()
    ec2, pricing = session.stubs["ec2"], session.stubs["pricing"]
    ec2.add_response(
        "describe_spot_price_history",
        {"SpotPriceHistory": [
            {"InstanceType": "g4dn.xlarge", "SpotPrice": "0.2010", "AvailabilityZone": "us-east-1a",
             "ProductDescription": "Linux/UNIX", "Timestamp": NOW},
            {"InstanceType": "g4dn.xlarge", "SpotPrice": "0.1845", "AvailabilityZone": "us-east-1b",
             "ProductDescription": "Linux/UNIX", "Timestamp": NOW}]},
        {"InstanceTypes": ["g4dn.xlarge", "g5.xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": NOW})
    pricing.add_response("get_products", {"PriceList": [_product(0.526)]},
                         {"ServiceCode": "AmazonEC2", "Filters": _filters("g4dn.xlarge"), "MaxResults": 10})
    pricing.add_response("get_products", {"PriceList": []},
                         {"ServiceCode": "AmazonEC2", "Filters": _filters("g5.xlarge"), "MaxResults": 10})
    with ec2, pricing:
        result = refresh_aws(data, session=session, now=NOW)
        ec2.assert_no_pending_responses()
        pricing.assert_no_pending_responses()
    g4dn, g5 = data["offerings"]
    assert (g4dn["on_demand"], g4dn["spot"]) == (0.526, 0.1845)  # the cheapest zone's current price
    assert g4dn["verified"] is True and g4dn["source"] == "aws-pricing-api"
    assert (g5["on_demand"], g5["spot"]) == (1.0, 0.4)  # not listed: left as it was and reported
    assert result.unpriced == ["us-east-1 g5.xlarge: no on-demand Linux price listed"]
    assert {(c.field, c.new) for c in result.changes} == {("on_demand", 0.526), ("spot", 0.1845)}


def test_refused_credentials_change_nothing():
    data = {"offerings": [_offering("g4dn.xlarge")]}
    before = json.dumps(data)
    session = _Session()
    session.stubs["ec2"].add_client_error("describe_spot_price_history", "AuthFailure", "AWS was not able to "
                                          "validate the provided access credentials", http_status_code=401)
    with session.stubs["ec2"], pytest.raises(PricingError, match="aws: the pricing API refused the request"):
        refresh_aws(data, session=session, now=NOW)
    assert json.dumps(data) == before
