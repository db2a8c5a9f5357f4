"""`gpufabric secret create|list|delete`: secrets stored encrypted by the fabric, never shown back."""
from __future__ import annotations

import contextlib
import json
import time
from typing import Any, Iterator

import click

from . import exception


@contextlib.contextmanager
def _fabric_client() -> Iterator[Any]:
    """GPUFABRIC_URL's fabric, else the embedded one (its data dir is the one `gpufabric run` uses)."""
    from .config import Config

    cfg = Config.from_env()
    if cfg.url:
        from ._client import get_client

        yield get_client(cfg.url, cfg.token)
        return
    from ._app import _embedded

    client = _embedded.acquire(cfg.data_dir)
    try:
        used = getattr(_embedded._fabric, "data_dir", cfg.data_dir)
        if used != cfg.data_dir:
            click.echo(f"note: another fabric holds {cfg.data_dir}; this went to {used}", err=True)
        yield client
    finally:
        _embedded.release()


def _call(client: Any, method: str, request: Any) -> Any:
    from ._object_base import call

    return call(client, method, request)


def _parse_dotenv(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("export "):
                line = line[len("export "):].lstrip()
            key, sep, value = line.partition("=")
            if not sep:
                raise click.UsageError(f"{path}:{number}: expected KEY=VALUE")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def _parse_json(path: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise click.UsageError(f"{path} must hold a JSON object of strings to strings")
    return data


@click.group(name="secret")
def secret_group() -> None:
    """Secrets: environment variables injected into the containers of functions that name them."""


@secret_group.command(name="create")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="KEY=VALUE...")
@click.option("--from-dotenv", "dotenv", type=click.Path(exists=True, dir_okay=False), help="Read KEY=VALUE lines from a .env file.")
@click.option("--from-json", "json_path", type=click.Path(exists=True, dir_okay=False), help="Read a JSON object of strings.")
@click.option("--force", is_flag=True, help="Replace the secret if it exists.")
def secret_create(name: str, pairs: tuple[str, ...], dotenv: str | None, json_path: str | None, force: bool) -> None:
    """Create secret NAME from KEY=VALUE pairs (a .env or JSON file keeps values out of shell history)."""
    from gpu_fabric.proto import objects_pb2

    env: dict[str, str] = {}
    if dotenv:
        env.update(_parse_dotenv(dotenv))
    if json_path:
        env.update(_parse_json(json_path))
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"expected KEY=VALUE, got {pair.split('=')[0]!r} without '='")
        env[key] = value
    if not env:
        raise click.UsageError(f"give the values: gpufabric secret create {name} KEY=VALUE ...")
    with _fabric_client() as client:
        try:
            _call(client, "SecretCreate", objects_pb2.SecretCreateRequest(name=name, env=env, overwrite=force))
        except exception.Error as exc:
            if "already exists" in str(exc):
                raise exception.InvalidError(f"secret {name!r} already exists; add --force to replace it") from None
            raise
    click.echo(f"created secret {name} with keys {', '.join(sorted(env))}")


@secret_group.command(name="list")
@click.option("--all", "include_anonymous", is_flag=True, help="Include the anonymous secrets of apps (Secret.from_dict).")
def secret_list(include_anonymous: bool) -> None:
    """List secrets: names and key names, never values."""
    from gpu_fabric.proto import objects_pb2

    with _fabric_client() as client:
        infos = _call(client, "SecretList", objects_pb2.SecretListRequest(include_anonymous=include_anonymous)).secrets
    rows = [("NAME", "KEYS", "CREATED", "UPDATED")]
    for info in infos:
        rows.append((info.name, ",".join(info.keys), _when(info.created_at), _when(info.updated_at)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@secret_group.command(name="delete")
@click.argument("name")
@click.option("--allow-missing", is_flag=True, help="Succeed when there is no such secret.")
def secret_delete(name: str, allow_missing: bool) -> None:
    """Delete secret NAME (functions that use it fail to start until it is created again)."""
    from gpu_fabric.proto import objects_pb2

    with _fabric_client() as client:
        _call(client, "SecretDelete", objects_pb2.SecretDeleteRequest(name=name, allow_missing=allow_missing))
    click.echo(f"deleted secret {name}")
