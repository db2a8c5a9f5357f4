"""SIGTERM handling of workers and containers: `stop` never runs inside the main thread's own locks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

# The main thread spends its time inside a lock that `stop` takes too, as the agent's does inside its
# Event's and Queue's locks: a signal handler that called `stop` itself would wait on its own thread.
CHILD = textwrap.dedent("""
    import sys, threading, time
    from core_executor._runtime._signals import call_on_signals

    lock, stopped = threading.Lock(), []

    def stop():
        with lock:
            stopped.append(True)

    if sys.argv[1] == "thread":
        call_on_signals(stop, (15, 2))
    else:  # what the worker did before
        import signal
        signal.signal(15, lambda *_: stop())
    print("ready", flush=True)
    while not stopped:
        with lock:
            time.sleep(0.001)
    print("stopped", flush=True)
""")


def _signalled(mode: str, count: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    for _ in range(count):  # a worker started by serve gets one per thread of its dying parent
        os.kill(proc.pid, signal.SIGTERM)
        time.sleep(0.001)
    return proc


def test_sigterms_stop_the_worker_from_a_thread():
    for count in (1, 5):
        proc = _signalled("thread", count)
        out, _ = proc.communicate(timeout=20)
        # A signal that lands after the main loop ended, in interpreter shutdown, may still end it.
        assert out.strip() == "stopped" and proc.returncode in (0, -signal.SIGTERM)


def test_a_handler_calling_stop_itself_hangs():
    """The failure the thread avoids, shown on the same child."""
    proc = _signalled("handler", 1)
    try:
        proc.communicate(timeout=3)
        hung = False
    except subprocess.TimeoutExpired:
        hung = True
    finally:
        proc.kill()
        proc.communicate()
    assert hung
