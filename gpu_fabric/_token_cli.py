"""`python -m gpu_fabric token create|list|revoke`: issued tokens, straight in the fabric's state."""
from __future__ import annotations

import os
import time

import click

from .control_plane._tokens import ROLES


def _table(data_dir: str | None, database: str):
    from .control_plane._shared import open_token_table

    data_dir = data_dir or os.environ.get("GPUFABRIC_DATA_DIR") or os.path.join(os.path.expanduser("~"), ".gpufabric", "fabric")
    try:
        return open_token_table(data_dir, database)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--database") from None


_where = [
    click.option("--data-dir", default=None, help="The fabric's --data-dir (tokens.sqlite3). [default: ~/.gpufabric/fabric]"),
    click.option("--database", default="", envvar="GPUFABRIC_DATABASE", help="The fabric's --database (postgresql://...)."),
]


def _with_where(f):
    for option in reversed(_where):
        f = option(f)
    return f


@click.group(name="token")
def token_cli() -> None:
    """Workspace tokens: each has a workspace and a role (admin, deploy, invoke, worker-join)."""


@token_cli.command(name="create")
@click.option("--workspace", "-w", default="main", show_default=True, help="Workspace the token belongs to.")
@click.option("--role", "-r", type=click.Choice(ROLES), default="invoke", show_default=True,
              help="admin: everything; deploy: apps, functions, secrets; invoke: call and read; worker-join: register workers.")
@click.option("--label", default="", help="A note to tell tokens apart in `token list`.")
@_with_where
def create(workspace: str, role: str, label: str, data_dir: str | None, database: str) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    table = _table(data_dir, database)
    try:
        info, token = table.create(workspace, role, label)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        table.close()
    click.echo(f"created {info.token_id} (workspace {info.workspace}, role {info.role}); the token, shown once:", err=True)
    click.echo(token)


@token_cli.command(name="list")
@click.option("--workspace", "-w", default="", help="Only this workspace's tokens.")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@_with_where
def list_tokens(workspace: str, include_revoked: bool, data_dir: str | None, database: str) -> None:
    """List tokens (ids, workspaces, roles; never the tokens themselves)."""
    table = _table(data_dir, database)
    try:
        infos = table.list(workspace, include_revoked)
    finally:
        table.close()
    click.echo(f"{'ID':<16} {'WORKSPACE':<20} {'ROLE':<12} {'CREATED':<20} LABEL")
    for t in infos:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t.created_at))
        revoked = " (revoked)" if t.revoked_at else ""
        click.echo(f"{t.token_id:<16} {t.workspace:<20} {t.role:<12} {created:<20} {t.label}{revoked}")


@token_cli.command(name="revoke")
@click.argument("token_id")
@_with_where
def revoke(token_id: str, data_dir: str | None, database: str) -> None:
    """Revoke a token by id; a running fabric refuses it within seconds."""
    table = _table(data_dir, database)
    try:
        if not table.revoke(token_id):
            raise click.ClickException(f"no live token {token_id!r}; `gpufabric token list` shows them")
    finally:
        table.close()
    click.echo(f"revoked {token_id}")
