"""The OCI price refresh against a local HTTP server that answers in the shape of Oracle's price list API."""
from __future__ import annotations

import http.server
import json
import threading
import urllib.parse

import pytest

from gpu_fabric.providers import catalog as catalog_module
from gpu_fabric.providers import load_catalog
from gpu_fabric.providers.pricing import PricingError, refresh_oci

pytestmark = pytest.mark.cloud

# Test prices per GPU-hour.
PRICES = {"H100": 10.0, "H200": 10.0, "B200": 14.0, "L40S": 3.5, "A100 - v2": 4.0, "E4": 3.05}


def _item(part, name, value, metric="GPU Per Hour", category="Compute - GPU", currency="USD"):
    return {"partNumber": part, "displayName": name, "metricName": metric, "serviceCategory": category,
            "currencyCodeLocalizations": [{"currencyCode": currency,
                                           "prices": [{"model": "PAY_AS_YOU_GO", "value": value}]}]}


def price_list(prices=PRICES, extra=()):
    """A price list answer: the shape the products API returns, GPU parts plus look-alikes."""
    items = [
        _item("T0001", "OCI - Compute - GPU - H100", prices["H100"]),
        _item("T0002", "OCI - Compute - GPU - H200", prices["H200"]),
        _item("T0003", "OCI- Compute - GPU - B200", prices["B200"]),  # sic: Oracle's spacing varies
        _item("T0004", "Compute - GPU - L40S", prices["L40S"]),
        _item("T0005", "Compute  - GPU - A100 - v2", prices["A100 - v2"]),
        _item("T0006", "OCI - Compute - GPU - E4", prices["E4"]),
        # Look-alikes that must not price a rental:
        _item("T0101", "OCI - Compute - GPU - H100T", 10.75, category="Compute - GPU - Other"),
        _item("T0102", "OCI - NVIDIA AI Enterprise - H100", 2.5),
        _item("T0103", "Oracle Compute Cloud@Customer - Compute - GPU.L40S", 2.9),
        _item("T0104", "Compute - GPU - H200", 99.0, metric="Node Per Hour"),
        _item("T0105", "Compute - Standard - E5 - OCPU", 0.03, metric="OCPU Per Hour", category="Compute - Virtual Machine"),
        *extra,
    ]
    return {"lastUpdated": "2026-01-02T03:04:05.000Z", "items": items}


class _Server:
    """A loopback HTTP server answering every GET with (status, JSON); keeps the paths it was asked."""

    def __init__(self, payload, status=200):
        self.payload, self.status, self.paths = payload, status, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                server.paths.append(self.path)
                body = json.dumps(server.payload).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/pls/apex/cetools/api/v1/products/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _catalog_data():
    with open(catalog_module.DEFAULT_PATH) as f:
        return json.load(f)


def _oci(data, shape, region="us-ashburn-1"):
    return next(o for o in data["offerings"] if o["cloud"] == "oci" and o["instance_type"] == shape
                and o["region"] == region)


def test_request_asks_for_usd_and_prices_land_per_shape():
    data = _catalog_data()
    with _Server(price_list()) as server:
        result = refresh_oci(data, url=server.url)
    (path,) = server.paths
    parts = urllib.parse.urlsplit(path)
    assert parts.path == "/pls/apex/cetools/api/v1/products/"
    assert urllib.parse.parse_qs(parts.query) == {"currencyCode": ["USD"]}
    assert _oci(data, "BM.GPU.H100.8")["on_demand"] == 80.0  # 8 GPUs at 10, not H100T, not the licence
    assert _oci(data, "BM.GPU.H200.8")["on_demand"] == 80.0
    assert _oci(data, "BM.GPU.B200.8")["on_demand"] == 112.0
    assert _oci(data, "BM.GPU.L40S-NC.4")["on_demand"] == 14.0  # the appliance's lower price is not used
    assert _oci(data, "BM.GPU.A100-v2.8")["on_demand"] == 32.0
    assert _oci(data, "BM.GPU4.8")["on_demand"] == pytest.approx(24.4)
    # Every commercial region has the same price list.
    assert _oci(data, "BM.GPU.H100.8", "eu-frankfurt-1")["on_demand"] == 80.0
    # Bare metal shapes cannot be preemptible.
    assert all(o["spot"] is None for o in data["offerings"] if o["cloud"] == "oci")
    assert _oci(data, "BM.GPU.H100.8")["price_part"] == "T0001"
    assert not result.unpriced and result.checked == sum(o["cloud"] == "oci" for o in data["offerings"])


def test_a_vm_shape_gets_half_price_preemptible():
    data = {"offerings": [{"cloud": "oci", "region": "us-ashburn-1", "zones": [], "instance_type": "VM.GPU.A10.1",
                           "gpu": "A10G", "gpu_count": 1, "cpu": 30, "memory_gb": 240, "on_demand": 1.0, "spot": None}]}
    with _Server(price_list(extra=[_item("T0201", "Compute - GPU - A10", 2.0)])) as server:
        refresh_oci(data, url=server.url)
    assert (data["offerings"][0]["on_demand"], data["offerings"][0]["spot"]) == (2.0, 1.0)


def test_recorded_part_number_is_matched_first():
    data = _catalog_data()
    _oci(data, "BM.GPU.H100.8")["price_part"] = "T0301"
    renamed = _item("T0301", "Oracle Cloud Infrastructure - Compute - GPU - H100 SXM", 9.0)
    with _Server(price_list(extra=[renamed])) as server:
        refresh_oci(data, url=server.url)
    assert _oci(data, "BM.GPU.H100.8")["on_demand"] == 72.0


def test_two_parts_for_one_model_are_reported_not_guessed():
    data = _catalog_data()
    before = _oci(data, "BM.GPU.H200.8")["on_demand"]
    twin = _item("T0401", "OCI - Compute - GPU - H200", 12.0)
    with _Server(price_list(extra=[twin])) as server:
        result = refresh_oci(data, url=server.url)
    assert _oci(data, "BM.GPU.H200.8")["on_demand"] == before
    assert any("H200" in line for line in result.unpriced)
    assert any("several GPU parts" in w for w in result.warnings)


def test_unreachable_or_failing_price_list_is_a_clear_error():
    with _Server(price_list()) as server:
        url = server.url
    with pytest.raises(PricingError, match="oci: could not reach the price list"):
        refresh_oci(_catalog_data(), url=url, timeout_s=5)
    with _Server({"error": "down"}, status=503) as server:
        with pytest.raises(PricingError, match="answered HTTP 503"):
            refresh_oci(_catalog_data(), url=server.url)
    with _Server({"products": []}) as server:
        with pytest.raises(PricingError, match="without an 'items' list"):
            refresh_oci(_catalog_data(), url=server.url)


def test_command_reports_large_changes_and_writes_a_loadable_catalog(tmp_path, capsys):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog_data()))
    cheaper = dict(PRICES, H100=4.0)
    with _Server(price_list(cheaper)) as server:
        assert catalog_module.main(["refresh", "--cloud", "oci", "--catalog", str(path), "--oci-url", server.url]) == 0
    out = capsys.readouterr().out
    large = out.split("LARGE CHANGES", 1)[1]
    assert "oci us-ashburn-1 BM.GPU.H100.8 on_demand: 80 -> 32 (-60%)" in large
    assert "BM.GPU.H200.8 on_demand" not in large
    cat = load_catalog(path)
    assert next(o for o in cat.for_cloud("oci") if o.instance_type == "BM.GPU.H100.8").on_demand == 32.0
    assert json.loads(path.read_text())["refreshed"]["oci"]["source"].startswith("Oracle Cloud price list")


def test_command_leaves_the_file_unchanged_when_the_price_list_is_unreachable(tmp_path, capsys):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog_data()))
    before = path.read_bytes()
    with _Server(price_list()) as server:
        url = server.url
    assert catalog_module.main(["refresh", "--cloud", "oci", "--catalog", str(path), "--oci-url", url]) == 1
    out = capsys.readouterr().out
    assert "error: oci: could not reach the price list" in out and "left unchanged" in out
    assert path.read_bytes() == before


def test_all_with_one_cloud_failing_writes_nothing_unless_partial(tmp_path, capsys, monkeypatch):
    from gpu_fabric.providers.pricing import _aws, _gcp

    def refused(*args, **kwargs):
        raise PricingError("aws: no credentials (test)")

    monkeypatch.setattr(_aws, "refresh_aws", refused)
    monkeypatch.setattr("gpu_fabric.providers.pricing.refresh_aws", refused)
    monkeypatch.setattr("gpu_fabric.providers.pricing.refresh_gcp", lambda data, **kw: _gcp.RefreshResult("gcp", "test"))
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(_catalog_data()))
    before = path.read_bytes()
    with _Server(price_list(dict(PRICES, H100=11.0))) as server:
        args = ["refresh", "--cloud", "all", "--catalog", str(path), "--oci-url", server.url]
        assert catalog_module.main(args) == 1
        assert path.read_bytes() == before
        assert catalog_module.main(args + ["--partial"]) == 1  # still an error, but the others are written
    out = capsys.readouterr().out
    assert "error: aws: no credentials (test)" in out
    data = json.loads(path.read_text())
    assert _oci(data, "BM.GPU.H100.8")["on_demand"] == 88.0
    aws_before = [o for o in _catalog_data()["offerings"] if o["cloud"] == "aws"]
    assert [o for o in data["offerings"] if o["cloud"] == "aws"] == aws_before
    assert data["refreshed"]["oci"]["date"] and data["refreshed"].get("aws") == _catalog_data().get("refreshed", {}).get("aws")
