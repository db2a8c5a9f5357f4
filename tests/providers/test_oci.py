"""The OCI provider through the oci SDK's real client (real request signing) with a stubbed HTTP session."""
from __future__ import annotations

import base64

import pytest

pytest.importorskip("oci")

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from gpu_fabric.providers import LaunchError, LaunchRequest, Market, load_catalog, startup_script  # noqa: E402
from gpu_fabric.providers.oci import OciProvider  # noqa: E402

from ._stub_http import StubAdapter  # noqa: E402

pytestmark = pytest.mark.cloud

REGION = "us-ashburn-1"


@pytest.fixture(scope="module")
def config():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
    return {"region": REGION, "tenancy": "ocid1.tenancy.oc1..aaaa", "user": "ocid1.user.oc1..aaaa",
            "fingerprint": ":".join(["ab"] * 16), "key_content": pem}


def _instance(state="PROVISIONING"):
    return {"id": "ocid1.instance.oc1..i1", "lifecycleState": state, "availabilityDomain": "Uocm:US-ASHBURN-AD-2",
            "compartmentId": "ocid1.compartment.oc1..c", "region": REGION, "shape": "BM.GPU.L40S-NC.4",
            "timeCreated": "2026-01-01T00:00:00.000Z", "displayName": "gf-l1"}


def _provider(config, respond):
    adapter = StubAdapter(respond)
    provider = OciProvider(
        compartment_id="ocid1.compartment.oc1..c", fabric_id="fab1", regions=[REGION], config=config,
        subnet_ids={REGION: "ocid1.subnet.oc1..s"}, image_ids={REGION: "ocid1.image.oc1..img"},
        availability_domains={REGION: ["Uocm:US-ASHBURN-AD-1", "Uocm:US-ASHBURN-AD-2"]}, session_adapter=adapter,
    )
    return provider, adapter


def _request(market, zone="AD-2"):
    offering = next(o for o in load_catalog().for_cloud("oci", [REGION]) if o.instance_type == "BM.GPU.L40S-NC.4")
    script = startup_script(url="grpc://cp:7373", join_token="gfj1.l1.9.s", hostname="gf-l1")
    return LaunchRequest(offering, zone, market, "gf-l1", script, {})


def test_preemptible_launch_request_shape(config):
    provider, adapter = _provider(config, lambda m, u, b: (200, _instance()))
    instance = provider.launch(_request(Market.SPOT))
    method, url, body = adapter.requests[0]
    assert method == "POST" and url == f"https://iaas.{REGION}.oraclecloud.com/20160918/instances"
    assert body["shape"] == "BM.GPU.L40S-NC.4" and body["availabilityDomain"] == "Uocm:US-ASHBURN-AD-2"
    assert body["preemptibleInstanceConfig"] == {"preemptionAction": {"type": "TERMINATE", "preserveBootVolume": False}}
    script = base64.b64decode(body["metadata"]["user_data"]).decode()
    assert "gpufabric worker --url grpc://cp:7373 --token gfj1.l1.9.s" in script
    assert body["createVnicDetails"]["hostnameLabel"] == "gf-l1" and body["freeformTags"]["gpufabric-fabric"] == "fab1"
    assert instance.instance_id == "ocid1.instance.oc1..i1"


def test_on_demand_launch_has_no_preemptible_config(config):
    provider, adapter = _provider(config, lambda m, u, b: (200, _instance()))
    provider.launch(_request(Market.ON_DEMAND))
    assert "preemptibleInstanceConfig" not in adapter.requests[0][2]


def test_out_of_host_capacity_is_a_zone_error(config):
    provider, _ = _provider(config, lambda m, u, b: (500, {"code": "InternalError", "message": "Out of host capacity."}))
    with pytest.raises(LaunchError) as info:
        provider.launch(_request(Market.SPOT))
    assert (info.value.kind, info.value.scope, info.value.zone) == ("capacity", "zone", "AD-2")


def test_an_instance_terminated_at_once_is_cleaned_up(config):
    def respond(method, url, body):
        return (200, _instance("TERMINATING")) if method == "POST" else (204, {})

    provider, adapter = _provider(config, respond)
    with pytest.raises(LaunchError, match="ended right after launch"):
        provider.launch(_request(Market.SPOT))
    assert adapter.requests[-1][0] == "DELETE" and "ocid1.instance.oc1..i1" in adapter.requests[-1][1]


def test_limit_exceeded_is_region_quota(config):
    provider, _ = _provider(config, lambda m, u, b: (400, {"code": "LimitExceeded", "message": "gpu-l40s-count limit reached"}))
    with pytest.raises(LaunchError) as info:
        provider.launch(_request(Market.ON_DEMAND))
    assert (info.value.kind, info.value.scope) == ("quota", "region")


def test_missing_compartment_or_bad_config_disables_with_reason(config):
    assert "compartment" in OciProvider(config=config, regions=[REGION]).availability().reason
    bad = dict(config, user="not-an-ocid")
    availability = OciProvider(compartment_id="c", config=bad, regions=[REGION]).availability()
    assert not availability.enabled and "user" in availability.reason
