"""Load: p50/p99 and calls/s of N concurrent SDK clients and of a large `.map()`, on SQLite and PostgreSQL.

Starts a `gpufabric serve` per state store on loopback (PostgreSQL when --pg-url, or
GPUFABRIC_TEST_PG_URL, reaches a server; a fresh schema, dropped after), and prints, beside a
baseline measured in the same run (one client):

  * N clients (threads spread over processes, each its own SDK client) x M warm `.remote()` calls;
  * a `.map()` of the given number of inputs;
  * the control plane's RSS before/after, and its RSS per queued input.

Defaults are the issue's sizes (200 clients x 100 calls, a 10,000-input map).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import core_executor as fabric  # noqa: E402
from tests import pg_server  # noqa: E402
from tests.integration.conftest import Fabric  # noqa: E402
from tests.load import load_apps, loadgen  # noqa: E402


def _pg_schema(url: str) -> tuple[str, str]:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, pg_server.with_schema(url, schema)


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def run(store: str, database: str, args) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        extra = ("--database", database) if database else ()
        fab = Fabric(data_dir, "--workers", "1", *extra).start()
        os.environ["GPUFABRIC_URL"], os.environ["GPUFABRIC_TOKEN"] = fab.url, fab.token
        try:
            load_apps.app.deploy()
            echo = fabric.Function.from_name("load", "echo")
            echo.remote(-1)
            rss0 = loadgen.rss_mib(fab.proc.pid)
            base = loadgen.run_clients(fab.url, fab.token, echo, 1, args.calls, processes=1)
            base.what = f"baseline: 1 client x {args.calls}"
            many = loadgen.run_clients(fab.url, fab.token, echo, args.clients, args.calls)
            mapped = loadgen.run_map(echo, args.map_inputs)
            rss1 = loadgen.rss_mib(fab.proc.pid)
            gate = fabric.Function.from_name("load", "gate")
            _, per_input = loadgen.rss_per_queued_input(fab.proc.pid, gate, args.map_inputs)
            print(f"--- {store} ({os.cpu_count()} CPUs) ---")
            for result in (base, many, mapped):
                print(result.line())
                for error in result.errors[:3]:
                    print("   error:", error)
            print(f"control plane RSS {rss0:.0f} MiB before, {rss1:.0f} MiB after; "
                  f"{per_input:.0f} bytes per queued input ({args.map_inputs} queued)")
            sys.stdout.flush()
        finally:
            fab.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--calls", type=int, default=100, help="sequential .remote() calls per client")
    parser.add_argument("--map-inputs", type=int, default=10_000)
    parser.add_argument("--stores", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default=pg_server.server_url())
    args = parser.parse_args()
    for store in args.stores.split(","):
        if store == "sqlite":
            run("sqlite", "", args)
        elif store == "postgresql":
            try:
                schema, url = _pg_schema(args.pg_url)
            except Exception as exc:  # noqa: BLE001
                print(f"--- postgresql: skipped, no server at {args.pg_url} ({type(exc).__name__}) ---")
                continue
            try:
                run("postgresql", url, args)
            finally:
                _drop_schema(args.pg_url, schema)
    return 0


if __name__ == "__main__":
    sys.exit(main())
