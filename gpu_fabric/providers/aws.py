"""AWS: GPU instances on EC2 through boto3 (imported lazily), on-demand or spot."""
from __future__ import annotations

import base64
import logging

from .base import (
    FABRIC_TAG, LAUNCH_TAG, Availability, Instance, LaunchError, LaunchRequest, Market, Offering,
    PreemptionSource, Provider,
)
from .catalog import Catalog, load_catalog

__all__ = ["AwsProvider"]

log = logging.getLogger("gpu_fabric.providers.aws")

# Error codes EC2 answers, by what they mean for placement (scope, kind).
_ZONE_CAPACITY = {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
                  "InsufficientReservedInstanceCapacity", "SpotMaxPriceTooLow", "Unsupported",
                  "InsufficientFreeAddressesInSubnet"}
_REGION_QUOTA = {"VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded", "PendingVerification"}
_CLOUD_AUTH = {"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId", "ExpiredToken", "SignatureDoesNotMatch",
               "UnrecognizedClientException", "AccessDenied"}
_REGION_INVALID = {"OptInRequired", "InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidSubnetID.NotFound",
                   "InvalidGroup.NotFound", "InvalidParameterValue", "InvalidParameterCombination"}
# The Deep Learning base AMI (NVIDIA driver preinstalled), looked up per region through SSM.
DEFAULT_IMAGE_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"


def _spot_notice(status: int, body: str) -> bool:
    return status == 200 and '"action"' in body


class AwsProvider(Provider):
    """EC2 in the configured regions (default: every AWS region of the catalog).

    `session`: a boto3 Session (default: the standard credential chain). `image_ids`: AMI per region;
    regions without one resolve `image_parameter` through SSM. `subnet_ids`: subnet per zone, where
    the default VPC is not to be used.
    """

    name = "aws"

    def __init__(self, *, fabric_id: str = "default", regions: list[str] | None = None, session=None,
                 image_ids: dict | None = None, image_parameter: str = DEFAULT_IMAGE_PARAMETER,
                 subnet_ids: dict | None = None, security_group_ids: list[str] | None = None,
                 iam_instance_profile: str = "", disk_gb: int = 200, catalog: Catalog | None = None):
        self.fabric_id = fabric_id
        self.catalog = catalog or load_catalog()
        self.regions = regions or sorted({o.region for o in self.catalog.for_cloud("aws")})
        self._session = session
        self.image_ids = dict(image_ids or {})
        self.image_parameter = image_parameter
        self.subnet_ids = subnet_ids or {}
        self.security_group_ids = security_group_ids or []
        self.iam_instance_profile = iam_instance_profile
        self.disk_gb = disk_gb
        self._clients: dict[str, object] = {}

    # ------------------------------------------------------------ clients
    @property
    def session(self):
        if self._session is None:
            import boto3  # lazy: `import gpu_fabric` must not pay for boto3

            self._session = boto3.session.Session()
        return self._session

    def _ec2(self, region: str):
        client = self._clients.get(region)
        if client is None:
            client = self._clients[region] = self.session.client("ec2", region_name=region)
        return client

    # ----------------------------------------------------------- questions
    def availability(self) -> Availability:
        try:
            import boto3  # noqa: F401
        except ImportError:
            return Availability(False, "boto3 is not installed (pip install 'gpu-fabric[cloud]')")
        try:
            if self.session.get_credentials() is None:
                return Availability(False, "no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
            self.session.client("sts", region_name=self.regions[0]).get_caller_identity()
        except Exception as exc:  # noqa: BLE001 - any failure here means: not usable, say why
            return Availability(False, f"AWS credentials were rejected: {_error_text(exc)}")
        return Availability(True)

    def offerings(self) -> list[Offering]:
        return self.catalog.for_cloud("aws", self.regions)

    def preemption_source(self) -> PreemptionSource:
        return PreemptionSource(
            cloud="aws", url="http://169.254.169.254/latest/meta-data/spot/instance-action", headers={},
            lead_time_s=120.0, poll_s=5.0, is_notice=_spot_notice,
            description="EC2 spot instance-action in instance metadata (IMDSv2: fetch a token first), two minutes ahead",
        )

    # ---------------------------------------------------------- side effects
    def image_id(self, region: str) -> str:
        if region not in self.image_ids:
            ssm = self.session.client("ssm", region_name=region)
            self.image_ids[region] = ssm.get_parameter(Name=self.image_parameter)["Parameter"]["Value"]
        return self.image_ids[region]

    def launch(self, request: LaunchRequest) -> Instance:
        offering, region = request.offering, request.offering.region
        tags = [{"Key": FABRIC_TAG, "Value": self.fabric_id}, {"Key": LAUNCH_TAG, "Value": request.name},
                {"Key": "Name", "Value": request.name}] + [{"Key": k, "Value": str(v)} for k, v in request.labels.items()]
        params = {
            "InstanceType": offering.instance_type, "MinCount": 1, "MaxCount": 1,
            "UserData": request.startup_script,
            "Placement": {"AvailabilityZone": request.zone},
            "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
            "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": self.disk_gb, "VolumeType": "gp3", "DeleteOnTermination": True}}],
            # A worker that shuts its machine down must not leave a stopped (still billed for disk) instance.
            "InstanceInitiatedShutdownBehavior": "terminate",
        }
        if request.market == Market.SPOT:
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
            }
        if request.zone in self.subnet_ids:
            params["SubnetId"] = self.subnet_ids[request.zone]
        if self.security_group_ids:
            params["SecurityGroupIds"] = self.security_group_ids
        if self.iam_instance_profile:
            params["IamInstanceProfile"] = {"Name": self.iam_instance_profile}
        try:
            params["ImageId"] = self.image_id(region)
            response = self._ec2(region).run_instances(**params)
        except Exception as exc:  # noqa: BLE001 - classified into a LaunchError below
            raise self._launch_error(exc, request) from exc
        instance_id = response["Instances"][0]["InstanceId"]
        instance = Instance(instance_id, "aws", region, request.zone, offering.instance_type, request.market,
                            request.name, "pending", dict(request.labels))
        try:
            # A spot request EC2 cannot fill shows up as an instance that is already going away.
            described = self._ec2(region).describe_instances(InstanceIds=[instance_id])
            state = described["Reservations"][0]["Instances"][0]["State"]["Name"]
            if state in ("shutting-down", "terminated"):
                raise LaunchError(f"{offering.instance_type} in {request.zone} ended right after launch ({state})",
                                  kind="capacity", scope="zone", cloud="aws", region=region, zone=request.zone,
                                  instance_type=offering.instance_type, market=request.market)
        except BaseException as exc:
            # Half-made: the instance exists but the launch did not complete; nothing may leak.
            self._terminate_quietly(instance)
            if isinstance(exc, LaunchError):
                raise
            raise self._launch_error(exc, request) from exc
        return instance

    def terminate(self, instance: Instance) -> None:
        try:
            self._ec2(instance.region).terminate_instances(InstanceIds=[instance.instance_id])
        except Exception as exc:  # noqa: BLE001
            if "InvalidInstanceID.NotFound" not in _error_code(exc):
                raise

    def _terminate_quietly(self, instance: Instance) -> None:
        try:
            self.terminate(instance)
        except Exception:  # noqa: BLE001 - the caller reports the original failure
            log.exception("could not terminate half-launched instance %s", instance.instance_id)

    def list(self) -> list[Instance]:
        out = []
        for region in self.regions:
            pages = self._ec2(region).get_paginator("describe_instances").paginate(Filters=[
                {"Name": f"tag:{FABRIC_TAG}", "Values": [self.fabric_id]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ])
            for page in pages:
                for reservation in page["Reservations"]:
                    for i in reservation["Instances"]:
                        tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                        market = Market.SPOT if i.get("InstanceLifecycle") == "spot" else Market.ON_DEMAND
                        out.append(Instance(i["InstanceId"], "aws", region, i["Placement"]["AvailabilityZone"],
                                            i["InstanceType"], market, tags.get(LAUNCH_TAG, ""), i["State"]["Name"], tags))
        return out

    def _launch_error(self, exc: BaseException, request: LaunchRequest) -> LaunchError:
        code = _error_code(exc)
        if code in _ZONE_CAPACITY:
            kind, scope = "capacity", "zone"
        elif code in _REGION_QUOTA:
            kind, scope = "quota", "region"
        elif code in _CLOUD_AUTH:
            kind, scope = "auth", "cloud"
        elif code in _REGION_INVALID or code.startswith("Invalid"):
            kind, scope = "invalid", "region"
        else:
            kind, scope = "transient", "zone"
        offering = request.offering
        return LaunchError(
            f"aws {offering.instance_type} ({request.market.value}) in {request.zone}: {_error_text(exc)}",
            kind=kind, scope=scope, cloud="aws", region=offering.region, zone=request.zone,
            instance_type=offering.instance_type, market=request.market, code=code,
        )


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


def _error_text(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response["Error"]
        return f"{err.get('Code', '')}: {err.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def decode_user_data(value: str) -> str:
    """EC2 hands user data back base64-encoded; tests and `list` read it with this."""
    return base64.b64decode(value).decode()
