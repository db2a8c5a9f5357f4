"""Numbered PostgreSQL schema migrations, applied in order under an advisory lock."""
from __future__ import annotations

# Why not Alembic: the fabric talks to PostgreSQL with plain psycopg 3 (no SQLAlchemy models to
# autogenerate from), and a shared fabric must upgrade itself on start without an operator step.
# Each entry is (version, statements); `schema_version` holds the highest applied one. Append
# only: a released entry never changes.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind INTEGER NOT NULL, state INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, stopped_at DOUBLE PRECISION NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS functions (
    function_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL,
    spec BYTEA NOT NULL, definition BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, function_id TEXT NOT NULL, kind INTEGER NOT NULL,
    num_inputs BIGINT NOT NULL, num_done BIGINT NOT NULL, closed BOOLEAN NOT NULL,
    cancelled BOOLEAN NOT NULL, created_at DOUBLE PRECISION NOT NULL, next_seq BIGINT NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS inputs (
    ord BIGSERIAL, input_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, function_id TEXT NOT NULL,
    idx BIGINT NOT NULL, payload BYTEA NOT NULL, attempts INTEGER NOT NULL, lost INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (
    call_id TEXT NOT NULL, seq BIGINT NOT NULL, input_id TEXT NOT NULL, idx BIGINT NOT NULL,
    result BYTEA NOT NULL, attempts INTEGER NOT NULL, log_seq BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (call_id, seq));
CREATE INDEX IF NOT EXISTS outputs_by_created ON outputs (created_at);
CREATE TABLE IF NOT EXISTS schedules (
    function_id TEXT PRIMARY KEY, anchor DOUBLE PRECISION NOT NULL, last_tick DOUBLE PRECISION NOT NULL);
CREATE TABLE IF NOT EXISTS schedule_runs (
    function_id TEXT NOT NULL, tick DOUBLE PRECISION NOT NULL, call_id TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION NOT NULL, status INTEGER NOT NULL,
    error TEXT NOT NULL, PRIMARY KEY (function_id, tick));
CREATE TABLE IF NOT EXISTS logs (
    app_id TEXT NOT NULL, seq BIGINT NOT NULL, entry BYTEA NOT NULL, PRIMARY KEY (app_id, seq));
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY, kind INTEGER NOT NULL, name TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, ephemeral BOOLEAN NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS objects_by_name ON objects (kind, name) WHERE name != '';
CREATE TABLE IF NOT EXISTS dict_entries (
    pos BIGSERIAL PRIMARY KEY, object_id TEXT NOT NULL, key BYTEA NOT NULL, value BYTEA NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS dict_entries_by_key ON dict_entries (object_id, key);
CREATE TABLE IF NOT EXISTS queue_items (
    item_id BIGSERIAL PRIMARY KEY, object_id TEXT NOT NULL, partition TEXT NOT NULL, value BYTEA NOT NULL);
CREATE INDEX IF NOT EXISTS queue_items_by_partition ON queue_items (object_id, partition, item_id);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY, keys TEXT NOT NULL, ciphertext BYTEA NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, app_id TEXT NOT NULL DEFAULT '');
"""),
    (2, """
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, workspace TEXT NOT NULL, role TEXT NOT NULL,
    label TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, revoked_at DOUBLE PRECISION NOT NULL DEFAULT 0);
"""),
    # Per-call usage (FunctionCallGetUsage): the call's finished attempts, a serialized FunctionCallUsage.
    (3, """
ALTER TABLE calls ADD COLUMN IF NOT EXISTS usage BYTEA NOT NULL DEFAULT ''::bytea;
"""),
    # Machines the autoscaler launched, so a restarted control plane adopts, bills or terminates them.
    (4, """
CREATE TABLE IF NOT EXISTS launches (
    launch_id TEXT PRIMARY KEY, provider TEXT NOT NULL, instance_id TEXT NOT NULL, offering TEXT NOT NULL,
    market TEXT NOT NULL, launched_at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, join_token_id TEXT NOT NULL,
    workspace TEXT NOT NULL, app_id TEXT NOT NULL, function_id TEXT NOT NULL, worker_id TEXT NOT NULL,
    charged_from DOUBLE PRECISION NOT NULL);
"""),
]

LATEST = MIGRATIONS[-1][0]

# Any constant works; it only has to be the same for every fabric that migrates this schema.
_MIGRATION_LOCK = 0x6770_7566_0001


def apply(conn) -> int:
    """Bring the database at `conn` (psycopg 3, not in a transaction) to LATEST; returns it.

    Concurrent starts serialize on a transaction-level advisory lock, so one migrates and the
    others see the result. A database newer than this code is refused rather than guessed at.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = int(row[0] or 0)
        if current > LATEST:
            raise RuntimeError(
                f"the database is at schema version {current}, newer than this gpu-fabric knows ({LATEST}); "
                "upgrade gpu-fabric on this machine"
            )
        for version, statements in MIGRATIONS:
            if version > current:
                conn.execute(statements)
                conn.execute("INSERT INTO schema_version VALUES (%s)", (version,))
                current = version
    return current
