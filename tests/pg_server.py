"""A PostgreSQL server for tests: GPUFABRIC_TEST_PG_URL (or the local CI one), a fresh schema per test."""
from __future__ import annotations

import os
import uuid

import pytest

# .ci/run creates this role and database on the Debian cluster it starts.
DEFAULT_URL = "postgresql://fabric:fabric@127.0.0.1:5432/fabric_test"


def server_url() -> str:
    return os.environ.get("GPUFABRIC_TEST_PG_URL", DEFAULT_URL)


def _reachable() -> str:
    """'' when a server answers at server_url(), else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(server_url(), connect_timeout=3).close()
    except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
        return f"no PostgreSQL server at {server_url()} ({type(exc).__name__}); set GPUFABRIC_TEST_PG_URL"
    return ""


_why_not = None


def require_server() -> None:
    """Skip the calling test with a reason when no server is reachable (CI always has one)."""
    global _why_not
    if _why_not is None:
        _why_not = _reachable()
    if _why_not:
        pytest.skip(_why_not)


def with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url():
    """A URL whose connections see only a fresh, empty schema (dropped after the test)."""
    require_server()
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield with_schema(server_url(), schema)
    with psycopg.connect(server_url(), autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
