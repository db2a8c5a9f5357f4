"""Airflow's metadata DB in a temp AIRFLOW_HOME, and a real fabric the DAGs call.

Airflow reads its settings when it is first imported, so the environment is set here, at the
top of the conftest, before any test module imports airflow.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples", "airflow")

TEST_DAGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dags")

_HOME = tempfile.mkdtemp(prefix="airflow-home-")
# dag.test() re-parses the configured DAG folder, so the examples and the test DAGs share one.
DAGS_FOLDER = os.path.join(_HOME, "dags")
os.makedirs(DAGS_FOLDER)
for _folder in (EXAMPLES, TEST_DAGS):
    for _name in sorted(os.listdir(_folder)):
        if _name.endswith(".py"):
            shutil.copy(os.path.join(_folder, _name), DAGS_FOLDER)
os.environ.update({
    "AIRFLOW_HOME": _HOME,
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": DAGS_FOLDER,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{os.path.join(_HOME, 'airflow.db')}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
})
for _key in ("GPUFABRIC_URL", "GPUFABRIC_TOKEN"):
    os.environ.pop(_key, None)

from tests.integration.conftest import Fabric  # noqa: E402


def _migrate() -> None:
    airflow = os.path.join(os.path.dirname(sys.executable), "airflow")
    cmd = [airflow, "db", "migrate"] if os.path.exists(airflow) else [sys.executable, "-m", "airflow", "db", "migrate"]
    proc = subprocess.run(cmd, env=os.environ.copy(), capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


@pytest.fixture(scope="session", autouse=True)
def airflow_db():
    """A migrated SQLite metadata DB under the temp AIRFLOW_HOME (removed after the session)."""
    _migrate()
    yield _HOME
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def fabric_server(tmp_path_factory):
    """One `gpufabric serve` for the session, with simulated GPUs."""
    server = Fabric(str(tmp_path_factory.mktemp("fabric")), "--heartbeat-timeout", "5",
                    "--simulate-gpus", "H100:4", "--scaledown-window", "60").start()
    yield server
    server.stop()


def connection_json(url: str, token: str, **extra) -> str:
    """An AIRFLOW_CONN_* value for a gpu_fabric connection."""
    conn = {"conn_type": "gpu_fabric", "host": url, "password": token}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


@pytest.fixture
def fabric_conn(fabric_server, monkeypatch):
    """The default connection `gpu_fabric_default` points at the session's fabric."""
    monkeypatch.setenv("AIRFLOW_CONN_GPU_FABRIC_DEFAULT", connection_json(fabric_server.url, fabric_server.token))
    return fabric_server


@pytest.fixture(scope="session")
def deployed_app(fabric_server):
    """`airflow-provider-tests` (double, fail, slow) deployed on the session's fabric."""
    import core_executor as fabric

    from tests.airflow_provider import fabric_apps

    client = fabric.Client(fabric_server.url, fabric_server.token)
    fabric_apps.app.deploy(client=client)
    yield fabric_apps.app
    client.close()


@pytest.fixture
def client(fabric_server):
    """A client of the session's fabric."""
    import core_executor as fabric

    c = fabric.Client(fabric_server.url, fabric_server.token)
    yield c
    c.close()
