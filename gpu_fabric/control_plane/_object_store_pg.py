"""Dicts, Queues and secrets in PostgreSQL (psycopg 3): the ObjectStore contract for a shared fabric."""
from __future__ import annotations

import json

from ._object_store import ObjectStore, StoredObject, StoredSecret
from ._store_pg import PgConnection


class PostgresObjectStore(ObjectStore):
    """Objects in the same database as the control plane's state (its own tables, its own
    connection, so a long object transaction never holds up a state commit)."""

    def __init__(self, url: str):
        from .migrations import apply

        self.db = PgConnection(url)
        apply(self.db.conn)

    def _rows(self, sql: str, params=()) -> list:
        return self.db.run(lambda c: c.execute(sql, params).fetchall())

    def _exec(self, sql: str, params=()) -> int:
        return self.db.run(lambda c: c.execute(sql, params).rowcount)

    # -- objects
    def create_object(self, obj: StoredObject) -> None:
        self._exec("INSERT INTO objects VALUES (%s,%s,%s,%s,%s)",
                   (obj.object_id, obj.kind, obj.name, obj.created_at, obj.ephemeral))

    @staticmethod
    def _object(rows) -> StoredObject | None:
        return StoredObject(*rows[0]) if rows else None

    def find_object(self, kind: int, name: str) -> StoredObject | None:
        return self._object(self._rows("SELECT * FROM objects WHERE kind=%s AND name=%s", (kind, name)))

    def get_object(self, object_id: str) -> StoredObject | None:
        return self._object(self._rows("SELECT * FROM objects WHERE object_id=%s", (object_id,)))

    def list_objects(self, kind: int) -> list[StoredObject]:
        rows = self._rows("SELECT * FROM objects WHERE kind=%s AND name!='' ORDER BY created_at", (kind,))
        return [StoredObject(*r) for r in rows]

    def ephemeral_objects(self) -> list[StoredObject]:
        return [StoredObject(*r) for r in self._rows("SELECT * FROM objects WHERE ephemeral")]

    def delete_object(self, object_id: str) -> bool:
        def tx(c) -> bool:
            c.execute("DELETE FROM dict_entries WHERE object_id=%s", (object_id,))
            c.execute("DELETE FROM queue_items WHERE object_id=%s", (object_id,))
            return c.execute("DELETE FROM objects WHERE object_id=%s", (object_id,)).rowcount > 0

        return self.db.run(tx)

    # -- dicts
    def dict_get(self, object_id: str, key: bytes) -> bytes | None:
        rows = self._rows("SELECT value FROM dict_entries WHERE object_id=%s AND key=%s", (object_id, key))
        return bytes(rows[0][0]) if rows else None

    def dict_put(self, object_id: str, entries: list[tuple[bytes, bytes]], skip_if_exists: bool) -> int:
        if skip_if_exists:
            sql = "INSERT INTO dict_entries (object_id, key, value) VALUES (%s,%s,%s) ON CONFLICT DO NOTHING"
        else:
            # An update keeps the entry's place in iteration order, like a Python dict.
            sql = ("INSERT INTO dict_entries (object_id, key, value) VALUES (%s,%s,%s) "
                   "ON CONFLICT (object_id, key) DO UPDATE SET value=excluded.value")
        # One key twice in a batch: the last wins (one statement may not touch a row twice).
        latest = dict(entries)

        def tx(c) -> int:
            stored = 0
            for key, value in latest.items():
                stored += c.execute(sql, (object_id, key, value)).rowcount
            return stored

        return self.db.run(tx)

    def dict_pop(self, object_id: str, key: bytes) -> bytes | None:
        rows = self._rows("DELETE FROM dict_entries WHERE object_id=%s AND key=%s RETURNING value", (object_id, key))
        return bytes(rows[0][0]) if rows else None

    def dict_len(self, object_id: str) -> int:
        return self._rows("SELECT COUNT(*) FROM dict_entries WHERE object_id=%s", (object_id,))[0][0]

    def dict_page(self, object_id: str, cursor: int, limit: int, keys_only: bool) -> list[tuple[int, bytes, bytes]]:
        value = "''::bytea" if keys_only else "value"
        rows = self._rows(f"SELECT pos, key, {value} FROM dict_entries WHERE object_id=%s AND pos>%s ORDER BY pos LIMIT %s",
                          (object_id, cursor, limit))
        return [(r[0], bytes(r[1]), bytes(r[2])) for r in rows]

    def dict_clear(self, object_id: str) -> None:
        self._exec("DELETE FROM dict_entries WHERE object_id=%s", (object_id,))

    # -- queues
    def queue_put(self, object_id: str, partition: str, values: list[bytes]) -> None:
        def tx(c) -> None:
            c.cursor().executemany("INSERT INTO queue_items (object_id, partition, value) VALUES (%s,%s,%s)",
                                   [(object_id, partition, v) for v in values])

        self.db.run(tx)

    def queue_take(self, object_id: str, partition: str, limit: int) -> list[bytes]:
        # SKIP LOCKED: two takers never get the same item, and neither waits for the other.
        rows = self._rows(
            "DELETE FROM queue_items WHERE item_id IN (SELECT item_id FROM queue_items WHERE object_id=%s AND "
            "partition=%s ORDER BY item_id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING item_id, value",
            (object_id, partition, limit))
        return [bytes(r[1]) for r in sorted(rows)]

    def queue_peek(self, object_id: str, partition: str, after_id: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._rows("SELECT item_id, value FROM queue_items WHERE object_id=%s AND partition=%s AND item_id>%s "
                          "ORDER BY item_id LIMIT %s", (object_id, partition, after_id, limit))
        return [(r[0], bytes(r[1])) for r in rows]

    def queue_len(self, object_id: str, partition: str | None) -> int:
        if partition is None:
            return self._rows("SELECT COUNT(*) FROM queue_items WHERE object_id=%s", (object_id,))[0][0]
        return self._rows("SELECT COUNT(*) FROM queue_items WHERE object_id=%s AND partition=%s",
                          (object_id, partition))[0][0]

    def queue_clear(self, object_id: str, partition: str | None) -> None:
        if partition is None:
            self._exec("DELETE FROM queue_items WHERE object_id=%s", (object_id,))
        else:
            self._exec("DELETE FROM queue_items WHERE object_id=%s AND partition=%s", (object_id, partition))

    # -- secrets
    def put_secret(self, secret: StoredSecret) -> None:
        self._exec(
            "INSERT INTO secrets VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (name) DO UPDATE SET keys=excluded.keys, "
            "ciphertext=excluded.ciphertext, created_at=excluded.created_at, updated_at=excluded.updated_at, "
            "app_id=excluded.app_id",
            (secret.name, json.dumps(secret.keys), secret.ciphertext, secret.created_at, secret.updated_at, secret.app_id))

    @staticmethod
    def _secret(r) -> StoredSecret:
        return StoredSecret(r[0], json.loads(r[1]), bytes(r[2]), r[3], r[4], r[5])

    def get_secret(self, name: str) -> StoredSecret | None:
        rows = self._rows("SELECT * FROM secrets WHERE name=%s", (name,))
        return self._secret(rows[0]) if rows else None

    def list_secrets(self) -> list[StoredSecret]:
        return [self._secret(r) for r in self._rows("SELECT * FROM secrets ORDER BY name")]

    def delete_secret(self, name: str) -> bool:
        return self._exec("DELETE FROM secrets WHERE name=%s", (name,)) > 0

    def close(self) -> None:
        self.db.close()
