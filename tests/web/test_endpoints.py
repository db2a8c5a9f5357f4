"""Web endpoints over real HTTP on loopback: FastAPI, ASGI, WSGI, web_server, streaming, scaling, bad input."""
from __future__ import annotations

import json
import time

import pytest

from .conftest import MAX_BODY, fetch

pytestmark = pytest.mark.integration


def _state(fabric) -> dict:
    status, _, body = fetch(fabric.http + "/api/state", headers={"Authorization": f"Bearer {fabric.token}"})
    assert status == 200
    return json.loads(body)


def test_fastapi_endpoint_get_and_post(web_app):
    url = web_app.square.get_web_url()
    assert url.endswith("/ep/webtest-square-dev")
    status, headers, body = fetch(url + "?x=7")
    assert (status, json.loads(body)) == (200, {"square": 49})
    assert headers["content-type"] == "application/json"
    echo = web_app.echo.get_web_url()
    assert echo.endswith("/ep/echo-json-dev")  # an explicit label
    status, _, body = fetch(echo, data=json.dumps({"a": [1, 2]}).encode(), headers={"Content-Type": "application/json"})
    assert (status, json.loads(body)) == (200, {"got": {"a": [1, 2]}})
    assert fetch(echo)[0] == 405  # GET on a POST route
    assert fetch(echo + "/docs")[0] == 200  # docs=True
    assert fetch(url + "/docs")[0] == 404


def test_class_method_endpoint(web_app):
    url = web_app.Model().predict.get_web_url()
    status, _, body = fetch(url + "?x=4")
    assert (status, json.loads(body)) == (200, {"y": 40})  # @enter ran before the request


def test_asgi_response_streams(web_app):
    import urllib.request

    arrivals = []
    with urllib.request.urlopen(web_app.streamer.get_web_url(), timeout=60) as response:
        for line in response:
            arrivals.append((time.monotonic(), line))
    assert [line.split()[:2] for _, line in arrivals[:3]] == [[b"chunk", b"0"], [b"chunk", b"1"], [b"chunk", b"2"]]
    assert arrivals[-1][1] == b"done\n"
    # Each chunk reached the client as it was sent, not all at once at the end.
    assert arrivals[2][0] - arrivals[0][0] > 0.4


def test_wsgi_app(web_app):
    url = web_app.wsgi.get_web_url()
    status, headers, body = fetch(url + "/a/b?q=1", data=b"hello")
    assert status == 201
    assert body == b"POST /a/b q=1 hello"
    assert headers["X-Script"] == "/ep/webtest-wsgi-dev"


def test_web_server_is_proxied(web_app):
    status, _, body = fetch(web_app.server.get_web_url() + "/")
    assert status == 200 and b"Directory listing" in body


def test_plain_remote_call_still_works(web_app):
    assert web_app.square.remote(5) == {"square": 25}


def test_exception_is_500_without_traceback_and_logged(web_app, web_fabric):
    status, _, body = fetch(web_app.boom.get_web_url())
    assert status == 500
    assert body == b"Internal Server Error"
    assert b"secret" not in body and b"Traceback" not in body
    calls = [c for c in _state(web_fabric)["calls"] if c["function"] == "boom"]
    assert calls
    deadline = time.monotonic() + 10
    while True:
        _, _, logs = fetch(f"{web_fabric.http}/api/calls/{calls[0]['call_id']}/logs", headers={"Authorization": f"Bearer {web_fabric.token}"})
        text = "".join(line["text"] for line in json.loads(logs))
        if "secret detail" in text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "Traceback" in text and "ValueError: secret detail" in text


def test_body_over_the_limit_is_413(web_app):
    status, _, body = fetch(web_app.echo.get_web_url(), data=b"x" * (MAX_BODY + 1), headers={"Content-Type": "application/json"})
    assert status == 413


def test_a_client_that_writes_a_large_body_before_reading_gets_the_413(web_app):
    """Far over the limit, more than the sockets buffer: the gateway reads the rest before it answers."""
    for _ in range(3):
        status, _, body = fetch(web_app.echo.get_web_url(), data=b"x" * (16 * MAX_BODY), headers={"Content-Type": "application/json"})
        assert status == 413 and b"limit" in body


def test_endpoint_token(web_app, web_fabric):
    url = web_app.private.get_web_url()
    assert fetch(url)[0] == 401
    assert fetch(url, headers={"Authorization": "Bearer wrong"})[0] == 401
    token = web_app.private.get_web_token()
    assert token and token != web_fabric.token
    status, _, body = fetch(url, headers={"Authorization": f"Bearer {token}"})
    assert (status, json.loads(body)) == (200, "only with the token")
    assert fetch(url, headers={"X-Fabric-Token": token})[0] == 200
    assert web_app.square.get_web_token() == ""  # endpoints without requires_proxy_auth are open


def test_unknown_endpoint_is_404(web_fabric):
    assert fetch(web_fabric.http + "/ep/no-such-endpoint")[0] == 404


def test_scale_to_zero_and_back(web_app, web_fabric):
    url = web_app.scaler.get_web_url()
    assert url.endswith("/ep/fast-scale-dev")
    status, _, body = fetch(url + "/hello/ada")
    assert (status, json.loads(body)) == (200, {"hello": "ada"})

    def containers() -> int:
        return next(f["containers"] for f in _state(web_fabric)["functions"] if f["name"] == "scaler")

    assert containers() == 1
    deadline = time.monotonic() + 30
    while containers() and time.monotonic() < deadline:  # scaledown_window=1
        time.sleep(0.3)
    assert containers() == 0
    status, _, body = fetch(url + "/hello/bob")  # a cold start again
    assert (status, json.loads(body)) == (200, {"hello": "bob"})
