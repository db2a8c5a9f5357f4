"""The provider contract: what every cloud answers (offerings, launch, terminate, list, preemption)."""
from __future__ import annotations

import abc
import enum
import shlex
from dataclasses import dataclass, field
from typing import Callable

__all__ = [
    "Availability", "Instance", "LaunchError", "LaunchRequest", "Market", "Offering", "PreemptionSource",
    "Provider", "ProviderError", "ProviderDisabled", "startup_script", "FABRIC_TAG", "LAUNCH_TAG",
]

# Every instance the fabric launches carries these tags/labels, so `list` finds only ours.
FABRIC_TAG = "gpufabric-fabric"
LAUNCH_TAG = "gpufabric-launch"


class Market(str, enum.Enum):
    """How capacity is bought: on-demand (kept until terminated) or spot/preemptible (cheaper, reclaimable)."""

    ON_DEMAND = "on-demand"
    SPOT = "spot"


@dataclass(frozen=True)
class Offering:
    """One instance type in one region: its GPUs, CPUs, memory and hourly prices (USD)."""

    cloud: str
    region: str
    zones: tuple[str, ...]
    instance_type: str
    gpu: str
    gpu_count: int
    cpu: float
    memory_gb: float
    on_demand: float
    spot: float | None = None
    accelerator: str = ""  # the cloud's own name for the GPU where a request must name it (GCP N1)

    def price(self, market: Market) -> float | None:
        """Hourly price on `market`, None where the offering cannot be bought that way."""
        return self.on_demand if market == Market.ON_DEMAND else self.spot


@dataclass(frozen=True)
class LaunchRequest:
    """One instance to start: what, where, how it is bought, and the script that makes it a worker."""

    offering: Offering
    zone: str
    market: Market
    name: str  # also the worker's hostname, which is how a registering worker is matched to its launch
    startup_script: str
    labels: dict = field(default_factory=dict)


@dataclass
class Instance:
    """A machine a provider started for the fabric."""

    instance_id: str
    cloud: str
    region: str
    zone: str
    instance_type: str
    market: Market
    name: str = ""
    state: str = "running"
    labels: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Availability:
    """Whether a provider can be used, and if not, why (missing credentials, no project...)."""

    enabled: bool
    reason: str = ""


@dataclass(frozen=True)
class PreemptionSource:
    """Where a worker on this cloud learns that its machine is being reclaimed.

    The worker polls `url` (with `headers`) every `poll_s`; `is_notice(status, body)` says whether
    the answer is a notice. `lead_time_s` is how long the cloud promises between notice and loss.
    """

    cloud: str
    url: str
    headers: dict
    lead_time_s: float
    poll_s: float
    is_notice: Callable[[int, str], bool]
    description: str


class ProviderError(Exception):
    """Base of the errors providers raise; each says what to do about it."""


class ProviderDisabled(ProviderError):
    """Raised when a disabled provider is asked to launch; `reason` says how to enable it."""

    def __init__(self, cloud: str, reason: str):
        super().__init__(f"provider {cloud} is disabled: {reason}")
        self.cloud, self.reason = cloud, reason


class LaunchError(ProviderError):
    """A launch failed. Carries what the scheduler needs to route around it (as SkyPilot's errors do).

    kind: "capacity" (the zone has none of this type now), "quota" (the account's limit in the
    region), "auth" (credentials or permissions: the whole cloud), "invalid" (the request is wrong for
    this region, e.g. no image), "transient" (retry the same place later).
    scope: the level the failure applies to: "zone", "region" or "cloud".
    """

    SCOPES = ("zone", "region", "cloud")

    def __init__(self, message: str, *, kind: str, scope: str, cloud: str, region: str = "", zone: str = "",
                 instance_type: str = "", market: Market | None = None, code: str = ""):
        super().__init__(message)
        if scope not in self.SCOPES:
            raise ValueError(f"scope must be one of {self.SCOPES}")
        self.kind, self.scope, self.cloud, self.region, self.zone = kind, scope, cloud, region, zone
        self.instance_type, self.market, self.code = instance_type, market, code


class Provider(abc.ABC):
    """One cloud (or this machine) behind the same questions. Stateless apart from its clients;
    side effects happen only in `launch` and `terminate`."""

    name: str = ""

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Whether this provider can be used now, and why not (never raises)."""

    @abc.abstractmethod
    def offerings(self) -> list[Offering]:
        """What can be launched, with prices (from the catalog, narrowed to configured regions)."""

    @abc.abstractmethod
    def launch(self, request: LaunchRequest) -> Instance:
        """Start one instance. Raises LaunchError; never leaves a half-made instance behind."""

    @abc.abstractmethod
    def terminate(self, instance: Instance) -> None:
        """Stop and delete `instance`; an instance already gone is not an error."""

    @abc.abstractmethod
    def list(self) -> list[Instance]:
        """The fabric's instances this provider is running (found by the fabric tag)."""

    def preemption_source(self) -> PreemptionSource | None:
        """How a worker on this cloud hears of preemption; None where machines are not reclaimed."""
        return None


def startup_script(*, url: str, join_token: str, hostname: str, install: str = "gpu-fabric[gpu]",
                   worker_args: tuple[str, ...] = ()) -> str:
    """The boot script of a launched machine: installs the worker agent and starts it as a service.

    The hostname is set first because the control plane matches a registering worker to its launch
    by it; the join token is short-lived and only admits the worker of this launch.
    """
    q = shlex.quote
    args = " ".join(q(a) for a in worker_args)
    return "\n".join([
        "#!/bin/bash",
        "set -euo pipefail",
        f"hostnamectl set-hostname {q(hostname)} || hostname {q(hostname)}",
        "command -v python3 >/dev/null || (apt-get update -y && apt-get install -y python3 python3-venv)",
        "python3 -m venv /opt/gpufabric",
        f"/opt/gpufabric/bin/pip install --quiet {q(install)}",
        "systemd-run --unit gpufabric-worker --property=Restart=on-failure \\",
        f"  /opt/gpufabric/bin/gpufabric worker --url {q(url)} --token {q(join_token)} {args}".rstrip(),
        "",
    ])
