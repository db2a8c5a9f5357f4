"""Classes through a real fabric: lifecycle, methods, parameters, with_options, from_name."""
from __future__ import annotations

import os
import time

import pytest

import core_executor as fabric
from core_executor import exception

from . import sdk_apps
from .conftest import wait_for

pytestmark = pytest.mark.integration


def test_class_methods_share_one_instance_and_enter_runs_once(fabric_env, tmp_path):
    log = str(tmp_path / "lifecycle.log")
    counter = sdk_apps.Counter(log_path=log)  # a non-default parameter: its own containers
    with sdk_apps.app.run():
        default = sdk_apps.Counter()
        assert default.add.remote(2) == 2
        assert default.add.remote(3) == 5  # same container, same instance
        info = default.info.remote()
        assert info["entered"] == 1 and info["start"] == 0
        assert list(default.countdown.remote_gen(3)) == [3, 2, 1]
        assert default.async_add.remote(4) == 4
        assert list(default.add.map([1, 1, 1])) == [6, 7, 8]
        assert counter.add.remote(1) == 1
    # The app stopped: its containers ran @exit (scale-down or SIGTERM).
    assert wait_for(lambda: os.path.exists(log) and "exit" in open(log).read()), open(log).read()
    lines = open(log).read().split()
    assert lines.count("enter") == 1 and lines.count("exit") == 1


def test_exit_runs_when_the_fabric_stops_a_container_that_is_printing(new_fabric, tmp_path):
    """SIGTERM lands mid-print and @exit prints too: it runs on a thread of its own, not inside the
    interrupted print (where it waited on the print's lock until the worker's SIGKILL)."""
    log = tmp_path / "exit.log"
    fab = new_fabric("--workers", "1")
    with sdk_apps.app.run():
        call = sdk_apps.Chatty(log_path=str(log)).chatter.spawn(60)
        assert wait_for(lambda: log.exists() and log.read_text() == "started\n")
        time.sleep(1)  # printing
    # Stopping the app stops the container that runs its input: SIGTERM, then SIGKILL after a
    # grace period. The input's 60 s are not waited for.
    assert wait_for(lambda: log.read_text() == "started\nexit\n", timeout=20), log.read_text()
    with pytest.raises(exception.InputCancellation, match="the app was stopped"):
        call.get(timeout=10)
    fab.stop()
    assert log.read_text() == "started\nexit\n"


def test_parameters_get_their_own_containers(fabric_env):
    with sdk_apps.app.run():
        a = sdk_apps.Counter(start=10)
        b = sdk_apps.Counter(start=20)
        assert a.add.remote(1) == 11
        assert b.add.remote(1) == 21
        assert a.add.remote(1) == 12
        assert a.info.remote()["start"] == 10
        assert sdk_apps.Counter(start=10).info.remote()["pid"] == a.info.remote()["pid"]
        assert b.info.remote()["pid"] != a.info.remote()["pid"]


def test_with_options_binds_a_variant(fabric_env):
    with sdk_apps.app.run():
        variant = sdk_apps.Counter.with_options(cpu=0.5, timeout=30)(start=5)
        assert variant.add.remote(1) == 6


def test_enter_failure_fails_inputs_with_its_error(fabric_env):
    with sdk_apps.app.run():
        with pytest.raises(exception.ExecutionError, match="enter exploded"):
            sdk_apps.BrokenEnter().run.remote()


def test_startup_timeout_fails_a_slow_enter(fabric_env):
    with sdk_apps.app.run():
        started = time.monotonic()
        # The runtime's watchdog or the control plane stops it, whichever is first.
        with pytest.raises(exception.ExecutionError, match="startup_timeout|before they are ready"):
            sdk_apps.SlowEnter().run.remote()
        assert time.monotonic() - started < 25


def test_calling_a_class_from_inside_a_container(fabric_env):
    with sdk_apps.app.run():
        assert sdk_apps.call_counter_from_inside.remote(1) == 101


def test_bad_class_usage_is_explained(fabric_env):
    import threading

    with sdk_apps.app.run():
        with pytest.raises(AttributeError, match="not a @fabric.method"):
            sdk_apps.Counter().setup  # an @enter method
        with pytest.raises(AttributeError, match="has no method 'nope'"):
            sdk_apps.Counter().nope
        with pytest.raises(exception.SerializationError, match="parameter 'log_path'"):
            sdk_apps.Counter(log_path=threading.Lock())
        with pytest.raises(exception.InvalidError, match="no parameter 'size'"):
            sdk_apps.Counter(size=1)


def test_deployed_class_from_name(fabric_env):
    app = fabric.App("sdk-classes-deployed")

    @app.cls(serialized=True)
    class Greeter:
        greeting: str = fabric.parameter(default="hello")

        @fabric.method()
        def greet(self, name: str) -> str:
            return f"{self.greeting} {name}"

    app.deploy()
    try:
        Remote = fabric.Cls.from_name("sdk-classes-deployed", "Greeter")
        assert Remote().greet.remote("ada") == "hello ada"
        assert Remote(greeting="hi").greet.remote("bob") == "hi bob"
        with pytest.raises(AttributeError, match="has no method 'wave'"):
            Remote().wave
    finally:
        from core_executor import _client

        client = _client.get_client()
        client.call("AppStop", client.pb.AppStopRequest(name="sdk-classes-deployed"))


def test_with_options_secrets_reach_the_bound_class(fabric_env):
    from . import sdk_apps

    with sdk_apps.app.run():
        reader = sdk_apps.EnvReader.with_options(secrets=[fabric.Secret.from_dict({"WITH_OPTIONS_KEY": "v1"})])()
        assert reader.read.remote("WITH_OPTIONS_KEY") == "v1"
        assert sdk_apps.EnvReader().read.remote("WITH_OPTIONS_KEY") == ""
