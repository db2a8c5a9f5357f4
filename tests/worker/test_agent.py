"""The worker agent against a fake control plane speaking the real gRPC protocol on loopback."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from gpu_fabric.proto import common_pb2, worker_pb2
from gpu_fabric.worker import WorkerAgent
from gpu_fabric.worker._gpus import parse_simulated

from tests.runtime.fabric_fake import TOKEN, FakeFabric, decode_value, make_input, serialized_definition

pytestmark = pytest.mark.integration


@pytest.fixture
def fabric():
    fake = FakeFabric().start()
    yield fake
    fake.stop()


@pytest.fixture
def start_agent(fabric):
    running = []

    def start(**kwargs) -> WorkerAgent:
        agent = WorkerAgent(
            fabric.url, TOKEN,
            resources=worker_pb2.WorkerResources(cpu=2, memory_mb=1024, gpus=parse_simulated("H100:2")),
            **kwargs,
        )
        thread = threading.Thread(target=agent.run, daemon=True)
        thread.start()
        running.append((agent, thread))
        _wait_for(lambda: agent.worker_id)
        return agent

    yield start
    for agent, thread in running:
        agent.stop()
        thread.join(30)
        assert not thread.is_alive()


def _wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _assign(fabric: FakeFabric, container_id: str, fn, *, gpu_indices=(), env=None, name="fn"):
    fabric.add_container(container_id, serialized_definition(fn), name=name)
    fabric.assignments.put(worker_pb2.WorkerAssignment(start=worker_pb2.ContainerAssignment(
        container_id=container_id, function_id="fn-1", app_id="app-1", gpu_indices=list(gpu_indices),
        spec=common_pb2.FunctionSpec(name=name, env=env or {}), container_token="container-token",
    )))


def test_register_run_and_stop_a_container(fabric, start_agent):
    agent = start_agent()
    reg = fabric.registrations[0]
    assert reg.provider == "local" and reg.hostname and not reg.worker_id
    assert reg.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert [g.type for g in reg.resources.gpus] == ["H100", "H100"]
    assert reg.resources.cpu == 2 and reg.resources.memory_mb == 1024

    def probe():
        os.write(1, b"raw fd line\n")
        keys = ["CUDA_VISIBLE_DEVICES", "FOO", "GPUFABRIC_IS_CONTAINER", "GPUFABRIC_TOKEN",
                "GPUFABRIC_CONTAINER_ID"]
        return {k: os.environ.get(k) for k in keys}, os.getcwd(), os.environ["GPUFABRIC_STATUS_FILE"]

    _assign(fabric, "c1", probe, gpu_indices=[1, 0], env={"FOO": "bar", "GPUFABRIC_CONTAINER_ID": "x"},
            name="probe")
    fabric.put_input("c1", make_input())
    env, cwd, status_file = decode_value(fabric.wait_output())
    assert env == {"CUDA_VISIBLE_DEVICES": "1,0", "FOO": "bar", "GPUFABRIC_IS_CONTAINER": "1",
                   "GPUFABRIC_TOKEN": "container-token", "GPUFABRIC_CONTAINER_ID": "c1"}
    assert cwd.startswith(agent.runtime_dir) and status_file.startswith(agent.runtime_dir)

    raw = _wait_for(lambda: [e for e in fabric.worker_logs if e.data == "raw fd line\n"])
    assert (raw[0].container_id, raw[0].app_id, raw[0].function_name, raw[0].stream) == (
        "c1", "app-1", "probe", common_pb2.LOG_STREAM_STDOUT)
    _wait_for(lambda: any(c.container_id == "c1" for h in fabric.heartbeats for c in h.containers))

    fabric.assignments.put(worker_pb2.WorkerAssignment(stop_container_id="c1", stop_grace_s=5))
    exit_report = fabric.exits.get(timeout=20)
    assert exit_report.container_id == "c1" and exit_report.requested
    assert exit_report.exit_code == -signal.SIGTERM
    assert exit_report.worker_id == agent.worker_id
    assert not os.path.exists(os.path.dirname(status_file))


def test_crash_is_reported_with_input_and_stderr_tail(fabric, start_agent):
    start_agent()

    def crash():
        os.write(2, b"x" * 10000 + b"\nfatal detail\n")
        os._exit(3)

    _assign(fabric, "c1", crash)
    fabric.put_input("c1", make_input(input_id="in-crash"))
    report = fabric.exits.get(timeout=20)
    assert (report.container_id, report.exit_code, report.running_input_id, report.requested) == (
        "c1", 3, "in-crash", False)
    assert report.stderr_tail.endswith("fatal detail\n") and len(report.stderr_tail) <= 4096
    assert any(e.data == "fatal detail\n" for e in fabric.worker_logs)


def test_sigterm_ignoring_container_is_killed_after_grace(fabric, start_agent):
    start_agent()

    def stubborn():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        return "ignoring"

    _assign(fabric, "c1", stubborn)
    fabric.put_input("c1", make_input())
    fabric.wait_output()
    fabric.assignments.put(worker_pb2.WorkerAssignment(stop_container_id="c1", stop_grace_s=0.5))
    report = fabric.exits.get(timeout=20)
    assert report.exit_code == -signal.SIGKILL and report.requested


def test_reregisters_with_id_and_containers_when_forgotten(fabric, start_agent):
    agent = start_agent()
    _assign(fabric, "c1", lambda: 1)
    fabric.hello_seen.get(timeout=20)
    fabric.known = False
    _wait_for(lambda: len(fabric.registrations) >= 2)
    again = fabric.registrations[1]
    assert again.worker_id == agent.worker_id
    assert list(again.running_container_ids) == ["c1"]


def test_survives_control_plane_restart(fabric, start_agent):
    agent = start_agent()
    worker_id = agent.worker_id
    fabric.stop()
    time.sleep(0.5)
    restarted = FakeFabric(port=fabric.port).start()
    try:
        _wait_for(lambda: restarted.registrations)
        assert restarted.registrations[0].worker_id == worker_id
        _wait_for(lambda: restarted.streams_opened)
        _assign(restarted, "c1", lambda: "after restart")
        restarted.put_input("c1", make_input())
        assert decode_value(restarted.wait_output()) == "after restart"
        agent.stop()
        _wait_for(lambda: not agent.containers.running_ids())
    finally:
        agent.stop()
        restarted.stop()


def test_stopping_the_agent_stops_its_containers(fabric, start_agent):
    agent = start_agent()
    _assign(fabric, "c1", lambda: 1)
    fabric.hello_seen.get(timeout=20)
    agent.stop()
    report = fabric.exits.get(timeout=20)
    assert report.container_id == "c1" and report.requested


def _agent_process(fabric: FakeFabric, stderr_path: pathlib.Path) -> subprocess.Popen:
    with open(stderr_path, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-c", "from gpu_fabric.worker import run_worker; run_worker()",
             "--url", fabric.url, "--token", TOKEN, "--simulate-gpus", "T4:1", "--log-level", "INFO"],
            stderr=stderr,
        )


def test_killing_the_agent_kills_its_containers(fabric, tmp_path):
    import time as _time

    agent = _agent_process(fabric, tmp_path / "agent.err")
    try:
        _wait_for(lambda: fabric.registrations)

        def sleeper():
            _time.sleep(60)

        _assign(fabric, "c1", sleeper)
        fabric.put_input("c1", make_input())
        fabric.hello_seen.get(timeout=20)
        children = psutil.Process(agent.pid).children()
        assert len(children) == 1
        container = children[0]
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        container.wait(10)  # raises TimeoutExpired if PDEATHSIG did not fire
        assert not container.is_running()
    finally:
        if agent.poll() is None:
            agent.kill()


def test_sigterm_to_agent_process_stops_containers_and_exits(fabric, tmp_path):
    agent = _agent_process(fabric, tmp_path / "agent.err")
    try:
        _wait_for(lambda: fabric.registrations)
        assert fabric.registrations[0].resources.gpus[0].simulated
        _assign(fabric, "c1", lambda: 1)
        fabric.hello_seen.get(timeout=20)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(20) == 0
        report = fabric.exits.get(timeout=5)
        assert report.container_id == "c1" and report.requested
        assert "Fatal Python error" not in (tmp_path / "agent.err").read_text()
    finally:
        if agent.poll() is None:
            agent.kill()
