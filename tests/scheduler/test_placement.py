"""Placement and container-count decisions."""
from gpu_fabric.control_plane import scheduler as sched
from gpu_fabric.proto import common_pb2


def _worker(wid, cpu=2.0, gpus=()):
    return sched.WorkerCapacity(wid, cpu, 8192, [sched.GpuSlot(i, t) for i, t in enumerate(gpus)])


def test_gpu_fallback_list_is_tried_in_order():
    spec = common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type="B200", count=1), common_pb2.GpuRequest(type="H100", count=1)])
    placement, _ = sched.place(spec, [_worker("a", gpus=["T4"]), _worker("b", gpus=["H100", "H100"])])
    assert placement.worker_id == "b" and placement.gpu_type == "H100" and placement.gpu_indices == [0]


def test_a100_matches_both_variants_but_a100_80gb_only_itself():
    spec = common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type="A100", count=1)])
    assert sched.place(spec, [_worker("a", gpus=["A100-40GB"])])[0] is not None
    spec80 = common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type="A100-80GB", count=1)])
    placement, reason = sched.place(spec80, [_worker("a", gpus=["A100-40GB"])])
    assert placement is None and "A100-80GB" in reason


def test_claims_use_up_capacity_and_release_returns_it():
    w = _worker("a", cpu=1.0, gpus=["H100"])
    spec = common_pb2.FunctionSpec(name="f", cpu=1.0, gpus=[common_pb2.GpuRequest(type="H100", count=1)])
    placement, _ = sched.place(spec, [w])
    sched.claim(w, placement)
    assert sched.place(spec, [w])[0] is None
    assert sched.could_ever_fit(spec, [w])
    sched.release(w, placement)
    assert sched.place(spec, [w])[0] is not None


def test_two_gpus_on_a_one_gpu_fabric_can_never_fit():
    spec = common_pb2.FunctionSpec(name="f", gpus=[common_pb2.GpuRequest(type="H100", count=2)])
    assert not sched.could_ever_fit(spec, [_worker("a", gpus=["H100"])])


def test_desired_containers():
    spec = common_pb2.FunctionSpec(name="f")
    assert sched.desired_containers(spec, queued=0, running=0, avg_duration_s=None) == 0
    assert sched.desired_containers(spec, queued=10, running=0, avg_duration_s=None) == 10
    # Fast inputs: one container drains 1,000 queued 1 ms inputs within the target.
    assert sched.desired_containers(spec, queued=1000, running=0, avg_duration_s=0.001) == 1
    bounded = common_pb2.FunctionSpec(name="f", min_containers=2, max_containers=3, buffer_containers=1)
    assert sched.desired_containers(bounded, queued=0, running=0, avg_duration_s=None) == 2  # buffer only under load
    assert sched.desired_containers(bounded, queued=100, running=0, avg_duration_s=None) == 3
    concurrent = common_pb2.FunctionSpec(name="f", max_concurrent_inputs=10)
    assert sched.desired_containers(concurrent, queued=25, running=0, avg_duration_s=None) == 3
