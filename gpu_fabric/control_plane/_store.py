"""The state store: what the control plane must not lose, behind one interface (SQLite here)."""
from __future__ import annotations

import abc
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterator


@dataclass
class StoredInput:
    input_id: str
    call_id: str
    function_id: str
    idx: int
    payload: bytes  # a serialized FunctionInput
    attempts: int
    lost: int


@dataclass
class StoredOutput:
    call_id: str
    seq: int
    input_id: str
    idx: int
    result: bytes  # a serialized FunctionResult
    attempts: int
    log_seq: int
    created_at: float
    # False for a generator's items: the input goes on after them.
    final: bool = True


@dataclass
class StoredCall:
    call_id: str
    function_id: str
    kind: int
    num_inputs: int
    num_done: int
    closed: bool
    cancelled: bool
    created_at: float
    next_seq: int = 1
    # What the call's finished attempts used (_usage.CallUsage.encode); b"" until one ends.
    usage: bytes = b""


@dataclass
class StoredApp:
    app_id: str
    name: str
    kind: int
    state: int
    created_at: float
    stopped_at: float
    version: int = 1


@dataclass
class StoredFunction:
    function_id: str
    app_id: str
    name: str
    spec: bytes
    definition: bytes


@dataclass
class StoredLaunch:
    """A machine the autoscaler launched, kept so that a restarted control plane adopts it, closes
    its bill, or terminates it (_launches.py). Deleted once the machine is terminated."""

    launch_id: str
    provider: str
    instance_id: str  # "" while the launch request is in flight
    offering: str  # JSON of the scheduler's Candidate: offering, zone, market, price, slots
    market: str
    launched_at: float
    state: str  # "launching", "booting" or "registered"
    join_token_id: str  # "<launch_id>.<expires>": the token itself is re-derived from the fabric's secret
    workspace: str
    app_id: str
    function_id: str
    worker_id: str = ""
    charged_from: float = 0.0  # when its instance charge began in the ledger (0: not yet)


class StateStore(abc.ABC):
    """Durable control-plane state. Every method commits before it returns."""

    @abc.abstractmethod
    def put_app(self, app: StoredApp) -> None: ...

    @abc.abstractmethod
    def apps(self) -> list[StoredApp]: ...

    @abc.abstractmethod
    def put_function(self, fn: StoredFunction) -> None: ...

    @abc.abstractmethod
    def functions(self) -> list[StoredFunction]: ...

    @abc.abstractmethod
    def calls(self) -> list[StoredCall]: ...

    @abc.abstractmethod
    def pending_inputs(self) -> Iterator[StoredInput]: ...

    @abc.abstractmethod
    def write_batch(self, *, calls=(), inputs=(), outputs=(), retried=(), logs=(), schedules=(), schedule_runs=()) -> None:
        """One transaction: calls (new or updated), new inputs, outputs (their inputs are done and
        deleted), retry counters of inputs, app log entries as (app_id, seq, entry), schedule
        positions as (function_id, anchor, last_tick) and schedule runs (ScheduleRunRecord)."""

    @abc.abstractmethod
    def schedules(self) -> list[tuple[str, float, float]]: ...

    @abc.abstractmethod
    def schedule_runs(self, function_ids: list[str], limit: int) -> list: ...

    @abc.abstractmethod
    def outputs(self) -> Iterator[StoredOutput]: ...

    @abc.abstractmethod
    def delete_outputs(self, call_id: str, up_to_seq: int) -> None: ...

    @abc.abstractmethod
    def expire(self, before: float) -> int:
        """Delete outputs created before `before` and calls with nothing left; returns rows deleted."""

    @abc.abstractmethod
    def logs(self, app_id: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]: ...

    @abc.abstractmethod
    def max_log_seq(self, app_id: str) -> int: ...

    @abc.abstractmethod
    def put_launch(self, launch: StoredLaunch) -> None:
        """Insert or replace the row of `launch.launch_id`."""

    @abc.abstractmethod
    def launches(self) -> list[StoredLaunch]:
        """Every launch not yet terminated, oldest first."""

    @abc.abstractmethod
    def delete_launch(self, launch_id: str) -> None:
        """Forget a launch (its machine is terminated or never came to be); a missing one is not an error."""

    @abc.abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS apps (
    app_id TEXT PRIMARY KEY, name TEXT NOT NULL, kind INTEGER NOT NULL, state INTEGER NOT NULL,
    created_at REAL NOT NULL, stopped_at REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS functions (
    function_id TEXT PRIMARY KEY, app_id TEXT NOT NULL, name TEXT NOT NULL,
    spec BLOB NOT NULL, definition BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY, function_id TEXT NOT NULL, kind INTEGER NOT NULL,
    num_inputs INTEGER NOT NULL, num_done INTEGER NOT NULL, closed INTEGER NOT NULL,
    cancelled INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS inputs (
    input_id TEXT PRIMARY KEY, call_id TEXT NOT NULL, function_id TEXT NOT NULL, idx INTEGER NOT NULL,
    payload BLOB NOT NULL, attempts INTEGER NOT NULL, lost INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (
    call_id TEXT NOT NULL, seq INTEGER NOT NULL, input_id TEXT NOT NULL, idx INTEGER NOT NULL,
    result BLOB NOT NULL, attempts INTEGER NOT NULL, log_seq INTEGER NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (call_id, seq));
CREATE TABLE IF NOT EXISTS schedules (
    function_id TEXT PRIMARY KEY, anchor REAL NOT NULL, last_tick REAL NOT NULL);
CREATE TABLE IF NOT EXISTS schedule_runs (
    function_id TEXT NOT NULL, tick REAL NOT NULL, call_id TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL NOT NULL, status INTEGER NOT NULL, error TEXT NOT NULL, PRIMARY KEY (function_id, tick));
CREATE TABLE IF NOT EXISTS logs (
    app_id TEXT NOT NULL, seq INTEGER NOT NULL, entry BLOB NOT NULL, PRIMARY KEY (app_id, seq));
CREATE TABLE IF NOT EXISTS launches (
    launch_id TEXT PRIMARY KEY, provider TEXT NOT NULL, instance_id TEXT NOT NULL, offering TEXT NOT NULL,
    market TEXT NOT NULL, launched_at REAL NOT NULL, state TEXT NOT NULL, join_token_id TEXT NOT NULL,
    workspace TEXT NOT NULL, app_id TEXT NOT NULL, function_id TEXT NOT NULL, worker_id TEXT NOT NULL,
    charged_from REAL NOT NULL);
"""


# Schema changes after the first release, applied in order; PRAGMA user_version counts them.
_MIGRATIONS = [
    "ALTER TABLE calls ADD COLUMN next_seq INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE apps ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE calls ADD COLUMN usage BLOB NOT NULL DEFAULT x''",
]


class SQLiteStore(StateStore):
    """SQLite in WAL mode; a commit survives the control plane process dying (not power loss
    unless `synchronous="FULL"`). Use from one thread: the control plane's event loop."""

    def __init__(self, path: str, *, synchronous: str = "NORMAL"):
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise RuntimeError(
                f"the state store is at schema version {version}, newer than this gpu-fabric knows "
                f"({len(_MIGRATIONS)}); upgrade gpu-fabric or use another --data-dir"
            )
        for number, statement in enumerate(_MIGRATIONS[version:], start=version + 1):
            with self._tx():
                self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={number}")

    def _tx(self):
        return _Transaction(self._db)

    def put_app(self, app: StoredApp) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO apps VALUES (?,?,?,?,?,?,?)",
                (app.app_id, app.name, app.kind, app.state, app.created_at, app.stopped_at, app.version),
            )

    def apps(self) -> list[StoredApp]:
        return [StoredApp(*row) for row in self._db.execute("SELECT * FROM apps")]

    def put_function(self, fn: StoredFunction) -> None:
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO functions VALUES (?,?,?,?,?)",
                (fn.function_id, fn.app_id, fn.name, fn.spec, fn.definition),
            )

    def functions(self) -> list[StoredFunction]:
        return [StoredFunction(*row) for row in self._db.execute("SELECT * FROM functions")]

    def _write_call(self, call: StoredCall) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?,?)",
            (call.call_id, call.function_id, call.kind, call.num_inputs, call.num_done,
             int(call.closed), int(call.cancelled), call.created_at, call.next_seq, call.usage),
        )

    def calls(self) -> list[StoredCall]:
        return [
            StoredCall(r[0], r[1], r[2], r[3], r[4], bool(r[5]), bool(r[6]), r[7], r[8], bytes(r[9]))
            for r in self._db.execute("SELECT * FROM calls")
        ]

    def pending_inputs(self) -> Iterator[StoredInput]:
        for row in self._db.execute("SELECT * FROM inputs ORDER BY rowid"):
            yield StoredInput(*row)

    def write_batch(self, *, calls=(), inputs=(), outputs=(), retried=(), logs=(), schedules=(), schedule_runs=()) -> None:
        with self._tx():
            if schedules:
                self._db.executemany("INSERT OR REPLACE INTO schedules VALUES (?,?,?)", schedules)
            if schedule_runs:
                self._db.executemany(
                    "INSERT OR REPLACE INTO schedule_runs VALUES (?,?,?,?,?,?,?)",
                    [(r.function_id, r.tick, r.call_id, r.started_at, r.finished_at, r.status, r.error) for r in schedule_runs],
                )
            for call in calls:
                self._write_call(call)
            if inputs:
                self._db.executemany(
                    "INSERT OR REPLACE INTO inputs VALUES (?,?,?,?,?,?,?)",
                    [(i.input_id, i.call_id, i.function_id, i.idx, i.payload, i.attempts, i.lost) for i in inputs],
                )
            if outputs:
                self._db.executemany(
                    "INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?,?,?)",
                    [(o.call_id, o.seq, o.input_id, o.idx, o.result, o.attempts, o.log_seq, o.created_at) for o in outputs],
                )
                self._db.executemany("DELETE FROM inputs WHERE input_id=?", [(o.input_id,) for o in outputs if o.final])
            if retried:
                self._db.executemany(
                    "UPDATE inputs SET attempts=?, lost=? WHERE input_id=?",
                    [(i.attempts, i.lost, i.input_id) for i in retried],
                )
            if logs:
                self._db.executemany("INSERT OR REPLACE INTO logs VALUES (?,?,?)", logs)

    def schedules(self) -> list[tuple[str, float, float]]:
        return list(self._db.execute("SELECT function_id, anchor, last_tick FROM schedules"))

    def schedule_runs(self, function_ids: list[str], limit: int) -> list:
        from ._cron import ScheduleRunRecord

        marks = ",".join("?" * len(function_ids)) or "''"
        rows = self._db.execute(
            f"SELECT * FROM schedule_runs WHERE function_id IN ({marks}) ORDER BY tick DESC LIMIT ?", (*function_ids, limit)
        )
        return [ScheduleRunRecord(*row) for row in rows]

    def outputs(self) -> Iterator[StoredOutput]:
        for row in self._db.execute("SELECT * FROM outputs ORDER BY call_id, seq"):
            yield StoredOutput(*row)

    def delete_outputs(self, call_id: str, up_to_seq: int) -> None:
        with self._tx():
            self._db.execute("DELETE FROM outputs WHERE call_id=? AND seq<=?", (call_id, up_to_seq))

    def expire(self, before: float) -> int:
        with self._tx():
            n = self._db.execute("DELETE FROM outputs WHERE created_at<?", (before,)).rowcount
            n += self._db.execute(
                "DELETE FROM calls WHERE created_at<? AND closed=1 AND num_done>=num_inputs "
                "AND call_id NOT IN (SELECT call_id FROM outputs)",
                (before,),
            ).rowcount
        return n

    def logs(self, app_id: str, after_seq: int, limit: int) -> list[tuple[int, bytes]]:
        return list(
            self._db.execute(
                "SELECT seq, entry FROM logs WHERE app_id=? AND seq>? ORDER BY seq LIMIT ?", (app_id, after_seq, limit)
            )
        )

    def max_log_seq(self, app_id: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM logs WHERE app_id=?", (app_id,)).fetchone()
        return int(row[0] or 0)

    def trim_logs(self, app_id: str, keep: int) -> None:
        with self._tx():
            self._db.execute(
                "DELETE FROM logs WHERE app_id=? AND seq <= (SELECT MAX(seq) FROM logs WHERE app_id=?) - ?",
                (app_id, app_id, keep),
            )

    _LAUNCH_COLUMNS = ("launch_id, provider, instance_id, offering, market, launched_at, state, join_token_id, "
                       "workspace, app_id, function_id, worker_id, charged_from")

    def put_launch(self, launch: StoredLaunch) -> None:
        with self._tx():
            self._db.execute(f"INSERT OR REPLACE INTO launches ({self._LAUNCH_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                             _launch_row(launch))

    def launches(self) -> list[StoredLaunch]:
        rows = self._db.execute(f"SELECT {self._LAUNCH_COLUMNS} FROM launches ORDER BY launched_at, launch_id")
        return [StoredLaunch(*row) for row in rows]

    def delete_launch(self, launch_id: str) -> None:
        with self._tx():
            self._db.execute("DELETE FROM launches WHERE launch_id=?", (launch_id,))

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (key, value))

    def close(self) -> None:
        self._db.close()


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        return False


def _launch_row(launch: StoredLaunch) -> tuple:
    return (launch.launch_id, launch.provider, launch.instance_id, launch.offering, launch.market, launch.launched_at,
            launch.state, launch.join_token_id, launch.workspace, launch.app_id, launch.function_id, launch.worker_id,
            launch.charged_from)


def now() -> float:
    return time.time()
