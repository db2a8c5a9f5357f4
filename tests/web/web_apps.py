"""Apps with web endpoints for tests/web (imported by the containers from this file)."""
import time

import core_executor as fabric

app = fabric.App("webtest")


@app.function()
@fabric.fastapi_endpoint(method="GET")
def square(x: int = 3):
    print(f"squaring {x}")
    return {"square": x * x}


@app.function()
@fabric.fastapi_endpoint(method="POST", label="echo-json", docs=True)
def echo(item: dict):
    return {"got": item}


@app.function()
@fabric.fastapi_endpoint(method="GET")
def boom():
    raise ValueError("secret detail that must not reach the client")


@app.function()
@fabric.fastapi_endpoint(method="GET", requires_proxy_auth=True)
def private():
    return "only with the token"


@app.function()
@fabric.asgi_app()
def streamer():
    async def asgi(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": f"chunk {i} {time.time():.3f}\n".encode(), "more_body": True})
            import asyncio

            await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"done\n"})

    return asgi


@app.function()
@fabric.wsgi_app()
def wsgi():
    def application(environ, start_response):
        body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {environ['QUERY_STRING']} {environ['wsgi.input'].read().decode()}".encode()
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-Script", environ["SCRIPT_NAME"])])
        return [body]

    return application


@app.cls(scaledown_window=2)
class Model:
    @fabric.enter()
    def load(self):
        self.weight = 10

    @fabric.fastapi_endpoint(method="GET")
    def predict(self, x: int = 1):
        return {"y": x * self.weight}


@app.function(scaledown_window=1)
@fabric.asgi_app(label="fast-scale")
def scaler():
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/hello/{name}")
    def hello(name: str):
        return {"hello": name}

    return api


@app.function()
@fabric.web_server(8765, startup_timeout=10)
def server():
    import subprocess
    import sys

    subprocess.Popen([sys.executable, "-m", "http.server", "8765", "--bind", "127.0.0.1"])
