"""What turns a one-person fabric into a shared one: PostgreSQL stores, issued tokens, TLS."""
from __future__ import annotations

import os

from ._tokens import TokenRegistry, TokenTable

TOKENS_FILE_NAME = "tokens.sqlite3"


def is_postgres(database: str) -> bool:
    return database.startswith(("postgresql://", "postgres://"))


def _check(database: str) -> None:
    if database and not is_postgres(database):
        raise ValueError(f"--database must be a postgresql:// URL (got {database.split('://')[0]}://...); "
                         "leave it out for SQLite in the data dir")


def open_state_store(data_dir: str, database: str = ""):
    """The StateStore: PostgreSQL at `database` (holding the serve lock), else SQLite in `data_dir`."""
    _check(database)
    if database:
        from ._store_pg import PostgresStore

        return PostgresStore(database)
    from ._store import SQLiteStore

    return SQLiteStore(os.path.join(data_dir, "state.sqlite3"))


def open_object_store(database: str = ""):
    """The ObjectStore for `database`, or None for the default (SQLite in the data dir)."""
    _check(database)
    if not database:
        return None
    from ._object_store_pg import PostgresObjectStore

    return PostgresObjectStore(database)


def open_token_table(data_dir: str, database: str = "") -> TokenTable:
    """Where issued tokens live: the database's `tokens` table, or tokens.sqlite3 in the data dir."""
    _check(database)
    if database:
        return TokenTable(database=database)
    os.makedirs(data_dir, exist_ok=True)
    return TokenTable(sqlite_path=os.path.join(data_dir, TOKENS_FILE_NAME))


def attach(plane) -> TokenRegistry:
    """Give `plane` (a ControlPlane) its token registry; the engine mints container tokens from it."""
    registry = TokenRegistry(plane.token, open_token_table(plane.data_dir, plane.database), also_allow=plane._join_allowed)
    plane.engine.tokens = registry
    return registry


def close(plane) -> None:
    if getattr(plane, "tokens", None) is not None and plane.tokens.table is not None:
        plane.tokens.table.close()


def tls_files(cert: str, key: str) -> tuple[bytes, bytes] | None:
    """(key PEM, certificate chain PEM) for --tls-key/--tls-cert, or None without TLS."""
    if not cert and not key:
        return None
    if not (cert and key):
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    with open(key, "rb") as f:
        key_pem = f.read()
    with open(cert, "rb") as f:
        cert_pem = f.read()
    return key_pem, cert_pem


def add_port(server, address: str, tls: tuple[bytes, bytes] | None) -> int:
    """Listen on `address`, with TLS when `tls` holds (key, certificate chain)."""
    if tls is None:
        return server.add_insecure_port(address)
    import grpc

    return server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
