"""Workspaces and tokens: roles, hashed storage, and which role each RPC needs."""
from __future__ import annotations

import contextvars
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Callable

DEFAULT_WORKSPACE = "main"
ROLES = ("admin", "deploy", "invoke", "worker-join")
# What a role may do besides its own name: admin > deploy > invoke. `container` is never issued
# to people: the control plane mints one per workspace for the containers it starts.
_GRANTS = {
    "admin": {"admin", "deploy", "invoke", "worker", "container"},
    "deploy": {"deploy", "invoke"},
    "invoke": {"invoke"},
    "worker-join": {"worker"},
    "container": {"invoke", "container"},
}
_WORKSPACE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
_CACHE_S = 5.0  # a revoked token stops working within this long
TOKEN_PREFIX = "gft_"
CONTAINER_PREFIX = "gfc_"

# None: not serving an RPC for a token (the control plane's own work), which sees everything.
_current: contextvars.ContextVar = contextvars.ContextVar("gpufabric_workspace", default=None)


def current_workspace() -> str | None:
    """The workspace of the token on the RPC being served; None outside one."""
    return _current.get()


def visible(owner: str) -> bool:
    """Whether something of workspace `owner` exists for the RPC being served."""
    workspace = _current.get()
    return workspace is None or workspace == owner


def set_workspace(workspace: str) -> contextvars.Token:
    return _current.set(workspace)


# --- names of workspace-owned things (Dicts, Queues, secrets, volumes)
# They are stored as "workspace/name" for every workspace but the default one. "/" is not allowed
# in their names, so nothing collides, and a one-workspace fabric's stored names stay as they were.
def scoped_name(name: str, workspace: str | None = None) -> str:
    """The stored form of `name` in `workspace` (by default the RPC's; the default one outside an RPC)."""
    workspace = workspace or _current.get() or DEFAULT_WORKSPACE
    if workspace == DEFAULT_WORKSPACE and "/" not in name:
        return name
    # A name with "/" (never a valid one) stays in its own workspace: "main/b/x", never "b/x".
    return f"{workspace}/{name}"


def name_owner(stored: str) -> tuple[str, str]:
    """(workspace, name) of a stored name."""
    workspace, sep, name = stored.partition("/")
    return (workspace, name) if sep else (DEFAULT_WORKSPACE, stored)


def listed_here(stored: str) -> bool:
    """Whether a listing on the RPC being served shows the stored name: only its own workspace's."""
    return name_owner(stored)[0] == (_current.get() or DEFAULT_WORKSPACE)
# --- end names of workspace-owned things


def required_grant(method: str) -> str:
    """The grant `method` ("/gpu_fabric.v1.Service/Name") needs; unknown methods are admin-only."""
    service, _, name = method.rpartition("/")
    service = service.rsplit(".", 1)[-1]
    if service == "FabricWorker" or name in ("WorkerPreemptionPoll",):
        return "worker"
    if service == "FabricContainer":
        return "container"
    if service == "FabricBilling" or name in ("WorkerPreempt", "WorkerList"):
        return "admin"
    if name in _DEPLOY_METHODS:
        return "deploy"
    if service in ("FabricClient", "FabricObjects", "FabricVolumes", "FabricWeb"):
        return "invoke"
    return "admin"


_DEPLOY_METHODS = {"AppCreate", "AppStop", "FunctionCreate", "SecretCreate", "SecretDelete", "SecretList",
                   "ObjectDelete", "VolumeDelete", "VolumeGc"}


@dataclass(frozen=True)
class Principal:
    """Who an RPC comes from: the token's workspace and role."""

    workspace: str
    role: str

    def may(self, grant: str) -> bool:
        return grant in _GRANTS.get(self.role, ())


@dataclass
class TokenInfo:
    token_id: str
    workspace: str
    role: str
    label: str
    created_at: float
    revoked_at: float = 0.0


def check_workspace(name: str) -> str:
    if not _WORKSPACE.match(name):
        raise ValueError(f"workspace {name!r}: 1-32 lowercase letters, digits or '-', starting with a letter or digit")
    return name


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """Where issued tokens live (only their SHA-256): SQLite beside the state, or PostgreSQL."""

    def __init__(self, *, sqlite_path: str = "", database: str = ""):
        self._pg = None
        if database:
            from .migrations import apply
            from ._store_pg import PgConnection

            self._pg = PgConnection(database)
            apply(self._pg.conn)
        else:
            self._db = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tokens (token_id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, "
                "workspace TEXT NOT NULL, role TEXT NOT NULL, label TEXT NOT NULL, created_at REAL NOT NULL, "
                "revoked_at REAL NOT NULL DEFAULT 0)")

    def _query(self, sql: str, params=()) -> list:
        if self._pg is not None:
            return self._pg.run(lambda c: c.execute(sql.replace("?", "%s"), params).fetchall() if "SELECT" in sql
                                else [(c.execute(sql.replace("?", "%s"), params).rowcount,)])
        cur = self._db.execute(sql, params)
        return cur.fetchall() if "SELECT" in sql else [(cur.rowcount,)]

    def create(self, workspace: str, role: str, label: str = "") -> tuple[TokenInfo, str]:
        """A new token; returns its info and the token itself (shown once, never stored)."""
        check_workspace(workspace)
        if role not in ROLES:
            raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
        token_id = "tk-" + secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{token_id[3:]}_{secrets.token_urlsafe(24)}"
        info = TokenInfo(token_id, workspace, role, label, time.time())
        self._query("INSERT INTO tokens VALUES (?,?,?,?,?,?,?)",
                    (token_id, digest(token), workspace, role, label, info.created_at, 0.0))
        return info, token

    def find(self, token_digest: str) -> TokenInfo | None:
        rows = self._query("SELECT token_id, workspace, role, label, created_at, revoked_at FROM tokens "
                           "WHERE digest=?", (token_digest,))
        return TokenInfo(*rows[0]) if rows else None

    def list(self, workspace: str = "", include_revoked: bool = False) -> list[TokenInfo]:
        rows = self._query("SELECT token_id, workspace, role, label, created_at, revoked_at FROM tokens "
                           "ORDER BY created_at")
        infos = [TokenInfo(*r) for r in rows]
        return [t for t in infos if (not workspace or t.workspace == workspace) and (include_revoked or not t.revoked_at)]

    def revoke(self, token_id: str) -> bool:
        return self._query("UPDATE tokens SET revoked_at=? WHERE token_id=? AND revoked_at=0",
                           (time.time(), token_id))[0][0] > 0

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        else:
            self._db.close()


class TokenRegistry:
    """Resolves a bearer token to a Principal: the fabric token (admin of the default workspace),
    container tokens this control plane minted, issued tokens (cached `_CACHE_S`), and
    `also_allow` (the autoscaler's short-lived worker join tokens)."""

    def __init__(self, fabric_token: str, table: TokenTable | None = None, *,
                 also_allow: Callable[[str], bool] | None = None, clock: Callable[[], float] = time.monotonic):
        self._fabric = digest(fabric_token)
        # Container tokens are an HMAC of the workspace under the fabric token: nothing to store.
        self._mint_key = hashlib.sha256(b"container:" + fabric_token.encode()).digest()
        self.table = table
        self._also_allow = also_allow
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    def container_token(self, workspace: str) -> str:
        mac = hmac.new(self._mint_key, workspace.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{CONTAINER_PREFIX}{workspace}_{mac}"

    def resolve(self, authorization: str) -> Principal | None:
        """The principal behind an `authorization` header value, or None."""
        if not authorization.startswith("Bearer "):
            return None
        token = authorization[7:].strip()
        if hmac.compare_digest(digest(token), self._fabric):
            return Principal(DEFAULT_WORKSPACE, "admin")
        if token.startswith(CONTAINER_PREFIX):
            workspace = token[len(CONTAINER_PREFIX):].rpartition("_")[0]
            if workspace and hmac.compare_digest(token, self.container_token(workspace)):
                return Principal(workspace, "container")
            return None
        if token.startswith(TOKEN_PREFIX) and self.table is not None:
            return self._issued(digest(token))
        if self._also_allow is not None and self._also_allow(authorization):
            return Principal(DEFAULT_WORKSPACE, "worker-join")
        return None

    def _issued(self, key: str) -> Principal | None:
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < _CACHE_S:
            return hit[1]
        info = self.table.find(key)
        principal = Principal(info.workspace, info.role) if info is not None and not info.revoked_at else None
        if len(self._cache) > 10_000:  # random garbage tokens must not grow memory without bound
            self._cache.clear()
        self._cache[key] = (now, principal)
        return principal
