"""Classes that ask for warm starts (fork-server zygotes); the snapshot tests call them."""
import os
import time

import core_executor as fabric

app = fabric.App("snapshot-integration")


def _host_pid() -> int:
    """Our pid as the host sees it: under CRIU snapshots, containers live in a PID namespace of
    their zygote's, where os.getpid() is small."""
    return int(os.readlink("/proc/self"))


@app.cls(scaledown_window=1, cpu=0.25)
class Warm:
    @fabric.enter(snap=True)
    def load(self):
        import json  # stands in for a heavy import: done once, in the zygote

        self.snap_pid = os.getpid()
        self.snap_host_pid = _host_pid()
        self.table = json.loads('{"answer": 42}')

    @fabric.enter()
    def connect(self):
        self.enter_pid = os.getpid()  # non-snap setup runs in every container, after the fork

    @fabric.method()
    def where(self):
        return {"snap_pid": self.snap_pid, "snap_host_pid": self.snap_host_pid, "host_pid": _host_pid(),
                "enter_pid": self.enter_pid, "pid": os.getpid(),
                "ppid": os.getppid(), "answer": self.table["answer"], "at": time.time(),
                # Set where the worker handed over this container's hello (read and removed at start).
                "hello_file": os.environ.get("GPUFABRIC_HELLO_FILE", "")}


@app.function(enable_memory_snapshot=True, scaledown_window=1, cpu=0.25)
def warm_function(x):
    return {"pid": os.getpid(), "host_pid": _host_pid(), "ppid": os.getppid(), "twice": 2 * x}


@app.cls(scaledown_window=1, cpu=0.25)
class BrokenWarmUp:
    @fabric.enter(snap=True)
    def load(self):
        raise RuntimeError("no model file here")

    @fabric.method()
    def run(self):
        return "unreachable"
