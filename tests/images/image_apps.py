"""An app whose functions run in a debian_slim image (used by the system-tier image tests)."""
from __future__ import annotations

import os

import core_executor as fabric

HERE = os.path.dirname(os.path.abspath(__file__))

image = (
    fabric.Image.debian_slim()
    .apt_install("tree")
    .pip_install("six")
    .add_local_dir(os.path.join(HERE, "image_data"), "/data")
    .env({"IMAGE_FLAVOUR": "test"})
)

app = fabric.App("images-system-test")


@app.function(image=image)
def look_around(host_path: str) -> dict:
    import shutil
    import sys

    import six

    with open("/etc/written-by-container", "w") as f:
        f.write("ok")  # the overlay makes the image root writable for this container only
    print("looking around inside the image")
    return {
        "python": "%d.%d" % sys.version_info[:2],
        "six": six.__version__,
        "tree": shutil.which("tree"),
        "data": open("/data/hello.txt").read(),
        "host_path_visible": os.path.exists(host_path),
        "flavour": os.environ.get("IMAGE_FLAVOUR"),
        "debian": open("/etc/debian_version").read().strip(),
        "pid": os.getpid(),
        "home_env_only": "VIRTUAL_ENV" not in os.environ,
    }


@app.function(image=image, memory=128)
def hog(mb: int) -> int:
    block = b"x" * (mb << 20)  # written, so the pages are really used
    return len(block)


def _try_connect(port: int) -> str:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        return "connected"
    except OSError as exc:
        return f"refused: {exc}"


@app.function(image=image, block_network=True)
def offline_in_image(port: int) -> dict:
    return {"connect": _try_connect(port), "answer": 42}


@app.function(image=image)
def online_in_image(port: int) -> dict:
    return {"connect": _try_connect(port), "answer": 42}


@app.function(block_network=True)
def offline_on_worker(port: int) -> dict:
    return {"connect": _try_connect(port), "answer": 7}
