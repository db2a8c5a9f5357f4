"""Entry point of a container process started by the worker agent."""
import os
import sys


def _die_with_agent() -> None:
    """Asks the kernel to SIGKILL us when the agent that started us dies (PR_SET_PDEATHSIG).

    Done here rather than in a preexec_fn: running Python between fork and exec in the agent,
    which holds gRPC threads, is not safe.
    """
    agent_pid = os.environ.get("GPUFABRIC_AGENT_PID", "")
    if not agent_pid or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != int(agent_pid):
        os._exit(1)  # the agent died before the request took effect


if __name__ == "__main__":
    _die_with_agent()
    from core_executor._runtime._container import main

    main()
