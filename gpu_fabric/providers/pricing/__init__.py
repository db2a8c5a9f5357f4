"""Price refreshes for the GPU catalog from the clouds' own pricing APIs (AWS, GCP, OCI).

Each `refresh_<cloud>(data, ...)` updates that cloud's offerings of a loaded catalog.json in place
and returns a RefreshResult (the prices it changed, what it could not price); it raises PricingError,
before changing anything, when the API cannot be read. Cloud SDKs are imported only when used.
"""
from __future__ import annotations

from ._aws import refresh_aws
from ._common import PriceChange, PricingError, RefreshResult, dump_catalog
from ._gcp import refresh_gcp
from ._oci import refresh_oci

__all__ = ["CLOUDS", "PriceChange", "PricingError", "RefreshResult", "dump_catalog", "refresh_aws",
           "refresh_gcp", "refresh_oci"]

CLOUDS = ("aws", "gcp", "oci")
