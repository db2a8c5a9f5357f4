"""Dict, Queue and secrets through a real fabric: containers, restarts, and where secrets never show."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys

import pytest

import core_executor as fabric
from core_executor import exception

from . import objects_apps as apps

pytestmark = pytest.mark.integration

SECRET = "it-s3cret-v4lue-5d2a"
INLINE = "inline-v4lue-93b1"


def _gpufabric(*args: str) -> subprocess.CompletedProcess:
    cli = os.path.join(os.path.dirname(sys.executable), "gpufabric")
    return subprocess.run([cli, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_a_queue_filled_by_map_in_containers_is_drained_by_the_caller(fabric_env):
    with apps.app.run(show_logs=False), fabric.Queue.ephemeral() as q:
        assert sorted(apps.produce.map(range(20), [q] * 20)) == list(range(20))
        got = q.get_many(100, timeout=10)
        while len(got) < 20:
            got += q.get_many(100, timeout=10)
        assert sorted(got) == [x * x for x in range(20)]
        named = fabric.Queue.from_name("it-named-queue")
        assert sorted(named.get_many(100, partition="named", timeout=10)) == list(range(20))
        # A container blocks on the queue until the caller fills it.
        call = apps.consume.spawn(q, 3)
        q.put_many(["a", "b", "c"])
        assert call.get(timeout=60) == ["a", "b", "c"]


def test_compare_and_set_from_many_containers_has_one_winner(fabric_env):
    with apps.app.run(show_logs=False):
        won = list(apps.claim.map(["it-claims"] * 8, ["leader"] * 8, range(8)))
    assert won.count(True) == 1
    assert fabric.Dict.from_name("it-claims")["leader"] == won.index(True)


def test_dicts_and_queues_survive_a_control_plane_restart(new_fabric):
    fab = new_fabric("--heartbeat-timeout", "3")
    d = fabric.Dict.from_name("it-durable", create_if_missing=True)
    q = fabric.Queue.from_name("it-durable", create_if_missing=True)
    d.update({"a": 1, ("b", 2): [3]})
    q.put_many(["first", "second"])
    fab.stop(signal.SIGKILL)
    fab.start()  # same data dir, port and token
    assert d["a"] == 1 and d[("b", 2)] == [3] and len(d) == 2
    assert fabric.Dict.from_name("it-durable").object_id == d.object_id
    assert q.get(timeout=10) == "first" and q.len() == 1


def test_secrets_reach_the_container_environment_only(new_fabric, monkeypatch):
    fab = new_fabric("--heartbeat-timeout", "3")
    monkeypatch.setattr(apps.inline, "values", {"IT_INLINE": INLINE})  # as if read from the environment
    with pytest.raises(exception.NotFoundError, match="gpufabric secret create it-secret KEY=VALUE"):
        with apps.secret_app.run(show_logs=False):
            pass
    created = _gpufabric("secret", "create", "it-secret", f"IT_TOKEN={SECRET}")
    assert created.returncode == 0, created.stderr
    with apps.secret_app.run(show_logs=False):
        digests = apps.secret_digests.remote()
    assert digests == {"IT_TOKEN": hashlib.sha256(SECRET.encode()).hexdigest(),
                       "IT_INLINE": hashlib.sha256(INLINE.encode()).hexdigest()}
    assert "IT_TOKEN" not in os.environ and "IT_INLINE" not in os.environ
    listed = _gpufabric("secret", "list", "--all")
    assert listed.returncode == 0 and "it-secret" in listed.stdout and "IT_TOKEN" in listed.stdout
    logs = _gpufabric("app", "logs", "secrets-integration")
    assert "looked at the environment" in logs.stdout
    for text in (created.stdout, created.stderr, listed.stdout, logs.stdout, logs.stderr):
        assert SECRET not in text and INLINE not in text
    fab.stop()  # flush everything to disk, then look at every file the fabric wrote
    for root, _, files in os.walk(fab.data_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                data = fh.read()
            assert SECRET.encode() not in data, f"plaintext secret in {name}"
            assert INLINE.encode() not in data, f"plaintext inline secret in {name}"


@pytest.mark.parametrize("example, expected", [
    ("objects.py", ["squares: [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]", "dict entries: 10 job-7 -> 49", "leaders elected: 1"]),
    ("secrets_demo.py", ["the container got DEMO_API_KEY: True"]),
])
def test_examples_run_on_the_embedded_fabric(tmp_path, example, expected):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, GPUFABRIC_DATA_DIR=str(tmp_path / "embedded"))
    env.pop("GPUFABRIC_URL", None)
    env.pop("GPUFABRIC_TOKEN", None)
    cli = os.path.join(os.path.dirname(sys.executable), "gpufabric")
    proc = subprocess.run([cli, "run", os.path.join(root, "examples", example)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    for line in expected:
        assert line in proc.stdout
