"""The state store's `launches` table (machines the autoscaler launched), on SQLite and PostgreSQL alike."""
from __future__ import annotations

from gpu_fabric.control_plane._launches import candidate_from_json, candidate_to_json
from gpu_fabric.control_plane._store import StoredLaunch
from gpu_fabric.control_plane.scheduler import Candidate
from gpu_fabric.providers import Market, load_catalog
from tests.control_plane.test_store_contract import backend, open_state  # noqa: F401 - fixture
from tests.pg_server import pg_url  # noqa: F401 - fixture


def _row(launch_id: str, launched_at: float, **kw) -> StoredLaunch:
    offering = load_catalog().for_cloud("aws", ["us-east-1"])[0]
    candidate = Candidate(offering, offering.zones[0], Market.SPOT, 0.42, 1, 0, False)
    fields = dict(provider="aws", instance_id="", offering=candidate_to_json(candidate), market="spot",
                  launched_at=launched_at, state="launching", join_token_id=f"{launch_id}.123", workspace="main",
                  app_id="ap-1", function_id="fu-1")
    fields.update(kw)
    return StoredLaunch(launch_id, **fields)


def test_launches_are_written_updated_listed_and_deleted(backend):  # noqa: F811
    store = open_state(backend)
    store.put_launch(_row("b", 20.0))
    store.put_launch(_row("a", 10.0, workspace="ml"))
    store.put_launch(_row("b", 20.0, instance_id="i-1", state="registered", worker_id="wk-1", charged_from=21.5))
    store.close()
    store = open_state(backend)  # they survive a reopen (a control-plane restart)
    rows = store.launches()
    assert [r.launch_id for r in rows] == ["a", "b"]  # oldest first
    assert rows[0].workspace == "ml"
    assert (rows[1].instance_id, rows[1].state, rows[1].worker_id, rows[1].charged_from) == ("i-1", "registered", "wk-1", 21.5)
    candidate = candidate_from_json(rows[1].offering)
    assert candidate.market == Market.SPOT and candidate.price == 0.42 and candidate.offering.cloud == "aws"
    assert isinstance(candidate.offering.zones, tuple)
    store.delete_launch("a")
    store.delete_launch("a")  # already gone: not an error
    assert [r.launch_id for r in store.launches()] == ["b"]
    store.close()
