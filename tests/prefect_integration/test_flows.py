"""Real Prefect flows whose tasks run through GpuFabricTaskRunner on a real fabric."""
from __future__ import annotations

import os
import time
import uuid

import pytest
from prefect import allow_failure, flow, tags, task
from prefect.client.orchestration import get_client
from prefect.futures import wait
from prefect.states import Cancelled

from prefect_integration import GpuFabricTaskRunner, PrefectGpuFabricFuture, TaskNotPicklableError, remote_options

from . import tasks

pytestmark = pytest.mark.usefixtures("fabric_env")


def runner(**options) -> GpuFabricTaskRunner:
    options.setdefault("max_containers", 3)
    return GpuFabricTaskRunner(**options)


def summary(state) -> tuple[str, str, str]:
    """(type, name, message) of a state: a flow returning State objects would take their outcome."""
    return state.type.value, state.name, state.message or ""


def lines(path) -> list[str]:
    return open(path).read().split() if os.path.exists(path) else []


def test_submit_runs_in_a_container_and_returns_results():
    @flow(task_runner=runner())
    def f():
        fut = tasks.where.submit()
        total = tasks.add.submit(fut.result()["pid"] * 0 + 2, 3)
        assert isinstance(fut, PrefectGpuFabricFuture)
        return fut.function_call.object_id, fut.result(), total.result(), fut.state

    call_id, info, total, state = f()
    assert call_id
    assert info["container"] == "1" and info["pid"] != os.getpid()
    assert total == 5
    assert state.is_completed()


def test_async_tasks_and_futures_as_parameters():
    @flow(task_runner=runner())
    def f():
        a = tasks.async_mul.submit(3, 4)
        b = tasks.add.submit(a, 1)  # an upstream future as a parameter
        return b.result(), a.result()

    assert f() == (13, 12)


def test_async_flow():
    @flow(task_runner=runner())
    async def f():
        fut = tasks.async_mul.submit(6, 7)
        return fut.result()

    import asyncio

    assert asyncio.run(f()) == 42


def test_map_unmapped_and_wait_for(tmp_path):
    marker = str(tmp_path / "ran")

    @flow(task_runner=runner())
    def f():
        first = tasks.count_calls.submit(marker, 1)
        mapped = tasks.add.map([1, 2, 3, 4], y=10, wait_for=[first])
        after = tasks.add.submit(100, wait_for=mapped)
        assert all(isinstance(m, PrefectGpuFabricFuture) for m in mapped)
        return [m.result() for m in mapped], after.result()

    results, after = f()
    assert results == [11, 12, 13, 14]
    assert after == 100
    assert lines(marker) == ["x"]


def test_failed_upstream_leaves_downstream_not_ready():
    @flow(task_runner=runner())
    def f():
        bad = tasks.fail.submit("upstream broke")
        by_parameter = tasks.add.submit(bad, 1)
        by_wait_for = tasks.add.submit(1, wait_for=[bad])
        tolerant = tasks.add.submit(5, wait_for=[allow_failure(bad)])
        wait([bad, by_parameter, by_wait_for, tolerant])
        return [summary(x.state) for x in (bad, by_parameter, by_wait_for, tolerant)]

    bad, by_parameter, by_wait_for, tolerant = f()
    assert bad[0] == "FAILED"
    for state in (by_parameter, by_wait_for):
        assert state[:2] == ("PENDING", "NotReady"), state
    assert tolerant[0] == "COMPLETED"


def test_flow_fails_when_a_returned_future_failed():
    @flow(task_runner=runner())
    def f():
        return tasks.fail.submit("returned failure")

    state = f(return_state=True)
    assert state.is_failed()
    with pytest.raises(tasks.TaskFailure, match="returned failure"):
        state.result()


def test_exceptions_become_failed_states_with_the_original_class():
    @flow(task_runner=runner())
    def f():
        fut = tasks.fail.submit("boom")
        fut.wait()
        try:
            fut.result()
        except tasks.TaskFailure as exc:
            caught = exc
        return summary(fut.state), type(caught) is tasks.TaskFailure, str(caught)

    state, same_class, message = f()
    assert state[0] == "FAILED"
    assert same_class and message == "boom"


def test_base_exceptions_crash_the_task_not_the_flow():
    @flow(task_runner=runner())
    def f():
        interrupted = tasks.interrupt.submit()
        exited = tasks.exit_task.submit()
        fine = tasks.add.submit(1, 1)
        wait([interrupted, exited, fine])
        return summary(interrupted.state), summary(exited.state), fine.result()

    interrupted, exited, fine = f()
    assert interrupted[0] == "CRASHED" and "interrupt" in interrupted[2], interrupted
    assert exited[0] == "CRASHED" and "exit" in exited[2], exited
    assert fine == 2


def test_retries_run_in_the_container(tmp_path):
    path = str(tmp_path / "attempts")

    @flow(task_runner=runner())
    def f():
        fut = tasks.flaky.submit(path, 2)
        return fut.result(), fut.task_run_id

    attempts, task_run_id = f()
    assert attempts == 3
    with get_client(sync_client=True) as client:
        run = client.read_task_run(task_run_id)
    assert run.run_count == 3 and run.state.is_completed()


def test_timeout_seconds():
    @flow(task_runner=runner())
    def f():
        fut = tasks.too_slow.submit()
        fut.wait()
        return summary(fut.state)

    started = time.monotonic()
    state = f()
    assert state[:2] == ("FAILED", "TimedOut"), state
    assert time.monotonic() - started < 25


def test_caching_and_result_persistence(tmp_path):
    from prefect.cache_policies import INPUTS

    counter = str(tmp_path / "calls")
    storage = tmp_path / "results"
    from prefect.filesystems import LocalFileSystem

    block = LocalFileSystem(basepath=str(storage))
    block.save(f"results-{uuid.uuid4().hex[:8]}", overwrite=True)
    cached = tasks.count_calls.with_options(cache_policy=INPUTS, persist_result=True, result_storage=block)

    @flow(task_runner=runner())
    def f():
        first = cached.submit(counter, 7)
        first.wait()
        second = cached.submit(counter, 7)
        return first.result(), second.result(), summary(second.state)

    a, b, second_state = f()
    assert (a, b) == (7, 7)
    assert lines(counter) == ["x"]  # the second run came from the cache
    assert second_state[1] == "Cached", second_state
    assert any(storage.iterdir()), "the result was persisted to the task's result storage"


def test_logs_reach_the_prefect_api():
    message = f"hello from the fabric {uuid.uuid4().hex}"

    @flow(task_runner=runner())
    def f():
        fut = tasks.logs.submit(message)
        fut.result()
        return fut.task_run_id

    task_run_id = f()
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    deadline = time.monotonic() + 20
    found = []
    while time.monotonic() < deadline and not found:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id])))
        found = [log for log in logs if message in log.message]
        time.sleep(0.5)
    assert found, "the task's log line reached the Prefect API"


def test_tags_and_task_run_records():
    @flow(task_runner=runner())
    def f():
        with tags("gpu-batch"):
            fut = tasks.add.submit(1, 2)
        return fut.task_run_id, fut.result()

    task_run_id, value = f()
    with get_client(sync_client=True) as client:
        run = client.read_task_run(task_run_id)
    assert value == 3
    assert "gpu-batch" in run.tags
    assert run.state.is_completed()
    assert run.flow_run_id is not None


def test_nested_submission_runs_in_the_same_container():
    @flow(task_runner=runner())
    def f():
        return tasks.nested.submit(10).result()

    assert f() == [10, 11, 12, "1"]


def test_remote_options_choose_the_gpu():
    @flow(task_runner=runner())
    def f():
        plain = tasks.where.submit()
        with remote_options(gpu="A100"):
            on_gpu = tasks.where.submit()
        return plain.result(), on_gpu.result()

    plain, on_gpu = f()
    assert plain["cuda"] == ""
    assert on_gpu["cuda"] == "0"


def test_runner_gpu_option():
    @flow(task_runner=runner(gpu="A100", url=os.environ["GPUFABRIC_URL"], token=os.environ["GPUFABRIC_TOKEN"]))
    def f():
        return tasks.where.submit().result()

    assert f()["cuda"] == "0"


def test_unpicklable_parameter_fails_the_task_naming_it():
    import threading

    @flow(task_runner=runner())
    def f():
        fut = tasks.add.submit(threading.Lock(), 1)
        fut.wait()
        return summary(fut.state)

    state = f()
    assert state[0] == "FAILED"
    assert "parameter 'x'" in state[2] and "'add'" in state[2], state


def test_unpicklable_task_fails_at_submit():
    import threading

    lock = threading.Lock()

    @task
    def holds_lock() -> bool:
        return lock.locked()

    @flow(task_runner=runner())
    def f():
        holds_lock.submit()

    with pytest.raises(TaskNotPicklableError, match="holds_lock"):
        f()


def wait_for_task_run(task_run_id, timeout: float = 60):
    """Prefect 3 records task runs from the engine's events: wait until the API has this one."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            try:
                return client.read_task_run(task_run_id)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def test_cancelling_the_task_run_in_prefect_cancels_the_call(tmp_path):
    path = str(tmp_path / "sleep")

    @flow(task_runner=runner(cancel_poll_s=0.5))
    def f():
        fut = tasks.sleeper.submit(120, path)
        deadline = time.monotonic() + 60
        while "started" not in lines(path) and time.monotonic() < deadline:
            time.sleep(0.2)
        wait_for_task_run(fut.task_run_id)
        with get_client(sync_client=True) as client:
            client.set_task_run_state(fut.task_run_id, Cancelled(), force=True)
        started = time.monotonic()
        fut.wait(timeout=60)
        return summary(fut.state), time.monotonic() - started

    state, waited = f()
    assert state[0] == "CANCELLED", state
    assert waited < 30
    assert "finished" not in lines(path)


def test_future_cancel():
    @flow(task_runner=runner())
    def f():
        fut = tasks.sleeper.submit(120)
        deadline = time.monotonic() + 60
        while fut.function_call is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fut.cancel()
        fut.wait(timeout=60)
        return summary(fut.state)

    assert f()[0] == "CANCELLED"


def test_flow_end_waits_for_running_tasks(tmp_path):
    path = str(tmp_path / "bg")

    @flow(task_runner=runner())
    def f():
        tasks.sleeper.submit(1, path)  # never awaited
        return "done"

    assert f() == "done"
    assert lines(path) == ["started", "finished"]


def test_unreachable_fabric_fails_the_flow_clearly():
    import socket

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from prefect_integration import PrefectIntegrationError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    name = f"unreachable-{uuid.uuid4().hex[:8]}"

    @flow(name=name, task_runner=GpuFabricTaskRunner(url=f"grpc://127.0.0.1:{port}", token="x"))
    def f():
        return tasks.add.submit(1, 2).result()

    started = time.monotonic()
    state = f(return_state=True)
    assert time.monotonic() - started < 90
    assert state.is_failed(), state
    with pytest.raises(PrefectIntegrationError, match=f"could not start on gpu-fabric.*127.0.0.1:{port}"):
        state.result()
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[name])))
    assert len(runs) == 1 and runs[0].state.is_failed(), runs
