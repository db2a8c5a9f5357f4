"""Functions the Dict/Queue/Secret integration tests run in containers."""
import hashlib
import os

import core_executor as fabric

app = fabric.App("objects-integration")
# Resolved lazily, in the container, from the fabric the container belongs to.
named_queue = fabric.Queue.from_name("it-named-queue", create_if_missing=True)


@app.function()
def produce(x: int, q: fabric.Queue) -> int:
    q.put(x * x)
    named_queue.put(x, partition="named")
    return x


@app.function()
def claim(name: str, key: str, who: int) -> bool:
    return fabric.Dict.from_name(name, create_if_missing=True).put(key, who, skip_if_exists=True)


@app.function()
def consume(q: fabric.Queue, n: int) -> list:
    return [q.get(timeout=30) for _ in range(n)]


secret_app = fabric.App("secrets-integration")


def _digest(name: str) -> str:
    # Never return or print the value itself: outputs are stored by the control plane.
    value = os.environ.get(name)
    return hashlib.sha256(value.encode()).hexdigest() if value is not None else ""


# From the caller's environment, not a literal: the module's source travels to the fabric.
inline = fabric.Secret.from_dict({"IT_INLINE": os.environ.get("IT_INLINE_SOURCE", "unset")})


@secret_app.function(secrets=[fabric.Secret.from_name("it-secret"), inline])
def secret_digests() -> dict:
    print("looked at the environment")
    return {name: _digest(name) for name in ("IT_TOKEN", "IT_INLINE")}
