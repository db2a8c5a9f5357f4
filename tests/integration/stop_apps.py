"""Functions for the app-stop tests: one that runs until stopped, one that waits to be retried."""
import os
import time

import core_executor as fabric

app = fabric.App("stop-integration")


@app.function(max_containers=1, timeout=600)
def hold(path: str, seconds: float) -> None:
    """Runs for `seconds`; with one container at most, a second call waits in the queue."""
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(seconds)


@app.function(retries=fabric.Retries(max_retries=3, initial_delay=60.0), timeout=60)
def flaky() -> None:
    raise RuntimeError("fails; its retry waits a minute")


@app.local_entrypoint()
def spawn_hold(path: str, seconds: float = 1.0):
    """Spawns `hold` and returns at once, printing the call's id."""
    print(f"call {hold.spawn(path, seconds).object_id}")
