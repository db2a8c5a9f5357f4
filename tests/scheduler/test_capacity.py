"""Catalog lookups, ranking of new capacity, blocks and deploy-time errors."""
from __future__ import annotations

import pytest

from gpu_fabric.control_plane.scheduler import Blocklist, Unsatisfiable, check_satisfiable, rank
from gpu_fabric.proto import common_pb2
from gpu_fabric.providers import UnknownGpuType, load_catalog
from gpu_fabric.providers.base import LaunchError, Market


def _spec(*gpus, **kw):
    return common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type=t, count=n) for t, n in gpus], **kw)


def test_catalog_has_every_gpu_type_with_a_date_and_sources():
    cat = load_catalog()
    assert cat.gpu_types == ["T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100", "H200", "B200"]
    assert cat.date and set(cat.sources) == {"aws", "gcp", "oci"}
    for gpu in cat.gpu_types:
        assert any(o.gpu == gpu for o in cat.offerings), gpu
    assert all(o.on_demand > 0 and (o.spot is None or o.spot < o.on_demand) for o in cat.offerings)


def test_unknown_gpu_names_the_valid_ones_and_the_closest():
    with pytest.raises(UnknownGpuType) as info:
        load_catalog().resolve("H10O")
    assert info.value.closest == "H100" and "T4" in str(info.value) and "B200" in str(info.value)


def test_strict_and_upgradable_choices():
    cat = load_catalog()
    assert cat.resolve("H100").types == ("H100", "H200")
    assert cat.resolve("h100!").types == ("H100",)
    assert cat.resolve("A100").types == ("A100-40GB", "A100-80GB")
    assert cat.resolve("A100-40GB").types == ("A100-40GB", "A100-80GB")


def test_rank_prefers_the_users_order_then_exact_then_price():
    cands, _ = rank(_spec(("L4", 1), ("T4", 1)), load_catalog().offerings)
    assert cands[0].gpu == "L4" and cands[0].market == Market.SPOT
    prices = [c.price for c in cands if c.gpu == "L4" and c.slots == 1]
    assert prices == sorted(prices)
    assert cands[-1].gpu == "T4"
    up, _ = rank(_spec(("H100", 1)), load_catalog().offerings)
    assert not any(c.upgrade for c in up[: [c.upgrade for c in up].index(True)])


def test_pins_and_nonpreemptible_filter_candidates():
    cands, _ = rank(_spec(("H100", 8), clouds=["gcp"], regions=["us-central1"], nonpreemptible=True), load_catalog().offerings)
    assert cands and all(c.offering.cloud == "gcp" and c.offering.region == "us-central1" and c.market == Market.ON_DEMAND for c in cands)
    zone, _ = rank(_spec(("T4", 1), regions=["us-east-1b"]), load_catalog().offerings)
    assert {c.zone for c in zone} == {"us-east-1b"}


def test_blocks_apply_at_their_level_and_expire():
    now = [0.0]
    blocks = Blocklist(lambda: now[0])
    blocks.add_error(LaunchError("x", kind="capacity", scope="zone", cloud="aws", region="us-east-1", zone="us-east-1a",
                                 instance_type="g6.xlarge", market=Market.SPOT))
    blocks.add_error(LaunchError("x", kind="quota", scope="region", cloud="aws", region="us-west-2", market=Market.SPOT))
    blocks.add_error(LaunchError("x", kind="auth", scope="cloud", cloud="gcp"))
    cands, skipped = rank(_spec(("L4", 1)), load_catalog().offerings, blocks)
    places = {(c.offering.cloud, c.offering.region, c.zone, c.market.value) for c in cands if c.offering.instance_type in ("g6.xlarge", "g2-standard-4")}
    assert ("aws", "us-east-1", "us-east-1a", "spot") not in places and ("aws", "us-east-1", "us-east-1a", "on-demand") in places
    assert not any(p[1] == "us-west-2" and p[3] == "spot" for p in places)
    assert not any(c.offering.cloud == "gcp" for c in cands) and skipped
    now[0] = 10_000.0
    assert any(c.offering.cloud == "gcp" for c in rank(_spec(("L4", 1)), load_catalog().offerings, blocks)[0])


@pytest.mark.parametrize("spec,constraint", [
    (_spec(("B200", 1), clouds=["oci"], regions=["eu-frankfurt-1"]), "regions"),
    (_spec(("L40S", 1), clouds=["gcp"]), "clouds"),
    (_spec(("T4", 16)), "count"),
    (_spec(("T4", 1), cpu=500), "resources"),
])
def test_unsatisfiable_names_the_constraint(spec, constraint):
    with pytest.raises(Unsatisfiable) as info:
        check_satisfiable(spec, load_catalog().offerings)
    assert info.value.constraint == constraint


def test_engine_rejects_unknown_gpu_and_unsatisfiable_constraints_at_deploy(tmp_path):
    from gpu_fabric.control_plane import Engine, FabricError, SQLiteStore
    from gpu_fabric.control_plane._autoscaler import Autoscaler
    from gpu_fabric.providers.simulated import SimClock, SimulatedProvider

    engine = Engine(SQLiteStore(str(tmp_path / "s.sqlite3")), token="t", default_python="3.11")
    app = engine.create_app("a", 2)
    definition = common_pb2.FunctionDefinition(kind=common_pb2.FunctionDefinition.KIND_SERIALIZED)
    with pytest.raises(FabricError, match="did you mean 'L40S'"):
        engine.create_function(app.app_id, _spec(("L40", 1)), definition)
    clock = SimClock()
    engine.autoscaler = Autoscaler([SimulatedProvider("aws", load_catalog().for_cloud("aws"), clock=clock)],
                                   engine.scheduler, engine.ledger, control_url="grpc://x:1", secret="t", clock=clock)
    with pytest.raises(FabricError, match=r"regions=\['europe-west4'\]"):
        engine.create_function(app.app_id, _spec(("H100", 1), regions=["europe-west4"]), definition)
