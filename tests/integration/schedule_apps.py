"""A deployed app with a schedule (the integration test deploys it)."""
import os
import time

import core_executor as fabric

app = fabric.App("scheduled")


@app.function(schedule=fabric.Period(seconds=1))
def heartbeat() -> None:
    path = os.environ.get("HEARTBEAT_FILE") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".heartbeat")
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
