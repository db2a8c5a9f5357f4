"""The `gpufabric` command line: run, deploy, serve, worker and app list/stop/logs."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import time
from typing import Any, Callable

import click

from . import _cli_volume, exception
from ._app import App, LocalEntrypoint
from ._functions import Function

# Replaced in tests; `serve` and `worker` hand the process over to the fabric's own CLI.
_exec: Callable[[str, list[str]], Any] = os.execv

_PASSTHROUGH = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


class _ErrorsAsMessages(click.Group):
    """Print fabric errors as one clear message (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except exception.Error as exc:
            if type(exc).__module__ != exception.__name__:
                raise  # a user exception type that subclasses ours: keep its traceback
            click.echo(f"Error: {exc}", err=True)
            cause = exc.__cause__
            if cause is not None and type(cause).__name__ == "RemoteTraceback":
                click.echo(str(cause), err=True)
            ctx.exit(1)


@click.group(cls=_ErrorsAsMessages)
def main() -> None:
    """gpu-fabric: run Python functions on a self-hosted serverless GPU fabric."""


# ---- loading user code ----


def import_target(path_or_module: str) -> Any:
    """Import a file (as a module named after its stem, so `__main__` blocks do not run) or module."""
    if not path_or_module.endswith(".py") and not os.path.isfile(path_or_module):
        try:
            return importlib.import_module(path_or_module)
        except ImportError as exc:
            raise click.UsageError(f"cannot import {path_or_module!r}: {exc}") from exc
    path = os.path.abspath(path_or_module)
    if not os.path.isfile(path):
        raise click.UsageError(f"no such file: {path_or_module}")
    stem = os.path.splitext(os.path.basename(path))[0]
    existing = sys.modules.get(stem)
    if existing is not None:
        if os.path.abspath(getattr(existing, "__file__", "") or "") == path:
            return existing
        raise click.UsageError(f"the file name {stem!r} clashes with the module {stem!r} already imported; rename the file")
    directory = os.path.dirname(path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(stem, path)
    if spec is None or spec.loader is None:
        raise click.UsageError(f"cannot load {path_or_module} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(stem, None)
        raise
    return module


def _apps(module: Any) -> dict[str, App]:
    return {name: value for name, value in vars(module).items() if isinstance(value, App)}


def split_target(target: str) -> tuple[str, str]:
    """`FILE::name` -> (FILE, name); plain FILE -> (FILE, "")."""
    path, _, name = target.partition("::")
    return path, name


def find_app(module: Any, name: str = "") -> App:
    """The App in `module` (by variable name when there are several)."""
    apps = _apps(module)
    if name:
        if name not in apps:
            raise click.UsageError(f"no App named {name!r} in {module.__name__}; found: {', '.join(apps) or 'none'}")
        return apps[name]
    if len(apps) != 1:
        if not apps:
            raise click.UsageError(f"no App in {module.__name__}; define one with `app = fabric.App('name')`")
        raise click.UsageError(f"several Apps in {module.__name__} ({', '.join(apps)}); pick one with FILE::APP")
    return next(iter(apps.values()))


def find_runnable(module: Any, name: str = "") -> tuple[App, LocalEntrypoint | Function]:
    """The entrypoint or function `gpufabric run` should run (`name` may be "fn" or "app.fn")."""
    apps = _apps(module)
    candidates: list[tuple[App, str, LocalEntrypoint | Function]] = []
    for app in apps.values():
        candidates += [(app, tag, e) for tag, e in app.registered_entrypoints.items()]
        candidates += [(app, tag, f) for tag, f in app.registered_functions.items()]
    if name:
        app_var, _, short = name.rpartition(".")
        if app_var in apps:
            candidates = [c for c in candidates if c[0] is apps[app_var]]
            name = short
        matches = [c for c in candidates if c[1] == name]
        if not matches:
            value = getattr(module, name, None)
            matches = [c for c in candidates if c[2] is value]
        if not matches:
            choices = ", ".join(sorted({c[1] for c in candidates})) or "none"
            raise click.UsageError(f"no function or local entrypoint {name!r} in {module.__name__}; found: {choices}")
        return matches[0][0], matches[0][2]
    entrypoints = [c for c in candidates if isinstance(c[2], LocalEntrypoint)]
    if len(entrypoints) == 1:
        return entrypoints[0][0], entrypoints[0][2]
    if not entrypoints and len(candidates) == 1:
        return candidates[0][0], candidates[0][2]
    choices = ", ".join(c[1] for c in (entrypoints or candidates)) or "none"
    raise click.UsageError(f"say what to run with FILE::NAME; choices in {module.__name__}: {choices}")


_CLICK_TYPES = {int: click.INT, float: click.FLOAT, str: click.STRING}


def entrypoint_command(raw_f: Callable, prog: str) -> click.Command:
    """A click command whose options are `raw_f`'s parameters (`--name value`, by annotation)."""
    try:
        import typing

        hints = typing.get_type_hints(raw_f)
    except Exception:  # noqa: BLE001 - unresolvable annotations are treated as str
        hints = {}
    params: list[click.Parameter] = []
    for param in inspect.signature(raw_f).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        dashed = param.name.replace("_", "-")
        annotation = hints.get(param.name, str if param.default is param.empty else type(param.default))
        required = param.default is param.empty
        extra: dict[str, Any] = {} if required else {"default": param.default, "show_default": True}
        if annotation is bool:
            decls = [f"--{dashed}/--no-{dashed}"]
            if dashed != param.name:
                decls.append(f"--{param.name}/--no_{param.name}")
            decls.append(param.name)
            params.append(click.Option(decls, default=bool(extra.get("default", False)), show_default=True))
            continue
        decls = [f"--{dashed}"] + ([f"--{param.name}"] if dashed != param.name else []) + [param.name]
        click_type = _CLICK_TYPES.get(annotation, click.STRING)
        params.append(click.Option(decls, type=click_type, required=required, **extra))
    return click.Command(prog, params=params, callback=lambda **kwargs: kwargs, help=raw_f.__doc__)


def parse_entry_args(raw_f: Callable, args: list[str], prog: str) -> dict[str, Any] | None:
    """Parse CLI args for `raw_f`; None when they asked for --help (already printed)."""
    result = entrypoint_command(raw_f, prog).main(args=list(args), prog_name=prog, standalone_mode=False)
    return result if isinstance(result, dict) else None


def _call_entry(fn: Callable, kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.iscoroutine(result):
        import asyncio

        result = asyncio.run(result)
    return result


# ---- commands ----


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("target")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--quiet", "-q", is_flag=True, help="Do not stream the functions' logs.")
@click.option("--detach", is_flag=True,
              help="Keep the app running after this command ends, until its inputs are done (needs GPUFABRIC_URL).")
def run(target: str, args: tuple[str, ...], quiet: bool, detach: bool) -> None:
    """Run FILE[::NAME]: its local entrypoint (or NAME) inside an ephemeral app.

    Extra arguments become the entrypoint's parameters: `gpufabric run hello.py --n 3`. The app
    stops when the entrypoint returns, with whatever it left running, unless `--detach`.
    """
    path, name = split_target(target)
    module = import_target(path)
    app, runnable = find_runnable(module, name)
    prog = f"gpufabric run {target}"
    raw_f = runnable.raw_f if isinstance(runnable, LocalEntrypoint) else runnable.get_raw_f()
    kwargs = parse_entry_args(raw_f, list(args), prog)
    if kwargs is None:
        return
    with app.run(show_logs=not quiet, detach=detach):
        if isinstance(runnable, LocalEntrypoint):
            _call_entry(runnable.raw_f, kwargs)
        else:
            result = runnable.remote(**kwargs)
            if result is not None:
                click.echo(result)


@main.command()
@click.argument("target")
@click.option("--name", default=None, help="Deploy under this app name instead of the App's own.")
def deploy(target: str, name: str | None) -> None:
    """Deploy the App in FILE[::APP] to the fabric at GPUFABRIC_URL."""
    path, app_var = split_target(target)
    app = find_app(import_target(path), app_var)
    app.deploy(name=name)
    functions = ", ".join(app.registered_functions) or "no functions"
    click.echo(f"deployed app {app.name} ({app.app_id}): {functions}")


@main.command(context_settings=_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def serve(args: tuple[str, ...]) -> None:
    """Run a long-lived fabric (`python -m gpu_fabric serve ...`; options pass through).

    `gpufabric serve FILE` instead serves that app's web endpoints, restarting it when files change.
    """
    from . import _serve_app

    if args and _serve_app.is_app_target(args[0]):
        _serve_app.serve_file(args[0], reload="--no-reload" not in args[1:])
        return
    _exec(sys.executable, [sys.executable, "-m", "gpu_fabric", "serve", *args])


@main.command(context_settings=_PASSTHROUGH)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def worker(args: tuple[str, ...]) -> None:
    """Join a machine to a fabric as a worker (`python -m gpu_fabric worker ...`)."""
    if _cli_volume.worker_admin(args):  # `worker ls|preempt ID`: see _cli_volume.py
        return
    _exec(sys.executable, [sys.executable, "-m", "gpu_fabric", "worker", *args])


@main.group(name="app")
def app_group() -> None:
    """Apps on the fabric at GPUFABRIC_URL: list, stop, logs."""


def _env_client() -> Any:
    from ._client import Client

    return Client.from_env()


def resolve_app(client: Any, name_or_id: str, include_stopped: bool = True) -> Any:
    """The AppInfo whose id is `name_or_id`, else the newest app with that name."""
    apps = client.call("AppList", client.pb.AppListRequest(include_stopped=include_stopped)).apps
    for info in apps:
        if info.app_id == name_or_id:
            return info
    named = [info for info in apps if info.name == name_or_id]
    if not named:
        raise exception.NotFoundError(f"no app with id or name {name_or_id!r}; see `gpufabric app list`")
    running = [info for info in named if info.state != 3] or named  # APP_STATE_STOPPED = 3
    return max(running, key=lambda info: info.created_at)


_KINDS = {1: "ephemeral", 2: "deployed"}
_STATES = {1: "running", 2: "deployed", 3: "stopped", 4: "detached"}


@app_group.command(name="list")
@click.option("--all", "include_stopped", is_flag=True, help="Include stopped apps.")
def app_list(include_stopped: bool) -> None:
    """List apps."""
    client = _env_client()
    apps = client.call("AppList", client.pb.AppListRequest(include_stopped=include_stopped)).apps
    rows = [("APP ID", "NAME", "KIND", "VERSION", "STATE", "CREATED", "CONTAINERS", "FUNCTIONS")]
    for info in apps:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.created_at)) if info.created_at else "-"
        version = f"v{info.version}" if info.kind == 2 else "-"
        rows.append((info.app_id, info.name, _KINDS.get(info.kind, "?"), version, _STATES.get(info.state, "?"), created,
                     str(info.running_containers), ",".join(info.function_names)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@app_group.command(name="stop")
@click.argument("name_or_id")
def app_stop(name_or_id: str) -> None:
    """Stop an app (running or deployed) by id or name."""
    client = _env_client()
    info = resolve_app(client, name_or_id, include_stopped=False)
    client.call("AppStop", client.pb.AppStopRequest(app_id=info.app_id))
    click.echo(f"stopped app {info.name} ({info.app_id})")


@app_group.command(name="logs")
@click.argument("name_or_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new entries until the app stops.")
def app_logs(name_or_id: str, follow: bool) -> None:
    """Print an app's logs."""
    from ._logs import LogPrinter

    client = _env_client()
    info = resolve_app(client, name_or_id)
    printer = LogPrinter(client, info.app_id)
    req = client.pb.AppGetLogsRequest(app_id=info.app_id, cursor=0, follow=follow)
    try:
        for batch in client.stub.AppGetLogs(req, metadata=client.metadata):
            printer.print_entries(batch.entries)
            if batch.app_done:
                break
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # noqa: BLE001
        from ._client import translate_error

        raise translate_error(exc, client.url) from None


_RESULTS = {0: "running", 1: "success", 2: "failure", 3: "timeout", 4: "init failure", 5: "cancelled", 6: "internal failure"}


@app_group.command(name="history")
@click.argument("name_or_id")
@click.option("--limit", default=20, show_default=True, help="How many runs to show, newest first.")
def app_history(name_or_id: str, limit: int) -> None:
    """Runs started by a deployed app's schedules (Cron/Period)."""
    client = _env_client()
    info = resolve_app(client, name_or_id)
    runs = client.call("AppScheduleHistory", client.pb.AppScheduleHistoryRequest(app_id=info.app_id, limit=limit)).runs
    if not runs:
        click.echo(f"no scheduled runs for {info.name} yet")
        return
    stamp = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"
    rows = [("FUNCTION", "SCHEDULED FOR", "STARTED", "FINISHED", "RESULT", "CALL ID")]
    for run in runs:
        result = _RESULTS.get(run.status, "?") + (f": {run.error}" if run.error else "")
        rows.append((run.function_name, stamp(run.tick), stamp(run.started_at), stamp(run.finished_at), result, run.call_id))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


from ._cli_secret import secret_group  # noqa: E402 - `gpufabric secret create|list|delete`

main.add_command(secret_group)
main.add_command(_cli_volume.volume_group)
from ._cli_token import token_group  # noqa: E402 - shared fabric: `gpufabric token create|list|revoke`
main.add_command(token_group)


# ---- `gpufabric billing` (the FabricBilling API: ledger, replay, providers, scheduler decisions)
@main.command(name="billing")
@click.option("--by", "group_by", default="function", show_default=True,
              type=click.Choice(["function", "app", "workspace", "cloud", "gpu"]), help="How to group the ledger.")
@click.option("--baseline", default="aws", show_default=True, help="Cloud whose on-demand prices are the baseline.")
@click.option("--decisions", default=10, show_default=True, help="Recent scheduler decisions to show.")
def billing(group_by: str, baseline: str, decisions: int) -> None:
    """What the fabric's capacity cost, per second, and against one cloud's on-demand prices."""
    from gpu_fabric.proto import billing_pb2, billing_pb2_grpc

    client = _env_client()
    stub = billing_pb2_grpc.FabricBillingStub(client.channel)
    request = billing_pb2.BillingReportRequest(group_by=group_by, baseline_cloud=baseline, decisions=decisions)
    report = client._retrying(lambda: stub.BillingReport(request, metadata=client.metadata, timeout=30.0), True)
    rows = [(group_by.upper(), "CONTAINER-HOURS", "USD")] + [(r.name, f"{r.seconds / 3600:.3f}", f"{r.usd:.4f}") for r in report.rows]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo(f"machines launched by the fabric: ${report.instance_usd:.4f}")
    if report.baseline_usd:
        saving = 1 - report.actual_usd / report.baseline_usd
        click.echo(f"GPU containers: ${report.actual_usd:.4f} vs ${report.baseline_usd:.4f} on {report.baseline_cloud} on-demand ({saving:.0%} saved)")
    for line in report.providers:
        click.echo(f"provider {line}")
    for line in report.decisions:
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    main()
