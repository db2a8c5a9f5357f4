"""A function in a debian_slim image, built on the worker, run in a sandbox on a lazily mounted root (system tier).

The Debian base takes minutes to debootstrap the first time; it is cached under GPUFABRIC_IMAGE_DIR
(default ~/.cache/gpufabric/images), so later runs reuse it.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time

import pytest

import fs_lazy
from gpu_fabric.worker import _sandbox
from gpu_fabric.worker._images import DEBIAN_SUITES, ImageService, default_image_dir

pytestmark = [pytest.mark.system, pytest.mark.timeout(1500)]


def _missing() -> str:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (debootstrap, overlay mounts)"
    for tool in ("debootstrap", "bwrap", "unshare"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if "%d.%d" % sys.version_info[:2] not in DEBIAN_SUITES:
        return f"no Debian release ships Python {sys.version_info[0]}.{sys.version_info[1]}"
    if _sandbox.detect().bwrap is None:
        return "bubblewrap cannot create namespaces here"
    return ""


pytestmark.append(pytest.mark.skipif(bool(_missing()), reason=_missing() or "ok"))


@pytest.fixture(scope="module")
def image_fabric(tmp_path_factory):
    from tests.integration.conftest import Fabric

    old = os.environ.get("GPUFABRIC_IMAGE_DIR")
    os.environ["GPUFABRIC_IMAGE_DIR"] = default_image_dir()
    try:
        fabric = Fabric(str(tmp_path_factory.mktemp("images-fabric")), "--scaledown-window", "30").start()
    finally:
        if old is None:
            os.environ.pop("GPUFABRIC_IMAGE_DIR", None)
        else:
            os.environ["GPUFABRIC_IMAGE_DIR"] = old
    yield fabric
    fabric.stop()


@pytest.fixture
def use_fabric(image_fabric, monkeypatch):
    monkeypatch.setenv("GPUFABRIC_URL", image_fabric.url)
    monkeypatch.setenv("GPUFABRIC_TOKEN", image_fabric.token)
    return image_fabric


def test_function_runs_in_its_image_isolated_from_the_host(use_fabric, capsys):
    from . import image_apps

    with image_apps.app.run():
        seen = image_apps.look_around.remote(os.path.abspath(__file__))
    assert seen["python"] == "%d.%d" % sys.version_info[:2]
    assert seen["six"] and seen["tree"] == "/usr/bin/tree"
    assert seen["data"] == "hello from the image\n"
    assert seen["host_path_visible"] is False  # the host's files are not there
    assert seen["flavour"] == "test" and seen["home_env_only"]
    assert seen["pid"] < 10  # its own PID namespace
    assert seen["debian"].startswith(("11", "12", "13"))
    out = capsys.readouterr().out
    assert "looking around inside the image" in out


def test_memory_limit_breach_is_reported_as_out_of_memory(use_fabric):
    from . import image_apps

    if _sandbox.detect().memory_parent is None:
        pytest.skip("no usable memory cgroup controller on this host")
    with image_apps.app.run():
        with pytest.raises(Exception, match="out of memory"):
            image_apps.hog.remote(512)


def test_second_build_reuses_the_cache_and_the_mount_is_lazy(use_fabric):
    from . import image_apps

    service = ImageService(default_image_dir())
    lines: list[str] = []
    started = time.monotonic()
    built = service.build(image_apps.image.recipe_json(), log=lines.append)
    assert time.monotonic() - started < 30
    assert any("cached" in line for line in lines)
    if not fs_lazy.fuse_available()[0]:
        pytest.skip("FUSE unavailable: " + fs_lazy.fuse_available()[1])
    mounted = service.acquire(built.manifest_digest)
    try:
        assert mounted.lazy
        assert os.path.exists(os.path.join(mounted.path, "usr/bin/tree"))
        assert json.loads(json.dumps(mounted.manifest.total_size())) > 50 << 20
    finally:
        service.close()


@pytest.fixture
def loopback_server():
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def test_block_network_cuts_the_network_but_not_the_fabric(use_fabric, loopback_server):
    from . import image_apps

    with image_apps.app.run():
        reachable = image_apps.online_in_image.remote(loopback_server)
        offline = image_apps.offline_in_image.remote(loopback_server)
        offline_plain = image_apps.offline_on_worker.remote(loopback_server)
    assert reachable == {"connect": "connected", "answer": 42}  # the server is there to be reached
    assert offline["answer"] == 42 and offline["connect"].startswith("refused"), offline
    assert offline_plain["answer"] == 7 and offline_plain["connect"].startswith("refused"), offline_plain
