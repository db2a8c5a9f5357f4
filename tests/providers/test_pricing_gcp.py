"""The GCP price refresh through google-cloud-billing's real CloudCatalogClient over a stubbed REST transport."""
from __future__ import annotations

import json
import urllib.parse

import pytest

pytest.importorskip("google.cloud.billing_v1")

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import billing_v1  # noqa: E402
from google.cloud.billing_v1.services.cloud_catalog.transports.rest import CloudCatalogRestTransport  # noqa: E402

from gpu_fabric.providers import catalog as catalog_module  # noqa: E402
from gpu_fabric.providers import load_catalog  # noqa: E402
from gpu_fabric.providers.pricing import PricingError, refresh_gcp  # noqa: E402
from gpu_fabric.providers.pricing import _gcp  # noqa: E402

from ._stub_http import StubAdapter  # noqa: E402

pytestmark = pytest.mark.cloud

REGION = "us-central1"
# Test prices (USD per unit), chosen to make the sums easy to check by hand.
N1_CORE, N1_RAM, T4 = 0.03, 0.004, 0.35
A2_CORE, A2_RAM, A100 = 0.03, 0.004, 2.9
A3_CORE, A3_RAM, H100, LSSD_MONTH = 0.02, 0.002, 9.8, 0.073
G2_CORE, G2_RAM, L4 = 0.02, 0.0025, 0.56
SPOT = 0.4  # spot SKUs below are this fraction of the on-demand ones


def _sku(sku_id, description, unit, price, *, usage="OnDemand", family="Compute", group="GPU", regions=(REGION,)):
    units, nanos = int(price), round((price - int(price)) * 1e9)
    rate = billing_v1.PricingExpression.TierRate(
        start_usage_amount=0, unit_price={"currency_code": "USD", "units": units, "nanos": nanos})
    return billing_v1.Sku(
        name=f"{_gcp.COMPUTE_ENGINE_SERVICE}/skus/{sku_id}", sku_id=sku_id, description=description,
        category=billing_v1.Category(service_display_name="Compute Engine", resource_family=family,
                                     resource_group=group, usage_type=usage),
        service_regions=list(regions), service_provider_name="Google",
        pricing_info=[billing_v1.PricingInfo(summary="", pricing_expression=billing_v1.PricingExpression(
            usage_unit=unit, display_quantity=1, tiered_rates=[rate]))])


def _skus():
    on_demand = [
        _sku("A1", "Nvidia Tesla T4 GPU running in Americas", "h", T4),
        _sku("A2", "N1 Predefined Instance Core running in Americas", "h", N1_CORE, group="N1Standard"),
        _sku("A3", "N1 Predefined Instance Ram running in Americas", "GiBy.h", N1_RAM, group="N1Standard"),
        _sku("B1", "Nvidia Tesla A100 GPU running in Americas", "h", A100),
        _sku("B2", "A2 Instance Core running in Americas", "h", A2_CORE, group="CPU"),
        _sku("B3", "A2 Instance Ram running in Americas", "GiBy.h", A2_RAM, group="RAM"),
        _sku("C1", "Nvidia H100 80GB GPU running in Americas", "h", H100),
        _sku("C2", "A3 Instance Core running in Americas", "h", A3_CORE, group="CPU"),
        _sku("C3", "A3 Instance Ram running in Americas", "GiBy.h", A3_RAM, group="RAM"),
        _sku("C4", "SSD backed Local Storage", "GiBy.mo", LSSD_MONTH, family="Storage", group="LocalSSD"),
        _sku("D1", "Nvidia L4 GPU running in Americas", "h", L4),
        _sku("D2", "G2 Instance Core running in Americas", "h", G2_CORE, group="CPU"),
        _sku("D3", "G2 Instance Ram running in Americas", "GiBy.h", G2_RAM, group="RAM"),
    ]
    spot = [
        _sku("S1", "Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas", "h", T4 * SPOT,
             usage="Preemptible"),
        _sku("S2", "Spot Preemptible N1 Predefined Instance Core running in Americas", "h", N1_CORE * SPOT,
             usage="Preemptible", group="N1Standard"),
        _sku("S3", "Spot Preemptible N1 Predefined Instance Ram running in Americas", "GiBy.h", N1_RAM * SPOT,
             usage="Preemptible", group="N1Standard"),
    ]
    lookalikes = [
        # Commitments, DWS capacity and workstation licences are other prices for the same hardware.
        _sku("X1", "Commitment v1: Nvidia Tesla T4 GPU running in Americas for 1 Year", "h", 0.22, usage="Commit1Yr"),
        _sku("X2", "Nvidia H100 80GB GPU attached to DWS defined duration VMs running in Americas", "h", 7.0),
        _sku("X3", "Nvidia Tesla T4 GPU Virtual Workstation running in Americas", "h", 0.20),
        _sku("X4", "N1 Custom Instance Core running in Americas", "h", 0.05, group="N1Standard"),
        _sku("X5", "Nvidia L4 GPU running in Iowa", "h", 0.99, regions=("asia-east1",)),  # another region
    ]
    return on_demand + lookalikes, spot


def _client(pages, status=200):
    """A real CloudCatalogClient whose HTTP session answers `pages` in turn; and what it was asked."""
    payloads = [json.loads(billing_v1.ListSkusResponse.to_json(
        billing_v1.ListSkusResponse(skus=skus, next_page_token=f"page{i + 2}" if i + 1 < len(pages) else "")))
        for i, skus in enumerate(pages)]
    calls = iter(payloads)

    def respond(method, url, body):
        if status != 200:
            return status, {"error": {"code": status, "message": "Permission denied on the Cloud Billing API",
                                      "status": "PERMISSION_DENIED"}}
        return 200, next(calls)

    adapter = StubAdapter(respond)
    transport = CloudCatalogRestTransport(credentials=AnonymousCredentials())
    transport._session.mount("https://", adapter)
    return billing_v1.CloudCatalogClient(transport=transport), adapter


def _catalog_data():
    with open(catalog_module.DEFAULT_PATH) as f:
        return json.load(f)


def _offering(data, itype, region=REGION):
    return next(o for o in data["offerings"] if o["cloud"] == "gcp" and o["instance_type"] == itype
                and o["region"] == region)


def test_request_asks_compute_engine_skus_in_usd_and_follows_pages():
    on_demand, spot = _skus()
    client, adapter = _client([on_demand, spot])
    refresh_gcp(_catalog_data(), client=client)
    assert len(adapter.requests) == 2
    for (method, url, body), token in zip(adapter.requests, (None, "page2")):
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        assert method == "GET" and body is None
        assert parts.netloc == "cloudbilling.googleapis.com"
        assert parts.path == f"/v1/{_gcp.COMPUTE_ENGINE_SERVICE}/skus" == "/v1/services/6F81-5844-456A/skus"
        assert query["currencyCode"] == ["USD"]
        assert query.get("pageToken") == ([token] if token else None)


def test_parsed_prices_land_in_the_catalog(tmp_path, monkeypatch):
    on_demand, spot = _skus()
    client, _ = _client([on_demand, spot])
    monkeypatch.setattr(_gcp, "_client", lambda api_key: client)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog_data()))

    assert catalog_module.main(["refresh", "--cloud", "gcp", "--catalog", str(path)]) == 0

    cat = load_catalog(path)
    got = {(o.instance_type, o.region): o for o in cat.for_cloud("gcp")}
    n1 = got[("n1-standard-4", REGION)]  # 4 vCPUs, 15 GB, one T4 attached
    assert n1.on_demand == pytest.approx(4 * N1_CORE + 15 * N1_RAM + T4)
    assert n1.spot == pytest.approx((4 * N1_CORE + 15 * N1_RAM + T4) * SPOT)
    a2 = got[("a2-highgpu-8g", REGION)]  # 96 vCPUs, 680 GB, 8 A100 40GB built in
    assert a2.on_demand == pytest.approx(96 * A2_CORE + 680 * A2_RAM + 8 * A100)
    assert a2.spot is not None and a2.spot < a2.on_demand  # no spot A2 SKUs: the old spot price is kept
    a3 = got[("a3-highgpu-8g", REGION)]  # 208 vCPUs, 1872 GB, 8 H100, 6000 GiB of bundled Local SSD
    assert a3.on_demand == pytest.approx(208 * A3_CORE + 1872 * A3_RAM + 8 * H100 + 6000 * LSSD_MONTH / 730)
    g2 = got[("g2-standard-48", REGION)]
    assert g2.on_demand == pytest.approx(48 * G2_CORE + 192 * G2_RAM + 4 * L4)
    # Regions the SKUs do not cover keep their prices.
    assert got[("g2-standard-4", "us-east4")].on_demand == _offering(_catalog_data(), "g2-standard-4", "us-east4")["on_demand"]
    raw = json.loads(path.read_text())
    assert _offering(raw, "n1-standard-4")["verified"] is True
    assert _offering(raw, "n1-standard-4")["source"] == "gcp-pricing-api"
    assert raw["verification"]["sources"]["gcp-pricing-api"].startswith("Cloud Billing Catalog API")
    assert raw["refreshed"]["gcp"]["source"].startswith("Cloud Billing Catalog")


def test_lookalike_skus_do_not_set_prices():
    on_demand, spot = _skus()
    data = _catalog_data()
    client, _ = _client([on_demand + spot])
    result = refresh_gcp(data, client=client)
    # The T4 price is the on-demand SKU's, not the commitment's or the workstation licence's.
    n1 = _offering(data, "n1-standard-4")
    assert n1["on_demand"] == pytest.approx(4 * N1_CORE + 15 * N1_RAM + T4)
    # B200 and H200 machines have no SKUs here: reported, not guessed.
    unpriced = "\n".join(result.unpriced)
    assert "a4-highgpu-8g" in unpriced and "a3-ultragpu-8g" in unpriced
    assert all(c.cloud == "gcp" for c in result.changes)


def test_two_prices_for_one_part_are_not_guessed():
    on_demand, spot = _skus()
    conflict = _sku("Y1", "Nvidia Tesla T4 GPU running in Americas", "h", 0.95)
    data = _catalog_data()
    before = _offering(data, "n1-standard-4")["on_demand"]
    result = refresh_gcp(data, client=_client([on_demand + [conflict]])[0])
    assert _offering(data, "n1-standard-4")["on_demand"] == before
    assert any("T4" in w and "different prices" in w for w in result.warnings)


def test_refused_credentials_are_a_clear_error_and_the_file_is_unchanged(tmp_path, monkeypatch, capsys):
    client, _ = _client([[]], status=403)
    monkeypatch.setattr(_gcp, "_client", lambda api_key: client)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog_data()))
    before = path.read_bytes()
    assert catalog_module.main(["refresh", "--cloud", "gcp", "--catalog", str(path)]) == 1
    out = capsys.readouterr().out
    assert "error: gcp: the Cloud Billing Catalog API refused the credentials" in out
    assert "left unchanged" in out and path.read_bytes() == before


def test_missing_application_default_credentials(monkeypatch, tmp_path):
    monkeypatch.delenv(_gcp.API_KEY_ENV, raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    with pytest.raises(PricingError, match="no Google credentials"):
        refresh_gcp(_catalog_data())


def test_classify_reads_the_description_shapes_compute_engine_uses():
    cases = {
        "Nvidia Tesla A100 80GB GPU running in Americas": ("gpu", "A100-80GB"),
        "Nvidia Tesla A100 GPU running in Americas": ("gpu", "A100-40GB"),
        "Nvidia H100 80GB Mega GPU attached to Spot Preemptible VMs running in Tokyo": ("gpu", "H100-MEGA"),
        "H200 141GB GPU running in Netherlands": ("gpu", "H200"),
        "A4 Nvidia B200 (1 gpu slice) running in Americas": ("slice", "B200"),
        "Spot Preemptible G2 Instance Ram running in Columbus": ("ram", "g2"),
        "A3Plus Instance Core running in Tokyo": ("core", "a3plus"),
        "Nvidia Tesla T4 GPU Virtual Workstation running in Americas": None,
    }
    for description, expected in cases.items():
        spot = "Spot" in description
        sku = _sku("Z", description, "h", 1.0, usage="Preemptible" if spot else "OnDemand")
        assert _gcp.classify(sku) == expected, description
