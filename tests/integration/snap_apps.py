"""Classes that ask for warm starts (fork-server zygotes); the snapshot tests call them."""
import os
import time

import core_executor as fabric

app = fabric.App("snapshot-integration")


@app.cls(scaledown_window=1, cpu=0.25)
class Warm:
    @fabric.enter(snap=True)
    def load(self):
        import json  # stands in for a heavy import: done once, in the zygote

        self.snap_pid = os.getpid()
        self.table = json.loads('{"answer": 42}')

    @fabric.enter()
    def connect(self):
        self.enter_pid = os.getpid()  # non-snap setup runs in every container, after the fork

    @fabric.method()
    def where(self):
        return {"snap_pid": self.snap_pid, "enter_pid": self.enter_pid, "pid": os.getpid(),
                "ppid": os.getppid(), "answer": self.table["answer"], "at": time.time()}


@app.function(enable_memory_snapshot=True, scaledown_window=1, cpu=0.25)
def warm_function(x):
    return {"pid": os.getpid(), "ppid": os.getppid(), "twice": 2 * x}


@app.cls(scaledown_window=1, cpu=0.25)
class BrokenWarmUp:
    @fabric.enter(snap=True)
    def load(self):
        raise RuntimeError("no model file here")

    @fabric.method()
    def run(self):
        return "unreachable"
