"""Web endpoints: `gpufabric serve examples/web_endpoint.py`, then open the printed URLs.

Needs FastAPI where the containers run (`pip install 'gpu-fabric[web]'`).
"""
import core_executor as fabric

app = fabric.App("web-example")


@app.function()
@fabric.fastapi_endpoint(method="GET", docs=True)
def greet(name: str = "world"):
    """GET .../ep/web-example-greet-dev?name=Ada -> {"greeting": "hello Ada"}"""
    print(f"greeting {name}")
    return {"greeting": f"hello {name}"}


@app.function(scaledown_window=30)
@fabric.asgi_app(label="countdown")
def countdown():
    """A FastAPI app whose /stream route streams its lines as they are made."""
    import asyncio

    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    api = FastAPI()

    @api.get("/stream")
    async def stream(n: int = 5):
        async def lines():
            for i in range(n, 0, -1):
                yield f"{i}\n"
                await asyncio.sleep(0.5)
            yield "liftoff\n"

        return StreamingResponse(lines(), media_type="text/plain")

    return api


@app.cls(min_containers=1)
class Model:
    @fabric.enter()
    def load(self):
        self.scale = 2.0  # load weights here, once per container

    @fabric.fastapi_endpoint(method="POST", requires_proxy_auth=True)
    def predict(self, item: dict):
        """POST JSON {"x": 3} with `Authorization: Bearer <Model().predict.get_web_token()>`."""
        return {"y": item.get("x", 0) * self.scale}


@app.local_entrypoint()
def main():
    import urllib.request

    url = greet.get_web_url()
    print("greet is served at", url)
    print(urllib.request.urlopen(url + "?name=Ada").read().decode())
