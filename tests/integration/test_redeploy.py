"""Redeploying an app rolls new containers in without dropping queued inputs."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import core_executor as fabric

pytestmark = pytest.mark.integration

GPUFABRIC = os.path.join(os.path.dirname(sys.executable), "gpufabric")

SOURCE = textwrap.dedent('''
    import time
    import core_executor as fabric

    app = fabric.App("rolling")

    @app.function(max_containers=1)
    def which(x):
        time.sleep(0.3)
        return "{version}"
''')


def _deploy(path, version):
    path.write_text(SOURCE.format(version=version))
    proc = subprocess.run([GPUFABRIC, "deploy", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_redeploy_keeps_queued_inputs_and_serves_them_with_new_code(fabric_env, tmp_path):
    app_file = tmp_path / "rolling_app.py"
    _deploy(app_file, "v1")
    which = fabric.Function.from_name("rolling", "which")
    assert which.remote(0) == "v1"
    calls = [which.spawn(i) for i in range(8)]  # one container: most of these wait in the queue
    _deploy(app_file, "v2")
    results = [c.get(timeout=120) for c in calls]
    assert len(results) == 8 and set(results) <= {"v1", "v2"}
    assert results[-1] == "v2"  # queued inputs ran on the new version's containers
    assert fabric.Function.from_name("rolling", "which").remote(0) == "v2"
    listing = subprocess.run([GPUFABRIC, "app", "list"], capture_output=True, text=True, timeout=60).stdout
    assert "v2" in [line for line in listing.splitlines() if "rolling" in line][0]
