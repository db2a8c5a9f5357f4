"""A deployed app with a schedule (the integration test deploys it)."""
import os
import tempfile
import time

import core_executor as fabric

app = fabric.App("scheduled")


@app.function(schedule=fabric.Period(seconds=1))
def heartbeat() -> None:
    path = os.environ.get("HEARTBEAT_FILE") or os.path.join(tempfile.gettempdir(), "gpufabric-heartbeat")
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
