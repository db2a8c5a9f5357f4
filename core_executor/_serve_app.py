"""`gpufabric serve FILE`: run an app's web endpoints until Ctrl-C, restarting it when its files change."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

POLL_S = 0.5


def is_app_target(arg: str) -> bool:
    """True when `gpufabric serve` got a FILE[::APP] to serve rather than fabric options."""
    path = arg.partition("::")[0]
    return not arg.startswith("-") and (path.endswith(".py") or os.path.isfile(path))


def _snapshot(directory: str) -> dict[str, float]:
    # The app's directory (not below it): the file and the modules next to it that it imports.
    out = {}
    for name in os.listdir(directory):
        if name.endswith(".py") and not name.startswith("."):
            try:
                out[name] = os.stat(os.path.join(directory, name)).st_mtime
            except OSError:
                pass
    return out


def serve_file(target: str, reload: bool = True) -> None:
    """Serve the App in `target` against GPUFABRIC_URL, or an embedded fabric kept across reloads."""
    from .config import Config

    path = os.path.abspath(target.partition("::")[0])
    if not os.path.isfile(path):
        raise click.UsageError(f"no such file: {path}")
    env = dict(os.environ)
    fabric = None

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)  # stop the app and the embedded fabric in order
    if not Config.from_env().url:
        from ._embedded import EmbeddedFabric

        # One fabric for the whole session, so endpoint URLs survive reloads.
        fabric = EmbeddedFabric().start()
        env.update(GPUFABRIC_URL=fabric.url, GPUFABRIC_TOKEN=fabric.token)
    child = None
    try:
        while True:
            before = _snapshot(os.path.dirname(path))
            child = subprocess.Popen([sys.executable, "-m", "core_executor._serve_app", target], env=env)
            while child.poll() is None:
                time.sleep(POLL_S)
                if reload and _snapshot(os.path.dirname(path)) != before:
                    click.echo(f"{os.path.basename(path)} changed: reloading", err=True)
                    _stop(child)
                    break
            else:
                if not reload:
                    sys.exit(child.returncode)
                click.echo("the app exited; waiting for a change to its files (Ctrl-C to quit)", err=True)
                while _snapshot(os.path.dirname(path)) == before:
                    time.sleep(POLL_S)
    except KeyboardInterrupt:
        pass
    finally:
        if child is not None:
            _stop(child)
        if fabric is not None:
            fabric.stop()


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(15)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _run_app(target: str) -> None:
    """The child: run the app ephemerally, print its endpoints' URLs, wait for SIGTERM."""
    from . import _web
    from .cli import find_app, import_target, split_target

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    path, app_var = split_target(target)
    app = find_app(import_target(path), app_var)
    try:
        with app.run():
            urls = _web.endpoint_urls(app)
            for name, url in urls:
                click.echo(f"  {name}: {url}")
            if not urls:
                click.echo(f"{path} has no web endpoints; its functions are served until Ctrl-C")
            parent = os.getppid()
            while os.getppid() == parent:  # gone with the `gpufabric serve` that started us
                time.sleep(1.0)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    _run_app(sys.argv[1])
