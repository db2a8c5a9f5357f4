"""`python -m gpu_fabric serve|worker`: the fabric's own processes (the SDK's CLI execs these)."""
from __future__ import annotations

import asyncio
import logging
import os
import sys

import click


# `serve` exits with this when another fabric holds its data dir (the SDK then picks another).
DATA_DIR_IN_USE_EXIT = 75


@click.group()
def cli() -> None:
    """gpu-fabric server-side processes."""


def _default_data_dir() -> str:
    return os.environ.get("GPUFABRIC_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".gpufabric", "fabric")


@cli.command(context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0 for other machines).")
@click.option("--port", default=7373, type=int, help="Port to listen on (0 picks a free one).")
@click.option("--data-dir", default=None, help="Where state (SQLite) and blobs live. [default: ~/.gpufabric/fabric]")
@click.option("--token", default=None, envvar="GPUFABRIC_SERVE_TOKEN", help="Token clients and workers must present (kept in the data dir when not given).")
@click.option("--workers", default=1, type=int, help="Local worker agents to start (0 for a control plane only).")
@click.option("--simulate-gpus", default="", help="Local workers advertise simulated GPUs, e.g. H100:2 (tests only).")
@click.option("--worker-cpu", default=None, type=float, help="CPUs each local worker offers.")
@click.option("--worker-memory-mb", default=None, type=int, help="Memory each local worker offers.")
@click.option("--heartbeat-timeout", default=10.0, type=float, help="Seconds without a heartbeat before a worker is lost.")
@click.option("--app-heartbeat-timeout", default=30.0, type=float, help="Seconds without a client heartbeat before an ephemeral app stops.")
@click.option("--max-payload-bytes", default=8 * 1024**3, type=int, help="Largest argument or result payload accepted.")
@click.option("--scaledown-window", default=60.0, type=float, help="Default seconds an idle container stays warm.")
@click.option("--ready-file", default=None, help="Write {url, token, pid} as JSON here once serving.")
@click.option("--embedded", is_flag=True, help="Exit when stdin closes (used by the SDK's embedded fabric).")
@click.option("--log-level", default="WARNING")
# Capacity from clouds (gpu_fabric.control_plane._autoscaler.configure).
@click.option("--provider", "providers", multiple=True, type=click.Choice(["local", "aws", "gcp", "oci", "simulated"]), help="Launch workers on this provider when queued inputs need GPUs (repeatable; simulated: worker processes here posing as a cloud's machines).")
@click.option("--provider-config", default=None, type=click.Path(exists=True, dir_okay=False), help="JSON file: {provider: {option: value}} (regions, image_ids, project, compartment_id...).")
@click.option("--budget", "budget_usd", default=None, type=float, help="Stop launching machines once all of them together cost this many USD.")
@click.option("--workspace-budget", "workspace_budgets", multiple=True, help="WORKSPACE=USD: stop launching for a workspace once its containers and the idle time of machines launched for it cost this much (repeatable).")
@click.option("--app-budget", "app_budgets", multiple=True, help="APP=USD: stop launching for an app once its containers cost this much (repeatable).")
@click.option("--launch-timeout", default=900.0, type=float, help="Seconds a launched machine has to register its worker.")
@click.option("--idle-window", default=300.0, type=float, help="Most seconds a launched worker may idle before it is terminated.")
@click.option("--idle-policy", default="adaptive", type=click.Choice(["adaptive", "fixed"]), help="adaptive: keep an idle machine only while that is expected to cost less than relaunching it (from each function's arrival gaps and the provider's launch latency), up to --idle-window; fixed: always the whole --idle-window.")
@click.option("--keep-machines", is_flag=True, help="On stop, leave launched machines running for the next start to adopt (restarts, upgrades); by default they are terminated.")
@click.option("--public-url", default=None, help="Control plane URL launched machines dial (default: the listening URL).")
# The HTTP gateway (gpu_fabric.web): web endpoints, dashboard, /metrics.
@click.option("--http-port", default=None, type=int, help="Port of the web gateway and dashboard. [default: --port + 1, or a free one with --port 0]")
@click.option("--http-host", default=None, help="Address the web gateway listens on. [default: --host]")
@click.option("--http-max-body-bytes", default=64 * 1024 * 1024, type=int, help="Largest web request body accepted (larger: 413).")
@click.option("--http-public-url", default=None, help="Base URL handed out for web endpoints when behind a proxy.")
@click.option("--no-http", is_flag=True, help="Serve no web endpoints, dashboard or metrics.")
# --- shared fabric (docs/shared-fabric.md) ---
@click.option("--database", default="", envvar="GPUFABRIC_DATABASE", help="postgresql://USER:PASS@HOST/DB: keep state in PostgreSQL instead of SQLite in the data dir.")
@click.option("--tls-cert", default="", help="PEM certificate chain: serve grpcs:// (with --tls-key).")
@click.option("--tls-key", default="", help="PEM private key of --tls-cert.")
# --- end shared fabric ---
def serve(host, port, data_dir, token, workers, simulate_gpus, worker_cpu, worker_memory_mb, heartbeat_timeout,
          app_heartbeat_timeout, max_payload_bytes, scaledown_window, ready_file, embedded, log_level,
          providers, provider_config, budget_usd, workspace_budgets, app_budgets, launch_timeout, idle_window, idle_policy,
          keep_machines, public_url,
          http_port, http_host, http_max_body_bytes, http_public_url, no_http, database, tls_cert, tls_key) -> None:
    """Run a control plane with local workers until interrupted."""
    from ._serve import serve as run

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    worker_args = []
    if simulate_gpus:
        worker_args += ["--simulate-gpus", simulate_gpus]
    if worker_cpu:
        worker_args += ["--cpu", str(worker_cpu)]
    if worker_memory_mb:
        worker_args += ["--memory-mb", str(worker_memory_mb)]
    engine_options = {
        "heartbeat_timeout_s": heartbeat_timeout, "app_heartbeat_timeout_s": app_heartbeat_timeout,
        "max_payload_bytes": max_payload_bytes, "default_scaledown_window_s": scaledown_window,
    }
    if not no_http:  # gpu_fabric.web.WebGateway
        engine_options["web"] = {"host": http_host or host, "port": http_port if http_port is not None else (port + 1 if port else 0),
                                 "max_body_bytes": http_max_body_bytes, "public_url": http_public_url}
    engine_options.update(database=database, tls_cert=tls_cert, tls_key=tls_key)  # shared fabric: ControlPlane options
    if providers:
        engine_options["capacity"] = _capacity_options(providers, provider_config, budget_usd, app_budgets, launch_timeout,
                                                       idle_window, public_url, workspace_budgets=workspace_budgets,
                                                       idle_policy=idle_policy, keep_machines=keep_machines)
    from .control_plane import DataDirInUse

    try:
        asyncio.run(run(
            data_dir=data_dir or _default_data_dir(), host=host, port=port, token=token, workers=workers,
            worker_args=worker_args, ready_file=ready_file, embedded=embedded, engine_options=engine_options,
        ))
    except DataDirInUse as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(DATA_DIR_IN_USE_EXIT)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


def _named_amounts(items, option: str, what: str) -> dict:
    """NAME=USD items of a repeatable option as {name: usd}; a bad item is a usage error naming it."""
    out = {}
    for item in items:
        name, sep, usd = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError(item)
            out[name.strip()] = float(usd)
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected {what}=USD, e.g. {option} ml-team=250", param_hint=option) from None
        if out[name.strip()] < 0:
            raise click.BadParameter(f"{item!r}: a budget cannot be negative", param_hint=option)
    return out


def _capacity_options(providers, provider_config, budget_usd, app_budgets, launch_timeout, idle_window, public_url, *,
                      workspace_budgets=(), idle_policy="adaptive", keep_machines=False) -> dict:
    import json

    config = {}
    if provider_config:
        with open(provider_config) as f:
            config = json.load(f)
    return {"providers": list(providers), "provider_config": config, "budget_usd": budget_usd,
            "workspace_budgets": _named_amounts(workspace_budgets, "--workspace-budget", "WORKSPACE"),
            "app_budgets": _named_amounts(app_budgets, "--app-budget", "APP"),
            "launch_timeout_s": launch_timeout, "idle_window_s": idle_window, "adaptive_idle": idle_policy == "adaptive",
            "keep_machines": keep_machines, "public_url": public_url}


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []})
@click.pass_context
def worker(ctx) -> None:
    """Run a worker agent (see `python -m gpu_fabric worker --help`)."""
    from .worker._main import run_worker

    _die_with_parent()
    sys.exit(run_worker(list(ctx.args)) or 0)


def _die_with_parent() -> None:
    """A worker started by `serve` ends with it (PR_SET_PDEATHSIG), even if serve is SIGKILLed."""
    parent = os.environ.pop("GPUFABRIC_PARENT_PID", "")
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != int(parent):
        sys.exit(1)  # the parent died before the request took effect


from ._token_cli import token_cli  # noqa: E402 - shared fabric: `token create|list|revoke`

cli.add_command(token_cli)

if __name__ == "__main__":
    cli()
