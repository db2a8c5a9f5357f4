"""The web endpoint decorators: what they accept, and the spec they produce."""
from __future__ import annotations

import json

import pytest

import core_executor as fabric
from core_executor.exception import InvalidError


def test_fastapi_endpoint_spec():
    app = fabric.App("w")

    @app.function()
    @fabric.fastapi_endpoint(method="post", label="my-api", docs=True, requires_proxy_auth=True)
    def f(x: int):
        return x

    config = json.loads(f.spec.webhook_config_json)
    assert config == {"type": "fastapi", "method": "POST", "label": "my-api", "docs": True, "requires_proxy_auth": True}
    assert f.spec.is_generator  # responses stream back as items
    assert f.local(3) == 3


def test_class_web_methods_and_concurrency():
    app = fabric.App("w")

    @app.cls()
    class Service:
        @fabric.asgi_app()
        def web(self):
            return None

        @fabric.method()
        def plain(self):
            return 1

    spec = Service._class_function.spec
    assert json.loads(spec.webhook_config_json) == {"methods": {"web": {"type": "asgi", "label": "", "requires_proxy_auth": False}}}
    assert set(spec.method_names) == {"web", "plain"}

    @app.function()
    @fabric.concurrent(max_inputs=8)
    @fabric.wsgi_app()
    def flask_like():
        return None

    assert flask_like.spec.max_concurrent_inputs == 8
    assert json.loads(flask_like.spec.webhook_config_json)["type"] == "wsgi"


@pytest.mark.parametrize("make", [
    lambda: fabric.fastapi_endpoint(method="FETCH"),
    lambda: fabric.fastapi_endpoint(label="Not_A_Label"),
    lambda: fabric.asgi_app(label="-x"),
    lambda: fabric.web_server(0),
    lambda: fabric.web_server(8000, startup_timeout=0),
])
def test_bad_arguments(make):
    with pytest.raises(InvalidError):
        make()


def test_bare_decorator_and_double_marking():
    with pytest.raises(InvalidError, match="parentheses"):
        fabric.fastapi_endpoint(lambda: None)
    with pytest.raises(InvalidError, match="already a web endpoint"):
        fabric.asgi_app()(fabric.fastapi_endpoint()(lambda: None))
