"""The dashboard (login, JSON API, call logs) and the Prometheus endpoint, over real HTTP."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from .conftest import fetch, fetch_no_redirect

pytestmark = pytest.mark.integration


def _auth(fabric) -> dict:
    return {"Authorization": f"Bearer {fabric.token}"}


def test_without_a_token_the_dashboard_shows_a_login_page(web_app, web_fabric):
    status, _, body = fetch(web_fabric.http + "/")
    assert status == 200 and b"Sign in" in body
    assert b"webtest" not in body and b"api/state" not in body  # a login form, no data
    assert fetch(web_fabric.http + "/api/state")[0] == 401
    assert fetch(web_fabric.http + "/metrics")[0] == 401
    assert fetch(web_fabric.http + "/api/state", headers={"Authorization": "Bearer nope"})[0] == 401
    status, _, body = fetch(web_fabric.http + "/login", data=b"token=wrong")
    assert status == 401 and b"not this fabric's token" in body


def test_login_sets_a_cookie_that_opens_the_dashboard(web_app, web_fabric):
    status, headers, _ = fetch_no_redirect(web_fabric.http + "/login", data=f"token={web_fabric.token}".encode())
    assert status == 303
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"]
    status, _, body = fetch(web_fabric.http + "/", headers={"Cookie": cookie})
    assert status == 200 and b"/api/state" in body
    assert fetch(web_fabric.http + "/api/state", headers={"Cookie": cookie})[0] == 200
    status, headers, _ = fetch_no_redirect(f"{web_fabric.http}/?token={web_fabric.token}")
    assert status == 303 and headers["location"] == "/"


def test_state_lists_apps_functions_calls_workers_and_cost(web_app, web_fabric):
    assert web_app.square.remote(6) == {"square": 36}
    deadline = time.monotonic() + 10
    while True:
        state = json.loads(fetch(web_fabric.http + "/api/state", headers=_auth(web_fabric))[2])
        calls = [c for c in state["calls"] if c["function"] == "square" and c["status"] == "success"]
        if calls or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    app = next(a for a in state["apps"] if a["name"] == "webtest")
    assert app["state"] == "running" and "square" in app["functions"]
    assert {"square", "Model", "streamer"} <= {f["name"] for f in state["functions"]}
    assert calls and calls[0]["duration_s"] is not None and calls[0]["retries"] == 0
    worker = state["workers"][0]
    assert worker["provider"] == "local" and worker["preempted"] is False and "price_per_hour" in worker
    assert any(e["label"] == "webtest-square-dev" and e["url"].endswith("/ep/webtest-square-dev") for e in state["endpoints"])
    assert len(state["cost"]["points"]) > 10 and state["cost"]["total_usd"] >= 0
    assert isinstance(state["schedules"], list) and isinstance(state["volumes"], list)
    deadline = time.monotonic() + 10
    while True:
        logs = json.loads(fetch(f"{web_fabric.http}/api/calls/{calls[0]['call_id']}/logs", headers=_auth(web_fabric))[2])
        if any("squaring 6" in line["text"] for line in logs) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any("squaring 6" in line["text"] for line in logs)
    assert fetch(f"{web_fabric.http}/api/calls/fc-unknown/logs", headers=_auth(web_fabric))[0] == 404


def test_metrics(web_app, web_fabric):
    assert web_app.square.remote(2) == {"square": 4}
    status, headers, body = fetch(web_fabric.http + "/metrics", headers=_auth(web_fabric))
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    for name in ("gpufabric_queue_depth", "gpufabric_calls_finished_total", "gpufabric_inputs_finished_total",
                 "gpufabric_container_starts_total", "gpufabric_workers", "gpufabric_gpu_seconds_total",
                 "gpufabric_cost_usd_total", "gpufabric_web_responses_total"):
        assert f"# TYPE {name} " in text
    assert 'gpufabric_calls_finished_total{status="success"}' in text
    assert 'gpufabric_workers{provider="local",state="ready"} 1' in text
    assert 'gpufabric_container_starts_total{kind="cold"}' in text


@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")), reason="Debian's chromium is not installed")
def test_dashboard_in_headless_chromium(web_app, web_fabric, tmp_path):
    assert web_app.square.remote(9) == {"square": 81}
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "dashboard.png"
    url = f"{web_fabric.http}/?token={web_fabric.token}"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000", "--window-size=1400,1200"]
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "webtest" in dom and "square" in dom and "local" in dom and "success" in dom
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    artifacts = os.environ.get("TEST_ARTIFACTS_DIR")
    if artifacts:  # kept for people to look at (CI uploads the folder)
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(shot, os.path.join(artifacts, "dashboard.png"))
