"""OCI: GPU instances on Oracle Cloud through the oci SDK (imported lazily), on-demand or preemptible."""
from __future__ import annotations

import base64
import logging

from .base import (
    FABRIC_TAG, LAUNCH_TAG, Availability, Instance, LaunchError, LaunchRequest, Market, Offering,
    PreemptionSource, Provider,
)
from .catalog import Catalog, load_catalog

__all__ = ["OciProvider"]

log = logging.getLogger("gpu_fabric.providers.oci")


class OciProvider(Provider):
    """OCI Compute in `compartment_id`, in the configured regions (default: every OCI region of the catalog).

    `config`: an oci config dict (default: ~/.oci/config, profile DEFAULT). `subnet_ids` and
    `image_ids`: per region. `availability_domains`: the tenancy's AD names per region
    (e.g. {"us-ashburn-1": ["Uocm:US-ASHBURN-AD-1", ...]}); looked up through the Identity API when absent.
    `session_adapter`: a requests transport adapter mounted on the SDK's session (the tests' seam).
    """

    name = "oci"

    def __init__(self, *, compartment_id: str = "", fabric_id: str = "default", regions: list[str] | None = None,
                 config: dict | None = None, profile: str = "DEFAULT", subnet_ids: dict | None = None,
                 image_ids: dict | None = None, availability_domains: dict | None = None, boot_volume_gb: int = 200,
                 session_adapter=None, catalog: Catalog | None = None):
        self.compartment_id = compartment_id
        self.fabric_id = fabric_id
        self.catalog = catalog or load_catalog()
        self.regions = regions or sorted({o.region for o in self.catalog.for_cloud("oci")})
        self._config, self.profile = config, profile
        self.subnet_ids, self.image_ids = subnet_ids or {}, image_ids or {}
        self.availability_domains = dict(availability_domains or {})
        self.boot_volume_gb = boot_volume_gb
        self._adapter = session_adapter
        self._clients: dict[str, object] = {}

    @property
    def config(self) -> dict:
        if self._config is None:
            import oci  # lazy

            self._config = oci.config.from_file(profile_name=self.profile)
        return self._config

    def _compute(self, region: str):
        client = self._clients.get(region)
        if client is None:
            import oci

            client = oci.core.ComputeClient(dict(self.config, region=region), retry_strategy=oci.retry.NoneRetryStrategy())
            if self._adapter is not None:
                client.base_client.session.mount("https://", self._adapter)
            self._clients[region] = client
        return client

    # ----------------------------------------------------------- questions
    def availability(self) -> Availability:
        try:
            import oci
        except ImportError:
            return Availability(False, "the oci SDK is not installed (pip install 'gpu-fabric[cloud]')")
        if not self.compartment_id:
            return Availability(False, "no OCI compartment configured (set compartment_id)")
        try:
            oci.config.validate_config(self.config)
        except Exception as exc:  # noqa: BLE001 - missing file, bad key, malformed OCIDs: say which
            return Availability(False, f"OCI config is not usable: {exc}")
        missing = [r for r in self.regions if r not in self.subnet_ids or r not in self.image_ids]
        if missing:
            return Availability(False, f"no subnet_ids/image_ids for OCI region(s) {', '.join(missing)}")
        return Availability(True)

    def offerings(self) -> list[Offering]:
        return self.catalog.for_cloud("oci", self.regions)

    def preemption_source(self) -> PreemptionSource:
        # OCI gives a preempted instance no in-guest warning; it is terminated and an event is
        # emitted. The control plane notices through `list` and the worker's lapsed heartbeats.
        return PreemptionSource(
            cloud="oci", url="", headers={}, lead_time_s=0.0, poll_s=30.0, is_notice=lambda status, body: False,
            description="no in-guest notice: the instance is terminated (Events: instance preemption action); "
                        "the control plane sees it go through the Compute API and re-queues its inputs",
        )

    # ---------------------------------------------------------- side effects
    def _ad_name(self, region: str, zone: str) -> str:
        names = self.availability_domains.get(region)
        if names is None:
            import oci

            identity = oci.identity.IdentityClient(dict(self.config, region=region))
            if self._adapter is not None:
                identity.base_client.session.mount("https://", self._adapter)
            names = [ad.name for ad in identity.list_availability_domains(self.config["tenancy"]).data]
            self.availability_domains[region] = names
        for name in names:
            if name.upper().endswith(zone.upper()):
                return name
        return zone

    def launch_details(self, request: LaunchRequest):
        """The oci LaunchInstanceDetails sent for `request` (public so its shape can be read)."""
        import oci

        m = oci.core.models
        region = request.offering.region
        details = m.LaunchInstanceDetails(
            availability_domain=self._ad_name(region, request.zone),
            compartment_id=self.compartment_id,
            shape=request.offering.instance_type,
            display_name=request.name,
            source_details=m.InstanceSourceViaImageDetails(image_id=self.image_ids[region], boot_volume_size_in_gbs=self.boot_volume_gb),
            create_vnic_details=m.CreateVnicDetails(subnet_id=self.subnet_ids[region], assign_public_ip=True, hostname_label=request.name),
            metadata={"user_data": base64.b64encode(request.startup_script.encode()).decode()},
            freeform_tags={FABRIC_TAG: self.fabric_id, LAUNCH_TAG: request.name, **{k: str(v) for k, v in request.labels.items()}},
        )
        if request.market == Market.SPOT:
            details.preemptible_instance_config = m.PreemptibleInstanceConfigDetails(
                preemption_action=m.TerminatePreemptionAction(preserve_boot_volume=False))
        return details

    def launch(self, request: LaunchRequest) -> Instance:
        offering, region = request.offering, request.offering.region
        try:
            response = self._compute(region).launch_instance(self.launch_details(request))
        except Exception as exc:  # noqa: BLE001
            raise self._launch_error(exc, request) from exc
        instance = Instance(response.data.id, "oci", region, request.zone, offering.instance_type, request.market,
                            request.name, "pending", dict(request.labels))
        if response.data.lifecycle_state in ("TERMINATING", "TERMINATED"):
            self._terminate_quietly(instance)
            raise LaunchError(f"oci {offering.instance_type} in {request.zone} ended right after launch",
                              kind="capacity", scope="zone", cloud="oci", region=region, zone=request.zone,
                              instance_type=offering.instance_type, market=request.market)
        return instance

    def terminate(self, instance: Instance) -> None:
        try:
            self._compute(instance.region).terminate_instance(instance.instance_id, preserve_boot_volume=False)
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "status", None) != 404:
                raise

    def _terminate_quietly(self, instance: Instance) -> None:
        try:
            self.terminate(instance)
        except Exception:  # noqa: BLE001
            log.exception("could not terminate half-launched instance %s", instance.instance_id)

    def list(self) -> list[Instance]:
        out = []
        for region in self.regions:
            items = self._compute(region).list_instances(self.compartment_id).data
            for i in items:
                tags = dict(i.freeform_tags or {})
                if tags.get(FABRIC_TAG) != self.fabric_id or i.lifecycle_state not in ("PROVISIONING", "STARTING", "RUNNING"):
                    continue
                market = Market.SPOT if i.preemptible_instance_config is not None else Market.ON_DEMAND
                zone = "AD-" + i.availability_domain.rsplit("-", 1)[-1]  # "Uocm:US-ASHBURN-AD-1" -> catalog's "AD-1"
                out.append(Instance(i.id, "oci", region, zone, i.shape, market, i.display_name, i.lifecycle_state.lower(), tags))
        return out

    def _launch_error(self, exc: BaseException, request: LaunchRequest) -> LaunchError:
        status, code = getattr(exc, "status", 0), str(getattr(exc, "code", type(exc).__name__))
        message = str(getattr(exc, "message", exc))
        if "capacity" in message.lower():
            kind, scope = "capacity", "zone"
        elif code in ("LimitExceeded", "QuotaExceeded") or "limit" in message.lower():
            kind, scope = "quota", "region"
        elif status == 401 or code == "NotAuthenticated":
            kind, scope = "auth", "cloud"
        elif status in (400, 404):
            kind, scope = "invalid", "region"
        else:
            kind, scope = "transient", "zone"
        offering = request.offering
        return LaunchError(f"oci {offering.instance_type} ({request.market.value}) in {request.zone}: {code}: {message}",
                           kind=kind, scope=scope, cloud="oci", region=offering.region, zone=request.zone,
                           instance_type=offering.instance_type, market=request.market, code=code)
