"""Orchestrator plugins: wall time of a run through a real fabric, beside the orchestrator's own way.

Each sub-command runs in its orchestrator's environment (Airflow and Prefect cannot share one):

    make bench-orchestrators                                  # all three, full sizes
    .venv-airflow/bin/python bench/orchestrators.py airflow   # 50 mapped tasks, dag.test()
    .venv-prefect/bin/python bench/orchestrators.py prefect   # a flow of 500 small tasks
    .venv-dagster/bin/python bench/orchestrators.py dagster   # 100 assets, materialize()

`--small` runs a tenth of the tasks (a quick check); `--tasks N` sets the number. Every
sub-command starts its own fabric (`python -m gpu_fabric serve` with one local worker, state
in a temporary directory) and runs, in the same process, one untimed warm-up and then:

* airflow: a DAG of N dynamically mapped tasks (`.expand`) summed by one task, run with
  `dag.test()` against a SQLite metadata DB in a temporary AIRFLOW_HOME: plain `@task`,
  `@task.gpu_fabric` (deferrable, the default: the trigger runs inline in `dag.test()`), and
  `@task.gpu_fabric(deferrable=False)`.
* prefect: a flow mapping a small task over N inputs, against a temporary Prefect server
  (`prefect_test_harness`): `ThreadPoolTaskRunner`, `GpuFabricTaskRunner`, and
  `DaskTaskRunner` when prefect-dask is installed.
* dagster: N independent assets, each squaring its number, materialized with the in-process
  executor: computed in the step, and sent to the fabric with `GpuFabricResource.call`.

Tasks are tiny on purpose: the figures are each integration's overhead per task. Containers
started inside a timed run count: Prefect's runner and Dagster's resource start their fabric
app per flow run / per materialization (the warm-up lines show that fixed cost); Airflow's
tasks deploy one named app, warm from the warm-up DAG.
"""
# No `from __future__ import annotations`: Dagster reads an asset's resource parameters from
# its annotations, which must be the classes themselves for assets defined inside functions.
import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_SIZES = {"airflow": 50, "prefect": 500, "dagster": 100}


# ---- a real fabric for the run ----


class Fabric:
    """`python -m gpu_fabric serve` with one local worker, its state in a temporary directory.

    Started with --embedded: it exits when our end of its stdin closes, so a killed bench
    leaves no fabric behind. No web gateway (--no-http): nothing here reads the dashboard.
    """

    def __init__(self, *args: str):
        self.args = list(args)
        self.data_dir = tempfile.mkdtemp(prefix="bench-fabric-")
        self.url = self.token = ""
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "Fabric":
        ready = os.path.join(self.data_dir, "ready.json")
        self.log_path = os.path.join(self.data_dir, "serve.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gpu_fabric", "serve", "--embedded", "--port", "0",
                 "--data-dir", self.data_dir, "--ready-file", ready, "--scaledown-window", "600", "--no-http", *self.args],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while True:
            try:
                with open(ready) as fh:
                    info = json.load(fh)
                if info.get("url"):
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._tail()
                self.__exit__(None, None, None)
                raise RuntimeError(f"the fabric did not start; its log ends with:\n{tail}")
            time.sleep(0.05)
        self.url, self.token = info["url"], info.get("token", "")
        return self

    def _tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def __exit__(self, *exc: Any) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        shutil.rmtree(self.data_dir, ignore_errors=True)


# ---- timing and the table ----


def timed(label: str, run: Callable[[], Any], check: Callable[[Any], None]) -> tuple[str, float]:
    """Run once, check the outcome, return (label, wall seconds)."""
    print(f"  running: {label} ...", flush=True)
    started = time.perf_counter()
    outcome = run()
    wall = time.perf_counter() - started
    check(outcome)
    print(f"  done:    {label}: {wall:.2f} s", flush=True)
    return label, wall


def report(title: str, tasks: int, rows: list[tuple[str, float]]) -> None:
    """The table: the first row is the orchestrator's own way, the baseline."""
    base = rows[0][1]
    print(f"\n{title}")
    print(f"{'':46} {'wall s':>8} {'per task ms':>12} {'x first row':>12}")
    for label, wall in rows:
        print(f"{label:46} {wall:8.2f} {wall * 1000 / tasks:12.1f} {wall / base:11.2f}x")
    print(f"({tasks} tasks; {os.cpu_count()} CPUs; Python {sys.version.split()[0]})", flush=True)


def square(x: int) -> int:
    return x * x


# ---- airflow ----

AIRFLOW_DAGS = '''
"""DAGs of bench/orchestrators.py: N mapped tasks and their sum, three ways."""
import os

import pendulum
from airflow.sdk import dag, task

N = int(os.environ.get("BENCH_AIRFLOW_TASKS", "50"))
START = pendulum.datetime(2025, 1, 1, tz="UTC")


def _square_plain():
    @task(task_id="square")
    def square(x: int) -> int:
        return x * x

    return square


def _square_fabric(deferrable: bool):
    # One app and function name for every DAG: the warm-up's container is the timed runs' too.
    @task.gpu_fabric(task_id="square", app_name="bench-orchestrators", function_name="square",
                     deferrable=deferrable, poll_interval=30)
    def square(x: int) -> int:
        return x * x

    return square


def _mapped(dag_id: str, make_square, count: int):
    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False, tags=["bench"])
    def build():
        @task
        def total(values) -> int:
            # By index: iterating the lazy XCom sequence reads one past its end (an error in the log).
            return sum(values[i] for i in range(len(values)))

        total(make_square().expand(x=list(range(count))))

    return build()


_mapped("bench_warmup_plain", _square_plain, 2)
_mapped("bench_warmup_fabric", lambda: _square_fabric(True), 2)
_mapped("bench_plain", _square_plain, N)
_mapped("bench_fabric_deferrable", lambda: _square_fabric(True), N)
_mapped("bench_fabric_sync", lambda: _square_fabric(False), N)
'''


def _airflow_home(tasks: int) -> str:
    """A temporary AIRFLOW_HOME with the bench DAGs; sets Airflow's environment (before its import)."""
    home = tempfile.mkdtemp(prefix="bench-airflow-")
    dags = os.path.join(home, "dags")
    os.makedirs(dags)
    with open(os.path.join(dags, "bench_orchestrators_dags.py"), "w") as fh:
        fh.write(AIRFLOW_DAGS.lstrip())
    os.environ.update({
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": dags,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{os.path.join(home, 'airflow.db')}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "BENCH_AIRFLOW_TASKS": str(tasks),
    })  # fmt: skip
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    cmd = [airflow] if os.path.exists(airflow) else [sys.executable, "-m", "airflow"]
    print("  airflow db migrate ...", flush=True)
    proc = subprocess.run([*cmd, "db", "migrate"], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return home


def bench_airflow(tasks: int) -> None:
    home = _airflow_home(tasks)
    try:
        with Fabric() as fab:
            os.environ["AIRFLOW_CONN_GPU_FABRIC_DEFAULT"] = json.dumps(
                {"conn_type": "gpu_fabric", "host": fab.url, "password": fab.token})
            import airflow
            from airflow.dag_processing.dagbag import DagBag

            bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
            if bag.import_errors:
                raise RuntimeError(f"the bench DAGs did not import: {bag.import_errors}")

            def run(dag_id: str) -> Callable[[], Any]:
                return lambda: bag.get_dag(dag_id).test()

            def check(count: int) -> Callable[[Any], None]:
                def _check(dag_run: Any) -> None:
                    if str(dag_run.state) != "success":
                        states = {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}
                        failed = {k: v for k, v in states.items() if v != "success"}
                        raise RuntimeError(f"{dag_run.dag_id} ended {dag_run.state}: {failed}")
                    total = _airflow_xcom(dag_run, "total")
                    expected = sum(i * i for i in range(count))
                    if total != expected:
                        raise RuntimeError(f"{dag_run.dag_id}: total {total!r}, expected {expected}")
                return _check

            print("warm-up (untimed): Airflow's first dag.test(), the fabric's first container", flush=True)
            timed("warm-up, plain", run("bench_warmup_plain"), check(2))
            timed("warm-up, fabric", run("bench_warmup_fabric"), check(2))
            rows = [
                timed("plain @task", run("bench_plain"), check(tasks)),
                timed("@task.gpu_fabric (deferrable)", run("bench_fabric_deferrable"), check(tasks)),
                timed("@task.gpu_fabric(deferrable=False)", run("bench_fabric_sync"), check(tasks)),
            ]
            report(f"airflow {airflow.__version__}: dag.test() of {tasks} mapped tasks + 1 sum task",
                   tasks, rows)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _airflow_xcom(dag_run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key="return_value")
        ).scalars().all()
        return XComModel.deserialize_value(rows[0]) if rows else None


# ---- prefect ----


def _prefect_flow() -> Any:
    from prefect import flow, task

    @task
    def inc(x: int) -> int:
        return x + 1

    @flow(name="bench-orchestrators")
    def fan_out(n: int) -> int:
        return sum(inc.map(range(n)).result())

    return fan_out


def bench_prefect(tasks: int) -> None:
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    # Before Prefect's import: no telemetry, Prefect's home (result storage) kept out of the user's.
    os.environ.update({
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })  # fmt: skip
    try:
        with Fabric() as fab:
            import prefect
            from prefect.task_runners import ThreadPoolTaskRunner
            from prefect.testing.utilities import prefect_test_harness

            from prefect_integration import GpuFabricTaskRunner

            def fabric_runner() -> Any:
                return GpuFabricTaskRunner(url=fab.url, token=fab.token, app_name="bench-orchestrators")

            runners: list[tuple[str, Callable[[], Any]]] = [
                ("ThreadPoolTaskRunner", ThreadPoolTaskRunner),
                ("GpuFabricTaskRunner", fabric_runner),
            ]
            try:
                from prefect_dask import DaskTaskRunner
            except ImportError:
                print("  prefect-dask is not installed: no DaskTaskRunner row", flush=True)
            else:
                runners.append(("DaskTaskRunner", DaskTaskRunner))

            fan_out = _prefect_flow()

            def run(make_runner: Callable[[], Any], n: int) -> Callable[[], Any]:
                return lambda: fan_out.with_options(task_runner=make_runner())(n)

            def check(n: int) -> Callable[[Any], None]:
                def _check(total: Any) -> None:
                    expected = sum(range(1, n + 1))
                    if total != expected:
                        raise RuntimeError(f"the flow returned {total!r}, expected {expected}")
                return _check

            with prefect_test_harness(server_startup_timeout=300):
                print("warm-up (untimed): the Prefect server's and client's first flow runs", flush=True)
                timed("warm-up, ThreadPoolTaskRunner", run(ThreadPoolTaskRunner, 5), check(5))
                # Each flow run starts its own fabric app: this one says what that costs alone.
                timed("warm-up, GpuFabricTaskRunner", run(fabric_runner, 5), check(5))
                rows = [timed(label, run(make, tasks), check(tasks)) for label, make in runners]
            report(f"prefect {prefect.__version__}: a flow mapping a small task over {tasks} inputs",
                   tasks, rows)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---- dagster ----


def _dagster_assets(count: int, through_fabric: bool) -> list[Any]:
    from dagster import asset

    from dagster_resource import GpuFabricResource

    def local_asset(i: int) -> Any:
        @asset(name=f"square_{i}")
        def square_asset() -> int:
            return square(i)

        return square_asset

    def fabric_asset(i: int) -> Any:
        @asset(name=f"square_{i}")
        def square_asset(gpu_fabric: GpuFabricResource) -> int:
            return gpu_fabric.call(square, i)

        return square_asset

    make = fabric_asset if through_fabric else local_asset
    return [make(i) for i in range(count)]


def bench_dagster(tasks: int) -> None:
    home = tempfile.mkdtemp(prefix="bench-dagster-")
    os.environ["DAGSTER_HOME"] = home
    try:
        with Fabric() as fab:
            import dagster
            from dagster import DagsterInstance, materialize

            from dagster_resource import GpuFabricResource

            # Dagster logs every event at DEBUG to the console by default: a few lines per step.
            QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

            def run(count: int, through_fabric: bool) -> Callable[[], Any]:
                def _run() -> Any:
                    resources = {"gpu_fabric": GpuFabricResource(url=fab.url, token=fab.token, show_logs=False)}
                    return materialize(_dagster_assets(count, through_fabric),
                                       resources=resources if through_fabric else None,
                                       instance=DagsterInstance.ephemeral(), run_config=QUIET)
                return _run

            def check(count: int) -> Callable[[Any], None]:
                def _check(result: Any) -> None:
                    if not result.success:
                        raise RuntimeError("the materialization failed")
                    wrong = {i: result.output_for_node(f"square_{i}") for i in range(count)
                             if result.output_for_node(f"square_{i}") != i * i}
                    if wrong:
                        raise RuntimeError(f"wrong values: {wrong}")
                return _check

            print("warm-up (untimed): Dagster's first materialize(), the fabric's first container", flush=True)
            timed("warm-up, in-process", run(2, False), check(2))
            timed("warm-up, GpuFabricResource", run(2, True), check(2))
            rows = [
                timed("in-process executor, computed in the step", run(tasks, False), check(tasks)),
                timed("in-process executor, GpuFabricResource.call", run(tasks, True), check(tasks)),
            ]
            report(f"dagster {dagster.__version__}: materialize() of {tasks} assets",
                   tasks, rows)
    finally:
        shutil.rmtree(home, ignore_errors=True)


BENCHES = {"airflow": bench_airflow, "prefect": bench_prefect, "dagster": bench_dagster}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=textwrap.dedent("\n".join(__doc__.splitlines()[2:])))
    parser.add_argument("orchestrator", choices=sorted(BENCHES))
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--small", action="store_true", help="a tenth of the tasks: a quick check")
    sizes.add_argument("--tasks", type=int, help="number of tasks (default: airflow 50, prefect 500, dagster 100)")
    args = parser.parse_args()
    full = FULL_SIZES[args.orchestrator]
    tasks = args.tasks or (max(2, full // 10) if args.small else full)
    for key in ("GPUFABRIC_URL", "GPUFABRIC_TOKEN"):
        os.environ.pop(key, None)  # each bench talks to the fabric it starts
    sys.path.insert(0, REPO)
    print(f"{args.orchestrator}: {tasks} tasks, fabric: python -m gpu_fabric serve (one local worker)", flush=True)
    BENCHES[args.orchestrator](tasks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
