"""Durable storage of Dicts, Queues and (encrypted) secrets, behind one interface (SQLite here)."""
from __future__ import annotations

import abc
import json
import sqlite3
from dataclasses import dataclass

KIND_DICT = 1
KIND_QUEUE = 2


@dataclass
class StoredObject:
    object_id: str
    kind: int
    name: str  # "" for an ephemeral object
    created_at: float
    ephemeral: bool


@dataclass
class StoredSecret:
    name: str
    keys: list[str]
    ciphertext: bytes  # Fernet token of the JSON of the values; never plaintext
    created_at: float
    updated_at: float
    app_id: str = ""  # set for an app's anonymous secret


class ObjectStore(abc.ABC):
    """Where Dict entries, Queue items and secrets live. Every method commits before it returns;
    values are opaque bytes (the SDK's pickles, or ciphertext for secrets)."""

    # -- objects
    @abc.abstractmethod
    def create_object(self, obj: StoredObject) -> None: ...

    @abc.abstractmethod
    def find_object(self, kind: int, name: str) -> StoredObject | None: ...

    @abc.abstractmethod
    def get_object(self, object_id: str) -> StoredObject | None: ...

    @abc.abstractmethod
    def list_objects(self, kind: int) -> list[StoredObject]:
        """Named objects of `kind`, oldest first."""

    @abc.abstractmethod
    def ephemeral_objects(self) -> list[StoredObject]: ...

    @abc.abstractmethod
    def delete_object(self, object_id: str) -> bool:
        """Delete the object and its contents; False if it did not exist."""

    # -- dicts
    @abc.abstractmethod
    def dict_get(self, object_id: str, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def dict_put(self, object_id: str, entries: list[tuple[bytes, bytes]], skip_if_exists: bool) -> int:
        """Store entries in one transaction; returns how many were stored."""

    @abc.abstractmethod
    def dict_pop(self, object_id: str, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    def dict_len(self, object_id: str) -> int: ...

    @abc.abstractmethod
    def dict_page(self, object_id: str, cursor: int, limit: int, keys_only: bool) -> list[tuple[int, bytes, bytes]]:
        """Entries (position, key, value) after `cursor`, in insertion order."""

    @abc.abstractmethod
    def dict_clear(self, object_id: str) -> None: ...

    # -- queues
    @abc.abstractmethod
    def queue_put(self, object_id: str, partition: str, values: list[bytes]) -> None: ...

    @abc.abstractmethod
    def queue_take(self, object_id: str, partition: str, limit: int) -> list[bytes]:
        """Remove and return up to `limit` of the oldest items of a partition."""

    @abc.abstractmethod
    def queue_peek(self, object_id: str, partition: str, after_id: int, limit: int) -> list[tuple[int, bytes]]: ...

    @abc.abstractmethod
    def queue_len(self, object_id: str, partition: str | None) -> int:
        """Items in one partition, or in all of them when `partition` is None."""

    @abc.abstractmethod
    def queue_clear(self, object_id: str, partition: str | None) -> None: ...

    # -- secrets
    @abc.abstractmethod
    def put_secret(self, secret: StoredSecret) -> None: ...

    @abc.abstractmethod
    def get_secret(self, name: str) -> StoredSecret | None: ...

    @abc.abstractmethod
    def list_secrets(self) -> list[StoredSecret]: ...

    @abc.abstractmethod
    def delete_secret(self, name: str) -> bool: ...

    @abc.abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT PRIMARY KEY, kind INTEGER NOT NULL, name TEXT NOT NULL, created_at REAL NOT NULL,
    ephemeral INTEGER NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS objects_by_name ON objects (kind, name) WHERE name != '';
CREATE TABLE IF NOT EXISTS dict_entries (
    pos INTEGER PRIMARY KEY AUTOINCREMENT, object_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS dict_entries_by_key ON dict_entries (object_id, key);
CREATE TABLE IF NOT EXISTS queue_items (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT, object_id TEXT NOT NULL, partition TEXT NOT NULL, value BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS queue_items_by_partition ON queue_items (object_id, partition, item_id);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY, keys TEXT NOT NULL, ciphertext BLOB NOT NULL, created_at REAL NOT NULL,
    updated_at REAL NOT NULL, app_id TEXT NOT NULL DEFAULT '');
"""

# Schema changes after the first release, applied in order; PRAGMA user_version counts them.
_MIGRATIONS: list[str] = []


class SQLiteObjectStore(ObjectStore):
    """SQLite in WAL mode, in its own file (objects.sqlite3) beside the control plane's state.
    Use from one thread: the control plane's event loop."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL"):
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        # Deleted queue items and secrets must not linger in free pages of the file.
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(_SCHEMA)
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise RuntimeError(
                f"the object store is at schema version {version}, newer than this gpu-fabric knows "
                f"({len(_MIGRATIONS)}); upgrade gpu-fabric or use another --data-dir"
            )
        for number, statement in enumerate(_MIGRATIONS[version:], start=version + 1):
            with _Transaction(self._db):
                self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")

    def _tx(self) -> "_Transaction":
        return _Transaction(self._db)

    # -- objects
    def create_object(self, obj: StoredObject) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO objects VALUES (?,?,?,?,?)",
                (obj.object_id, obj.kind, obj.name, obj.created_at, int(obj.ephemeral)),
            )

    @staticmethod
    def _object(row) -> StoredObject | None:
        return StoredObject(row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    def find_object(self, kind: int, name: str) -> StoredObject | None:
        row = self._db.execute("SELECT * FROM objects WHERE kind=? AND name=?", (kind, name)).fetchone()
        return self._object(row)

    def get_object(self, object_id: str) -> StoredObject | None:
        return self._object(self._db.execute("SELECT * FROM objects WHERE object_id=?", (object_id,)).fetchone())

    def list_objects(self, kind: int) -> list[StoredObject]:
        rows = self._db.execute("SELECT * FROM objects WHERE kind=? AND name!='' ORDER BY created_at", (kind,))
        return [self._object(row) for row in rows]

    def ephemeral_objects(self) -> list[StoredObject]:
        return [self._object(row) for row in self._db.execute("SELECT * FROM objects WHERE ephemeral=1")]

    def delete_object(self, object_id: str) -> bool:
        with self._tx():
            self._db.execute("DELETE FROM dict_entries WHERE object_id=?", (object_id,))
            self._db.execute("DELETE FROM queue_items WHERE object_id=?", (object_id,))
            return self._db.execute("DELETE FROM objects WHERE object_id=?", (object_id,)).rowcount > 0

    # -- dicts
    def dict_get(self, object_id: str, key: bytes) -> bytes | None:
        row = self._db.execute("SELECT value FROM dict_entries WHERE object_id=? AND key=?", (object_id, key)).fetchone()
        return row[0] if row else None

    def dict_put(self, object_id: str, entries: list[tuple[bytes, bytes]], skip_if_exists: bool) -> int:
        rows = [(object_id, key, value) for key, value in entries]
        with self._tx():
            if skip_if_exists:
                sql = "INSERT INTO dict_entries (object_id, key, value) VALUES (?,?,?) ON CONFLICT DO NOTHING"
            else:
                # An update keeps the entry's place in iteration order, like a Python dict.
                sql = ("INSERT INTO dict_entries (object_id, key, value) VALUES (?,?,?) "
                       "ON CONFLICT (object_id, key) DO UPDATE SET value=excluded.value")
            before = self._db.total_changes
            self._db.executemany(sql, rows)
            return self._db.total_changes - before

    def dict_pop(self, object_id: str, key: bytes) -> bytes | None:
        with self._tx():
            row = self._db.execute(
                "DELETE FROM dict_entries WHERE object_id=? AND key=? RETURNING value", (object_id, key)
            ).fetchone()
        return row[0] if row else None

    def dict_len(self, object_id: str) -> int:
        return self._db.execute("SELECT COUNT(*) FROM dict_entries WHERE object_id=?", (object_id,)).fetchone()[0]

    def dict_page(self, object_id: str, cursor: int, limit: int, keys_only: bool) -> list[tuple[int, bytes, bytes]]:
        value = "x''" if keys_only else "value"
        return list(self._db.execute(
            f"SELECT pos, key, {value} FROM dict_entries WHERE object_id=? AND pos>? ORDER BY pos LIMIT ?",
            (object_id, cursor, limit),
        ))

    def dict_clear(self, object_id: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM dict_entries WHERE object_id=?", (object_id,))

    # -- queues
    def queue_put(self, object_id: str, partition: str, values: list[bytes]) -> None:
        with self._tx():
            self._db.executemany(
                "INSERT INTO queue_items (object_id, partition, value) VALUES (?,?,?)",
                [(object_id, partition, value) for value in values],
            )

    def queue_take(self, object_id: str, partition: str, limit: int) -> list[bytes]:
        with self._tx():
            rows = self._db.execute(
                "SELECT item_id, value FROM queue_items WHERE object_id=? AND partition=? ORDER BY item_id LIMIT ?",
                (object_id, partition, limit),
            ).fetchall()
            if rows:
                self._db.executemany("DELETE FROM queue_items WHERE item_id=?", [(row[0],) for row in rows])
        return [row[1] for row in rows]

    def queue_peek(self, object_id: str, partition: str, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        return list(self._db.execute(
            "SELECT item_id, value FROM queue_items WHERE object_id=? AND partition=? AND item_id>? "
            "ORDER BY item_id LIMIT ?",
            (object_id, partition, after_id, limit),
        ))

    def queue_len(self, object_id: str, partition: str | None) -> int:
        if partition is None:
            row = self._db.execute("SELECT COUNT(*) FROM queue_items WHERE object_id=?", (object_id,)).fetchone()
        else:
            row = self._db.execute(
                "SELECT COUNT(*) FROM queue_items WHERE object_id=? AND partition=?", (object_id, partition)
            ).fetchone()
        return row[0]

    def queue_clear(self, object_id: str, partition: str | None) -> None:
        with self._tx():
            if partition is None:
                self._db.execute("DELETE FROM queue_items WHERE object_id=?", (object_id,))
            else:
                self._db.execute("DELETE FROM queue_items WHERE object_id=? AND partition=?", (object_id, partition))

    # -- secrets
    def put_secret(self, secret: StoredSecret) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO secrets VALUES (?,?,?,?,?,?)",
                (secret.name, json.dumps(secret.keys), secret.ciphertext, secret.created_at, secret.updated_at, secret.app_id),
            )

    @staticmethod
    def _secret(row) -> StoredSecret | None:
        return StoredSecret(row[0], json.loads(row[1]), row[2], row[3], row[4], row[5]) if row else None

    def get_secret(self, name: str) -> StoredSecret | None:
        return self._secret(self._db.execute("SELECT * FROM secrets WHERE name=?", (name,)).fetchone())

    def list_secrets(self) -> list[StoredSecret]:
        return [self._secret(row) for row in self._db.execute("SELECT * FROM secrets ORDER BY name")]

    def delete_secret(self, name: str) -> bool:
        with self._tx():
            return self._db.execute("DELETE FROM secrets WHERE name=?", (name,)).rowcount > 0

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> "_Transaction":
        self._db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False
