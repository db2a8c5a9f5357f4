"""Providers: one class per cloud (local, aws, gcp, oci, simulated) behind one interface, and the GPU catalog."""
from __future__ import annotations

from .base import (
    Availability, Instance, LaunchError, LaunchRequest, Market, Offering, PreemptionSource, Provider,
    ProviderDisabled, ProviderError, startup_script,
)
from .catalog import Catalog, GpuChoice, UnknownGpuType, load_catalog

__all__ = [
    "Availability", "Catalog", "GpuChoice", "Instance", "LaunchError", "LaunchRequest", "Market", "Offering",
    "PreemptionSource", "Provider", "ProviderDisabled", "ProviderError", "UnknownGpuType", "PROVIDER_NAMES",
    "load_catalog", "make_provider", "startup_script",
]

PROVIDER_NAMES = ("local", "aws", "gcp", "oci", "simulated")


def make_provider(name: str, **config) -> Provider:
    """The provider called `name`, configured with `config` (its class's keyword arguments).
    Modules, and the cloud SDKs they use, are imported only here."""
    if name == "local":
        from .local import LocalProvider as cls
    elif name == "aws":
        from .aws import AwsProvider as cls
    elif name == "gcp":
        from .gcp import GcpProvider as cls
    elif name == "oci":
        from .oci import OciProvider as cls
    elif name == "simulated":  # worker processes on this machine posing as a cloud's machines (tests, demos)
        from .simulated import SimulatedCloud as cls
    else:
        raise ValueError(f"unknown provider {name!r}; choose from {', '.join(PROVIDER_NAMES)}")
    return cls(**config)
