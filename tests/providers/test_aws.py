"""The AWS provider against moto's EC2: launches, market options, startup script, terminate, failover."""
from __future__ import annotations

import pytest

pytest.importorskip("boto3")
moto = pytest.importorskip("moto")

import boto3  # noqa: E402

from gpu_fabric.control_plane.scheduler import Blocklist  # noqa: E402
from gpu_fabric.providers import LaunchError, LaunchRequest, Market, load_catalog, startup_script  # noqa: E402
from gpu_fabric.providers.aws import AwsProvider, decode_user_data  # noqa: E402

pytestmark = pytest.mark.cloud


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}.items():  # loading moto's AMI list costs seconds per test
        monkeypatch.setenv(key, value)
    with moto.mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        ec2 = session.client("ec2")
        seed = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ami = ec2.create_image(InstanceId=seed, Name="gpu-base")["ImageId"]
        ec2.terminate_instances(InstanceIds=[seed])
        yield AwsProvider(fabric_id="fab1", regions=["us-east-1"], session=session, image_ids={"us-east-1": ami})


def _request(offering, market, zone=None, name="gf-abc123"):
    script = startup_script(url="grpc://cp.example:7373", join_token="gfj1.abc123.99.sig", hostname=name)
    return LaunchRequest(offering, zone or offering.zones[0], market, name, script, {"gpufabric-app": "ap-1"})


def _offering(instance_type):
    return next(o for o in load_catalog().for_cloud("aws", ["us-east-1"]) if o.instance_type == instance_type)


def _describe(provider, instance_id):
    ec2 = provider.session.client("ec2", region_name="us-east-1")
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0], ec2


def test_spot_launch_has_the_type_gpus_market_options_and_script(aws):
    offering = _offering("g5.12xlarge")
    instance = aws.launch(_request(offering, Market.SPOT, "us-east-1b"))
    described, ec2 = _describe(aws, instance.instance_id)
    assert described["InstanceType"] == "g5.12xlarge" and described["InstanceLifecycle"] == "spot"
    assert described["Placement"]["AvailabilityZone"] == "us-east-1b"
    gpus = ec2.describe_instance_types(InstanceTypes=["g5.12xlarge"])["InstanceTypes"][0]["GpuInfo"]["Gpus"][0]
    assert (gpus["Name"], gpus["Count"]) == (offering.gpu, offering.gpu_count) == ("A10G", 4)
    script = decode_user_data(ec2.describe_instance_attribute(InstanceId=instance.instance_id, Attribute="userData")["UserData"]["Value"])
    assert "gpufabric worker --url grpc://cp.example:7373 --token gfj1.abc123.99.sig" in script
    assert "hostnamectl set-hostname gf-abc123" in script
    tags = {t["Key"]: t["Value"] for t in described["Tags"]}
    assert tags["gpufabric-fabric"] == "fab1" and tags["gpufabric-launch"] == "gf-abc123"


def test_on_demand_launch_has_no_market_options_and_is_listed_then_terminated(aws):
    seen = {}
    aws.session  # noqa: B018 - create the session before registering the hook on its client
    ec2 = aws._ec2("us-east-1")
    ec2.meta.events.register("provide-client-params.ec2.RunInstances", lambda params, **kw: seen.update(params))
    instance = aws.launch(_request(_offering("p5.4xlarge"), Market.ON_DEMAND))
    assert "InstanceMarketOptions" not in seen and seen["InstanceType"] == "p5.4xlarge"
    assert seen["InstanceInitiatedShutdownBehavior"] == "terminate"
    described, _ = _describe(aws, instance.instance_id)
    assert described.get("InstanceLifecycle") is None
    assert [i.instance_id for i in aws.list()] == [instance.instance_id]
    aws.terminate(instance)
    assert aws.list() == []
    aws.terminate(instance)  # already gone: not an error


def _fail_run_instances(ec2, code, zones=None):
    class Response:
        status_code = 400
        headers: dict = {}

    def hook(params, **kw):
        # `params` is the serialized EC2 query here, hence the flattened key.
        if zones is None or params.get("body", {}).get("Placement.AvailabilityZone") in zones:
            return Response(), {"Error": {"Code": code, "Message": f"simulated {code}"}}
        return None

    ec2.meta.events.register("before-call.ec2.RunInstances", hook)


def test_capacity_error_blocks_the_zone_and_the_next_zone_launches(aws):
    offering = _offering("g6.xlarge")
    _fail_run_instances(aws._ec2("us-east-1"), "InsufficientInstanceCapacity", zones={offering.zones[0]})
    blocklist = Blocklist(clock=lambda: 0.0)
    launched = None
    for zone in offering.zones:
        if blocklist.blocked("aws", offering.region, zone, offering.instance_type, "spot"):
            continue
        try:
            launched = aws.launch(_request(offering, Market.SPOT, zone))
            break
        except LaunchError as err:
            assert (err.kind, err.scope, err.code) == ("capacity", "zone", "InsufficientInstanceCapacity")
            blocklist.add_error(err)
    assert launched is not None and launched.zone == offering.zones[1]
    assert blocklist.blocked("aws", offering.region, offering.zones[0], "g6.xlarge", "spot")
    assert not blocklist.blocked("aws", offering.region, offering.zones[0], "g6.xlarge", "on-demand")


@pytest.mark.parametrize("code,kind,scope", [
    ("VcpuLimitExceeded", "quota", "region"), ("AuthFailure", "auth", "cloud"),
    ("InvalidAMIID.NotFound", "invalid", "region"), ("RequestLimitExceeded", "transient", "zone"),
])
def test_errors_carry_their_kind_and_scope(aws, code, kind, scope):
    _fail_run_instances(aws._ec2("us-east-1"), code)
    with pytest.raises(LaunchError) as info:
        aws.launch(_request(_offering("g4dn.xlarge"), Market.ON_DEMAND))
    assert (info.value.kind, info.value.scope, info.value.cloud) == (kind, scope, "aws")


def test_a_launch_that_fails_half_way_terminates_its_instance(aws):
    ec2 = aws._ec2("us-east-1")

    def broken(**kw):
        raise RuntimeError("network dropped")

    ec2.meta.events.register("before-call.ec2.DescribeInstances", broken)
    with pytest.raises(LaunchError, match="network dropped"):
        aws.launch(_request(_offering("g4dn.xlarge"), Market.SPOT))
    ec2.meta.events.unregister("before-call.ec2.DescribeInstances", broken)
    ours = ec2.describe_instances(Filters=[{"Name": "tag:gpufabric-fabric", "Values": ["fab1"]}])["Reservations"]
    states = [i["State"]["Name"] for r in ours for i in r["Instances"]]
    assert states == ["terminated"]


def test_missing_credentials_disable_the_provider_with_the_reason(monkeypatch):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    availability = AwsProvider(session=boto3.session.Session(region_name="us-east-1")).availability()
    assert not availability.enabled and "no AWS credentials" in availability.reason


def test_preemption_notice_is_the_spot_instance_action():
    source = AwsProvider(regions=["us-east-1"]).preemption_source()
    assert source.url.endswith("/spot/instance-action") and source.lead_time_s == 120
    assert source.is_notice(200, '{"action": "terminate", "time": "2026-01-01T00:00:00Z"}')
    assert not source.is_notice(404, "")
