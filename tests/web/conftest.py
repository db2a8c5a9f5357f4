"""Web tier: a real fabric with its HTTP gateway on loopback, and the test app running on it."""
from __future__ import annotations

import glob
import json
import os
import sys
import urllib.error
import urllib.request

import pytest

from tests.integration.conftest import Fabric

pytestmark = pytest.mark.integration

MAX_BODY = 1_000_000


def http_url(fabric: Fabric) -> str:
    """The gateway's base URL, from the fabric's ready file."""
    newest = max(glob.glob(os.path.join(fabric.data_dir, "ready-*.json")), key=os.path.getmtime)
    with open(newest) as f:
        return json.load(f)["http_url"]


def fetch(url: str, *, data: bytes | None = None, method: str | None = None, headers: dict | None = None, timeout: float = 60):
    """(status, headers, body) of one request; HTTP errors are answers too."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch_no_redirect(url: str, *, data: bytes | None = None, headers: dict | None = None):
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, data=data, headers=headers or {}), timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture(scope="module")
def web_fabric(tmp_path_factory):
    fabric = Fabric(str(tmp_path_factory.mktemp("webfabric")), "--heartbeat-timeout", "5",
                    "--http-max-body-bytes", str(MAX_BODY), "--scaledown-window", "30").start()
    fabric.http = http_url(fabric)
    old = {k: os.environ.get(k) for k in ("GPUFABRIC_URL", "GPUFABRIC_TOKEN")}
    os.environ.update(GPUFABRIC_URL=fabric.url, GPUFABRIC_TOKEN=fabric.token)
    yield fabric
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    fabric.stop()


@pytest.fixture(scope="module")
def web_app(web_fabric):
    """tests/web/web_apps.py running (ephemerally) on the web fabric."""
    sys.path.insert(0, os.path.dirname(__file__))
    import web_apps

    with web_apps.app.run(show_logs=False):
        yield web_apps
