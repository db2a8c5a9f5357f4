"""GCP: GPU VMs on Compute Engine through google-cloud-compute (imported lazily), standard or spot."""
from __future__ import annotations

import logging
import os
import re

from .base import (
    FABRIC_TAG, LAUNCH_TAG, Availability, Instance, LaunchError, LaunchRequest, Market, Offering,
    PreemptionSource, Provider,
)
from .catalog import Catalog, load_catalog

__all__ = ["GcpProvider"]

log = logging.getLogger("gpu_fabric.providers.gcp")

DEFAULT_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11"
_ZONE_CAPACITY = ("ZONE_RESOURCE_POOL_EXHAUSTED", "RESOURCE_POOL_EXHAUSTED", "STOCKOUT", "RESOURCE_NOT_FOUND")
_REGION_QUOTA = ("QUOTA_EXCEEDED", "quotaExceeded", "RATE_LIMIT_EXCEEDED")
_CLOUD_AUTH = ("PERMISSION_DENIED", "UNAUTHENTICATED", "forbidden", "403 ", "401 ")


def _preempted(status: int, body: str) -> bool:
    return status == 200 and body.strip().upper() == "TRUE"


def _label(value: str) -> str:
    """GCP labels: lowercase letters, digits, '-' and '_', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", value.lower())[:63]


class GcpProvider(Provider):
    """Compute Engine in `project`, in the configured regions (default: every GCP region of the catalog).

    `transport`: an InstancesClient transport (tests pass a REST transport with a stubbed session);
    default: the library's own, with application-default credentials.
    """

    name = "gcp"

    def __init__(self, *, project: str = "", fabric_id: str = "default", regions: list[str] | None = None,
                 image: str = DEFAULT_IMAGE, network: str = "global/networks/default", disk_gb: int = 200,
                 service_account: str = "", transport=None, credentials=None, catalog: Catalog | None = None,
                 operation_timeout_s: float = 300.0):
        self.project = project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
        self.fabric_id = fabric_id
        self.catalog = catalog or load_catalog()
        self.regions = regions or sorted({o.region for o in self.catalog.for_cloud("gcp")})
        self.image, self.network, self.disk_gb = image, network, disk_gb
        self.service_account = service_account
        self.operation_timeout_s = operation_timeout_s
        self._transport, self._credentials = transport, credentials
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from google.cloud import compute_v1  # lazy

            if self._transport is not None:
                self._client = compute_v1.InstancesClient(transport=self._transport)
            else:
                self._client = compute_v1.InstancesClient(credentials=self._credentials)
        return self._client

    # ----------------------------------------------------------- questions
    def availability(self) -> Availability:
        try:
            from google.cloud import compute_v1  # noqa: F401
        except ImportError:
            return Availability(False, "google-cloud-compute is not installed (pip install 'gpu-fabric[cloud]')")
        if not self.project:
            return Availability(False, "no GCP project configured (set project or GOOGLE_CLOUD_PROJECT)")
        if self._transport is None and self._credentials is None:
            try:
                import google.auth

                google.auth.default()
            except Exception as exc:  # noqa: BLE001
                return Availability(False, f"no usable GCP credentials: {exc}")
        return Availability(True)

    def offerings(self) -> list[Offering]:
        return self.catalog.for_cloud("gcp", self.regions)

    def preemption_source(self) -> PreemptionSource:
        return PreemptionSource(
            cloud="gcp", url="http://metadata.google.internal/computeMetadata/v1/instance/preempted",
            headers={"Metadata-Flavor": "Google"}, lead_time_s=30.0, poll_s=2.0, is_notice=_preempted,
            description="the VM's metadata `instance/preempted` turns TRUE, about thirty seconds ahead",
        )

    # ---------------------------------------------------------- side effects
    def instance_resource(self, request: LaunchRequest):
        """The compute_v1.Instance sent for `request` (public so its shape can be read)."""
        from google.cloud import compute_v1

        offering, zone = request.offering, request.zone
        labels = {FABRIC_TAG: _label(self.fabric_id), LAUNCH_TAG: _label(request.name)}
        labels.update({_label(k): _label(str(v)) for k, v in request.labels.items()})
        instance = compute_v1.Instance(
            name=request.name,
            machine_type=f"zones/{zone}/machineTypes/{offering.instance_type}",
            labels=labels,
            metadata=compute_v1.Metadata(items=[compute_v1.Items(key="startup-script", value=request.startup_script)]),
            disks=[compute_v1.AttachedDisk(
                boot=True, auto_delete=True,
                initialize_params=compute_v1.AttachedDiskInitializeParams(source_image=self.image, disk_size_gb=self.disk_gb),
            )],
            network_interfaces=[compute_v1.NetworkInterface(
                network=self.network, access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
            )],
            # GPU VMs cannot live-migrate: they must stop for host maintenance.
            scheduling=compute_v1.Scheduling(on_host_maintenance="TERMINATE", automatic_restart=request.market == Market.ON_DEMAND),
        )
        if offering.accelerator:  # N1 machines take GPUs as attachments; A2/A3/G2/A4 have them built in
            instance.guest_accelerators = [compute_v1.AcceleratorConfig(
                accelerator_count=offering.gpu_count, accelerator_type=f"zones/{zone}/acceleratorTypes/{offering.accelerator}",
            )]
        if request.market == Market.SPOT:
            instance.scheduling.provisioning_model = "SPOT"
            instance.scheduling.instance_termination_action = "DELETE"
        else:
            instance.scheduling.provisioning_model = "STANDARD"
        if self.service_account:
            instance.service_accounts = [compute_v1.ServiceAccount(
                email=self.service_account, scopes=["https://www.googleapis.com/auth/cloud-platform"])]
        return instance

    def launch(self, request: LaunchRequest) -> Instance:
        offering = request.offering
        instance = Instance(request.name, "gcp", offering.region, request.zone, offering.instance_type,
                            request.market, request.name, "pending", dict(request.labels))
        try:
            operation = self.client.insert(project=self.project, zone=request.zone, instance_resource=self.instance_resource(request))
        except Exception as exc:  # noqa: BLE001 - rejected before anything was made
            raise self._launch_error(exc, request) from exc
        try:
            operation.result(timeout=self.operation_timeout_s)
        except BaseException as exc:
            # The request was accepted: a VM may exist even though the operation failed.
            self._terminate_quietly(instance)
            raise self._launch_error(exc, request) from exc
        return instance

    def terminate(self, instance: Instance) -> None:
        try:
            self.client.delete(project=self.project, zone=instance.zone, instance=instance.instance_id)
        except Exception as exc:  # noqa: BLE001
            if "404" not in str(exc) and "NotFound" not in type(exc).__name__:
                raise

    def _terminate_quietly(self, instance: Instance) -> None:
        try:
            self.terminate(instance)
        except Exception:  # noqa: BLE001
            log.exception("could not delete half-launched VM %s", instance.instance_id)

    def list(self) -> list[Instance]:
        from google.cloud import compute_v1

        request = compute_v1.AggregatedListInstancesRequest(
            project=self.project, filter=f"labels.{FABRIC_TAG}={_label(self.fabric_id)}")
        out = []
        for scope, scoped in self.client.aggregated_list(request=request):
            for vm in scoped.instances:
                zone = vm.zone.rsplit("/", 1)[-1]
                region = zone.rsplit("-", 1)[0]
                market = Market.SPOT if vm.scheduling.provisioning_model == "SPOT" else Market.ON_DEMAND
                if region in self.regions and vm.status in ("PROVISIONING", "STAGING", "RUNNING"):
                    out.append(Instance(vm.name, "gcp", region, zone, vm.machine_type.rsplit("/", 1)[-1], market,
                                        vm.name, vm.status.lower(), dict(vm.labels)))
        return out

    def _launch_error(self, exc: BaseException, request: LaunchRequest) -> LaunchError:
        text = f"{exc} {getattr(exc, 'errors', '')}"
        if any(code in text for code in _ZONE_CAPACITY):
            kind, scope = "capacity", "zone"
        elif any(code in text for code in _REGION_QUOTA):
            kind, scope = "quota", "region"
        elif any(code in text for code in _CLOUD_AUTH):
            kind, scope = "auth", "cloud"
        elif "400 " in text or "INVALID" in text.upper():
            kind, scope = "invalid", "region"
        else:
            kind, scope = "transient", "zone"
        offering = request.offering
        message = " ".join(str(exc).split())[:300]
        return LaunchError(f"gcp {offering.instance_type} ({request.market.value}) in {request.zone}: {message}",
                           kind=kind, scope=scope, cloud="gcp", region=offering.region, zone=request.zone,
                           instance_type=offering.instance_type, market=request.market, code=kind)
