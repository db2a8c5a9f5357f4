"""The GCP provider through google-cloud-compute's real REST transport with a stubbed HTTP session."""
from __future__ import annotations

import pytest

pytest.importorskip("google.cloud.compute_v1")

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud.compute_v1.services.instances.transports.rest import InstancesRestTransport  # noqa: E402

from gpu_fabric.providers import LaunchError, LaunchRequest, Market, load_catalog, startup_script  # noqa: E402
from gpu_fabric.providers.gcp import GcpProvider  # noqa: E402

from ._stub_http import StubAdapter  # noqa: E402

pytestmark = pytest.mark.cloud

DONE = {"name": "op-1", "status": "DONE", "zone": "us-central1-a"}


def _provider(respond):
    adapter = StubAdapter(respond)
    transport = InstancesRestTransport(credentials=AnonymousCredentials())
    transport._session.mount("https://", adapter)
    return GcpProvider(project="proj-1", fabric_id="Fab1", regions=["us-central1"], transport=transport), adapter


def _request(instance_type, market, zone="us-central1-a"):
    offering = next(o for o in load_catalog().for_cloud("gcp", ["us-central1"]) if o.instance_type == instance_type)
    script = startup_script(url="grpc://cp:7373", join_token="gfj1.l1.9.s", hostname="gf-l1")
    return LaunchRequest(offering, zone, market, "gf-l1", script, {"gpufabric-app": "ap-1"})


def test_spot_t4_request_shape():
    provider, adapter = _provider(lambda m, u, b: (200, DONE))
    instance = provider.launch(_request("n1-standard-4", Market.SPOT))
    method, url, body = adapter.requests[0]
    assert method == "POST" and url.endswith("/projects/proj-1/zones/us-central1-a/instances")
    assert body["name"] == "gf-l1" and body["machineType"] == "zones/us-central1-a/machineTypes/n1-standard-4"
    assert body["guestAccelerators"] == [{"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}]
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert body["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert body["scheduling"]["onHostMaintenance"] == "TERMINATE"
    (item,) = body["metadata"]["items"]
    assert item["key"] == "startup-script" and "gpufabric worker --url grpc://cp:7373 --token gfj1.l1.9.s" in item["value"]
    assert body["labels"]["gpufabric-fabric"] == "fab1"
    assert instance.instance_id == "gf-l1" and instance.market == Market.SPOT


def test_standard_a2_has_built_in_gpus_and_standard_provisioning():
    provider, adapter = _provider(lambda m, u, b: (200, DONE))
    provider.launch(_request("a2-highgpu-1g", Market.ON_DEMAND))
    body = adapter.requests[0][2]
    assert "guestAccelerators" not in body  # A2 machine types come with their GPUs
    assert body["scheduling"]["provisioningModel"] == "STANDARD"
    assert "instanceTerminationAction" not in body["scheduling"]


def test_stockout_is_a_zone_capacity_error_and_the_vm_is_cleaned_up():
    failed = dict(DONE, httpErrorStatusCode=503, httpErrorMessage="SERVICE UNAVAILABLE",
                  error={"errors": [{"code": "ZONE_RESOURCE_POOL_EXHAUSTED", "message": "no L4 in us-central1-a"}]})

    def respond(method, url, body):
        if method == "POST":
            return 200, failed
        return 404, {"error": {"code": 404, "message": "not found"}}

    provider, adapter = _provider(respond)
    with pytest.raises(LaunchError) as info:
        provider.launch(_request("g2-standard-4", Market.SPOT))
    assert (info.value.kind, info.value.scope, info.value.zone) == ("capacity", "zone", "us-central1-a")
    assert [m for m, _, _ in adapter.requests] == ["POST", "DELETE"]  # a VM that may exist is deleted
    assert adapter.requests[1][1].endswith("/zones/us-central1-a/instances/gf-l1")


def test_quota_rejection_is_region_scoped():
    provider, adapter = _provider(lambda m, u, b: (403, {"error": {"code": 403, "message": "Quota 'NVIDIA_L4_GPUS' exceeded",
                                                                     "errors": [{"reason": "QUOTA_EXCEEDED", "message": "quota"}]}}))
    with pytest.raises(LaunchError) as info:
        provider.launch(_request("g2-standard-4", Market.ON_DEMAND))
    assert (info.value.kind, info.value.scope) == ("quota", "region")
    assert [m for m, _, _ in adapter.requests] == ["POST"]  # rejected before anything was made


def test_without_a_project_the_provider_is_disabled(monkeypatch):
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    availability = GcpProvider(regions=["us-central1"]).availability()
    assert not availability.enabled and "project" in availability.reason


def test_preemption_notice_is_the_metadata_flag():
    source = GcpProvider(project="p").preemption_source()
    assert source.headers == {"Metadata-Flavor": "Google"} and source.lead_time_s == 30
    assert source.is_notice(200, "TRUE") and not source.is_notice(200, "FALSE")
