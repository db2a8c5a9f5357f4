"""The state store in PostgreSQL (psycopg 3), for a shared fabric: same contract as SQLiteStore."""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

from ._store import StateStore, StoredApp, StoredCall, StoredFunction, StoredInput, StoredLaunch, StoredOutput, _launch_row

log = logging.getLogger("gpu_fabric.control_plane")

# Held for the life of a control plane: the engine keeps claims (which container holds which
# input) in memory, so a second control plane on the same database would hand inputs out twice.
SERVE_LOCK_KEY = 0x6770_7566_0002
RECONNECT_WINDOW_S = 30.0


class DatabaseInUse(OSError):
    """Another control plane serves from this database; stop it or point this one elsewhere."""


def redact(url: str) -> str:
    """`url` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


class PgConnection:
    """One psycopg connection that reconnects: a dropped connection is retried with back-off for
    `reconnect_window_s`, then the error propagates. Statements run in `run(fn)` transactions,
    which must be idempotent (they may be replayed after a drop whose commit outcome is unknown)."""

    def __init__(self, url: str, *, serve_lock: bool = False, reconnect_window_s: float = RECONNECT_WINDOW_S,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = url
        self.serve_lock = serve_lock
        self.reconnect_window_s = reconnect_window_s
        self._sleep = sleep
        self.conn = None
        self._connect()

    def _connect(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
        if self.serve_lock:
            held = self.conn.execute("SELECT pg_try_advisory_lock(%s)", (SERVE_LOCK_KEY,)).fetchone()[0]
            if not held:
                self.conn.close()
                raise DatabaseInUse(
                    f"another gpu-fabric control plane serves from {redact(self.url)}; one database serves one "
                    "control plane (it hands out inputs from memory). Stop the other one, or give this one its "
                    "own database"
                )

    def run(self, fn):
        """fn(conn) inside one transaction; retried across a reconnect when the connection drops."""
        import psycopg

        deadline = time.monotonic() + self.reconnect_window_s
        delay = 0.1
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self._connect()
                with self.conn.transaction():
                    return fn(self.conn)
            except psycopg.OperationalError as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("database connection lost (%s); reconnecting to %s", exc, redact(self.url))
                self._drop()
                self._sleep(delay)
                delay = min(delay * 2, 2.0)

    def _drop(self) -> None:
        try:
            if self.conn is not None:
                self.conn.close()
        except Exception:  # noqa: BLE001 - already broken
            pass
        self.conn = None

    def close(self) -> None:
        self._drop()


class PostgresStore(StateStore):
    """Control-plane state in PostgreSQL. Migrates the schema on open and holds the serve lock
    (DatabaseInUse when another control plane has it) unless `serve_lock=False` (tools, tests)."""

    def __init__(self, url: str, *, serve_lock: bool = True, reconnect_window_s: float = RECONNECT_WINDOW_S):
        from .migrations import apply

        self.db = PgConnection(url, serve_lock=serve_lock, reconnect_window_s=reconnect_window_s)
        apply(self.db.conn)

    def _rows(self, sql: str, params=()) -> list:
        return self.db.run(lambda c: c.execute(sql, params).fetchall())

    def _exec(self, sql: str, params=()) -> int:
        return self.db.run(lambda c: c.execute(sql, params).rowcount)

    def put_app(self, app: StoredApp) -> None:
        self._exec(
            "INSERT INTO apps VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (app_id) DO UPDATE SET name=excluded.name, "
            "kind=excluded.kind, state=excluded.state, created_at=excluded.created_at, stopped_at=excluded.stopped_at, "
            "version=excluded.version",
            (app.app_id, app.name, app.kind, app.state, app.created_at, app.stopped_at, app.version),
        )

    def apps(self) -> list[StoredApp]:
        return [StoredApp(*row) for row in self._rows("SELECT * FROM apps ORDER BY created_at")]

    def put_function(self, fn: StoredFunction) -> None:
        self._exec(
            "INSERT INTO functions VALUES (%s,%s,%s,%s,%s) ON CONFLICT (function_id) DO UPDATE SET "
            "app_id=excluded.app_id, name=excluded.name, spec=excluded.spec, definition=excluded.definition",
            (fn.function_id, fn.app_id, fn.name, fn.spec, fn.definition),
        )

    def functions(self) -> list[StoredFunction]:
        return [StoredFunction(r[0], r[1], r[2], bytes(r[3]), bytes(r[4])) for r in self._rows("SELECT * FROM functions")]

    def calls(self) -> list[StoredCall]:
        return [StoredCall(*row[:9], bytes(row[9])) for row in self._rows("SELECT * FROM calls")]

    def pending_inputs(self) -> Iterator[StoredInput]:
        rows = self._rows("SELECT input_id, call_id, function_id, idx, payload, attempts, lost FROM inputs ORDER BY ord")
        for r in rows:
            yield StoredInput(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6])

    def write_batch(self, *, calls=(), inputs=(), outputs=(), retried=(), logs=(), schedules=(), schedule_runs=()) -> None:
        def tx(c) -> None:
            cur = c.cursor()
            if schedules:
                cur.executemany(
                    "INSERT INTO schedules VALUES (%s,%s,%s) ON CONFLICT (function_id) DO UPDATE SET "
                    "anchor=excluded.anchor, last_tick=excluded.last_tick", list(schedules))
            if schedule_runs:
                cur.executemany(
                    "INSERT INTO schedule_runs VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (function_id, tick) DO UPDATE SET "
                    "call_id=excluded.call_id, started_at=excluded.started_at, finished_at=excluded.finished_at, "
                    "status=excluded.status, error=excluded.error",
                    [(r.function_id, r.tick, r.call_id, r.started_at, r.finished_at, r.status, r.error) for r in schedule_runs])
            if calls:
                cur.executemany(
                    "INSERT INTO calls VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (call_id) DO UPDATE SET "
                    "num_inputs=excluded.num_inputs, num_done=excluded.num_done, closed=excluded.closed, "
                    "cancelled=excluded.cancelled, next_seq=excluded.next_seq, usage=excluded.usage",
                    [(k.call_id, k.function_id, k.kind, k.num_inputs, k.num_done, bool(k.closed), bool(k.cancelled),
                      k.created_at, k.next_seq, k.usage) for k in calls])
            if inputs:
                cur.executemany(
                    "INSERT INTO inputs (input_id, call_id, function_id, idx, payload, attempts, lost) "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (input_id) DO UPDATE SET payload=excluded.payload, "
                    "attempts=excluded.attempts, lost=excluded.lost",
                    [(i.input_id, i.call_id, i.function_id, i.idx, i.payload, i.attempts, i.lost) for i in inputs])
            if outputs:
                cur.executemany(
                    "INSERT INTO outputs VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (call_id, seq) DO UPDATE SET "
                    "input_id=excluded.input_id, idx=excluded.idx, result=excluded.result, attempts=excluded.attempts, "
                    "log_seq=excluded.log_seq, created_at=excluded.created_at",
                    [(o.call_id, o.seq, o.input_id, o.idx, o.result, o.attempts, o.log_seq, o.created_at) for o in outputs])
                done = [o.input_id for o in outputs if o.final]
                if done:
                    cur.execute("DELETE FROM inputs WHERE input_id = ANY(%s)", (done,))
            if retried:
                cur.executemany("UPDATE inputs SET attempts=%s, lost=%s WHERE input_id=%s",
                                [(i.attempts, i.lost, i.input_id) for i in retried])
            if logs:
                cur.executemany("INSERT INTO logs VALUES (%s,%s,%s) ON CONFLICT (app_id, seq) DO UPDATE SET entry=excluded.entry",
                                list(logs))

        self.db.run(tx)

    def schedules(self) -> list[tuple[str, float, float]]:
        return [tuple(r) for r in self._rows("SELECT function_id, anchor, last_tick FROM schedules")]

    def schedule_runs(self, function_ids: list[str], limit: int) -> list:
        from ._cron import ScheduleRunRecord

        rows = self._rows("SELECT * FROM schedule_runs WHERE function_id = ANY(%s) ORDER BY tick DESC LIMIT %s",
                          (list(function_ids), limit))
        return [ScheduleRunRecord(*row) for row in rows]

    def outputs(self) -> Iterator[StoredOutput]:
        for r in self._rows("SELECT * FROM outputs ORDER BY call_id, seq"):
            yield StoredOutput(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7])

    def delete_outputs(self, call_id: str, up_to_seq: int) -> None:
        self._exec("DELETE FROM outputs WHERE call_id=%s AND seq<=%s", (call_id, up_to_seq))

    def expire(self, before: float) -> int:
        def tx(c) -> int:
            n = c.execute("DELETE FROM outputs WHERE created_at<%s", (before,)).rowcount
            n += c.execute(
                "DELETE FROM calls WHERE created_at<%s AND closed AND num_done>=num_inputs "
                "AND NOT EXISTS (SELECT 1 FROM outputs o WHERE o.call_id=calls.call_id)", (before,)).rowcount
            return n

        return self.db.run(tx)

    def logs(self, app_id: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        rows = self._rows("SELECT seq, entry FROM logs WHERE app_id=%s AND seq>%s ORDER BY seq LIMIT %s",
                          (app_id, after_seq, limit))
        return [(r[0], bytes(r[1])) for r in rows]

    def max_log_seq(self, app_id: str) -> int:
        return int(self._rows("SELECT MAX(seq) FROM logs WHERE app_id=%s", (app_id,))[0][0] or 0)

    def trim_logs(self, app_id: str, keep: int) -> None:
        self._exec("DELETE FROM logs WHERE app_id=%s AND seq <= (SELECT MAX(seq) FROM logs WHERE app_id=%s) - %s",
                   (app_id, app_id, keep))

    _LAUNCH_COLUMNS = ("launch_id, provider, instance_id, offering, market, launched_at, state, join_token_id, "
                       "workspace, app_id, function_id, worker_id, charged_from")

    def put_launch(self, launch: StoredLaunch) -> None:
        self._exec(
            f"INSERT INTO launches ({self._LAUNCH_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
            "ON CONFLICT (launch_id) DO UPDATE SET provider=excluded.provider, instance_id=excluded.instance_id, "
            "offering=excluded.offering, market=excluded.market, launched_at=excluded.launched_at, state=excluded.state, "
            "join_token_id=excluded.join_token_id, workspace=excluded.workspace, app_id=excluded.app_id, "
            "function_id=excluded.function_id, worker_id=excluded.worker_id, charged_from=excluded.charged_from",
            _launch_row(launch),
        )

    def launches(self) -> list[StoredLaunch]:
        rows = self._rows(f"SELECT {self._LAUNCH_COLUMNS} FROM launches ORDER BY launched_at, launch_id")
        return [StoredLaunch(*row) for row in rows]

    def delete_launch(self, launch_id: str) -> None:
        self._exec("DELETE FROM launches WHERE launch_id=%s", (launch_id,))

    def get_meta(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE key=%s", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT INTO meta VALUES (%s,%s) ON CONFLICT (key) DO UPDATE SET value=excluded.value", (key, value))

    def close(self) -> None:
        self.db.close()
