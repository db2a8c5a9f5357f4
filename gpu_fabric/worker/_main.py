"""The `worker` command: runs a worker agent until SIGTERM/SIGINT."""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Optional, Sequence

import click

__all__ = ["run_worker", "worker_command"]


def _resources(cpu: Optional[float], memory_mb: Optional[int], simulate_gpus: str):
    import psutil

    from gpu_fabric.proto import worker_pb2

    from ._gpus import discover_gpus

    return worker_pb2.WorkerResources(
        cpu=cpu if cpu else float(os.cpu_count() or 1),
        memory_mb=memory_mb if memory_mb else psutil.virtual_memory().total // (1024 * 1024),
        gpus=discover_gpus(simulate_gpus),
    )


@click.command("worker")
@click.option("--url", required=True, help="Control plane address, grpc://HOST:PORT.")
@click.option("--token", required=True, help="Worker token of the fabric.")
@click.option("--simulate-gpus", default="", help="Advertise simulated GPUs, e.g. H100:2,T4:1 (tests).")
@click.option("--cpu", type=float, default=None, help="CPU cores to offer (default: all).")
@click.option("--memory-mb", type=int, default=None, help="Memory to offer in MiB (default: all).")
@click.option("--heartbeat-interval", type=float, default=None,
              help="Seconds between heartbeats (default: what the control plane says).")
@click.option("--log-level", default="INFO", show_default=True, help="Python logging level.")
@click.option("--hostname", default=None,
              help="Name to register under (default: this machine's); a launched worker's is its launch name.")
def worker_command(
    url: str,
    token: str,
    simulate_gpus: str,
    cpu: Optional[float],
    memory_mb: Optional[int],
    heartbeat_interval: Optional[float],
    log_level: str,
    hostname: Optional[str] = None,
) -> None:
    """Run a worker agent that starts containers for the control plane at URL."""
    from core_executor._runtime._signals import call_on_signals

    from ._agent import WorkerAgent, WorkerError
    from ._gpus import GpuDiscoveryError

    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s gpufabric.worker: %(message)s",
    )
    try:
        agent = WorkerAgent(
            url, token,
            resources=_resources(cpu, memory_mb, simulate_gpus),
            heartbeat_interval_s=heartbeat_interval,
            hostname=hostname,
        )
    except (WorkerError, GpuDiscoveryError) as exc:
        raise click.UsageError(str(exc)) from None

    call_on_signals(agent.stop, (signal.SIGTERM, signal.SIGINT))
    try:
        agent.run()
    except WorkerError as exc:
        click.echo(f"gpufabric worker: {exc}", err=True)
        sys.exit(1)


def run_worker(argv: Optional[Sequence[str]] = None) -> None:
    """`python -m gpu_fabric worker ARGS`: parses ARGS and runs until SIGTERM/SIGINT (exits)."""
    worker_command.main(args=list(argv) if argv is not None else None, prog_name="gpufabric worker")


if __name__ == "__main__":
    run_worker()
