"""GPU bench: cold and warm GPU starts, call overhead, 2 GiB tensors and warm starts of a model, on a real GPU.

Runs on the embedded fabric (or the one GPUFABRIC_URL points at) with this machine's NVIDIA GPU and
PyTorch, and prints each figure beside a baseline measured in the same run without the fabric:

- call -> first CUDA op on a cold container (a new process: import torch, CUDA context) beside a
  fresh `python` doing the same; and on a warm container beside the same op in this process;
- warm `.remote()` of a small GPU function (p50/p99) beside calling it in this process;
- a 2 GiB tensor as argument and as result through the blob path, in GiB/s, beside
  cloudpickle dumps+loads here and the GPU's own host<->device copies;
- a ~1 GiB model: cold (one `@enter` loads it and moves it to the GPU) beside fork-server warm
  starts (`@enter(snap=True)` loads it to CPU memory once, in the zygote; a normal `@enter` moves
  it to the GPU after the fork, since a CUDA context cannot be forked), and a fresh process;
  CRIU with NVIDIA's cuda-checkpoint is reported as unavailable with its reason where it is.

The last line is the figures as JSON. Without an NVIDIA GPU it prints "no NVIDIA GPU: skipped" and
exits 0; with a GPU but without PyTorch it says so and exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import core_executor as fabric

TYPE_ENV = "GPUFABRIC_BENCH_GPU_TYPE"  # set before the fabric starts: the containers import this file too
# The ~1 GiB model's weights: written by the bench, read by its containers (on this machine).
WEIGHTS = os.path.join(tempfile.gettempdir(), f"gpufabric-bench-gpu-weights-{os.getuid()}.npy")
GPU_TYPE = os.environ.get(TYPE_ENV) or "H100"
GIB = 1024 ** 3

app = fabric.App("bench-gpu")


def _first_cuda_op() -> float:
    import torch

    torch.ones(1, device="cuda").add_(1)
    torch.cuda.synchronize()
    return time.time()


@app.function(gpu=GPU_TYPE, scaledown_window=1)
def first_cuda_cold():
    return _first_cuda_op(), os.getpid()


@app.function(gpu=GPU_TYPE, scaledown_window=300)
def warm_gpu(kind: str, arg=None):
    """One warm container for every warm figure (a one-GPU machine holds one GPU container at a time)."""
    import torch

    if kind == "first_op":
        return _first_cuda_op()
    if kind == "small":
        return _small(arg)
    if kind == "in":  # a CPU tensor arrives; it is used on the GPU
        on_gpu = arg.to("cuda")
        torch.cuda.synchronize()
        return on_gpu.numel()
    if kind == "out":  # a tensor made on the GPU goes back
        return torch.ones(arg, dtype=torch.float32, device="cuda").cpu()
    raise ValueError(kind)


def _small(x: float) -> float:
    import torch

    return float(torch.full((16,), x, device="cuda").sum())


def _load_weights():
    import numpy as np
    import torch

    return torch.from_numpy(np.load(WEIGHTS))  # to CPU memory, no threads started


@app.cls(gpu=GPU_TYPE, scaledown_window=1)
class ColdModel:
    @fabric.enter()
    def load(self):
        self.weights = _load_weights().to("cuda")

    @fabric.method()
    def first_line(self):
        return {"at": time.time(), "pid": os.getpid(), "device": str(self.weights.device)}


@app.cls(gpu=GPU_TYPE, scaledown_window=1)
class SnapModel:
    @fabric.enter(snap=True)
    def load(self):
        self.cpu_weights = _load_weights()  # once, in the zygote; CUDA is never touched before the fork
        self.snap_pid = os.getpid()

    @fabric.enter()
    def to_gpu(self):
        self.weights = self.cpu_weights.to("cuda")

    @fabric.method()
    def first_line(self):
        return {"at": time.time(), "pid": os.getpid(), "ppid": os.getppid(), "snap_pid": self.snap_pid,
                "device": str(self.weights.device)}


# ------------------------------------------------------------------------------ measuring
def _gone(pid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            time.sleep(0.3)  # and let the control plane see the exit
            return
        except PermissionError:
            pass
        time.sleep(0.05)


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f} ms (min {min(values) * 1000:.1f}, n={len(values)})"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_FRESH_FIRST_OP = "import time, torch; torch.ones(1, device='cuda').add_(1); torch.cuda.synchronize(); print(repr(time.time()))"
_FRESH_MODEL = (f"import time, numpy, torch; w = torch.from_numpy(numpy.load({WEIGHTS!r}))"
                ".to('cuda'); torch.cuda.synchronize(); print(repr(time.time()))")


def _fresh_process(code: str, n: int) -> list[float]:
    """Seconds from starting a new interpreter to the moment `code` prints, n times."""
    out = []
    for _ in range(n):
        t0 = time.time()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
        out.append(float(done.stdout.strip().splitlines()[-1]) - t0)
    return out


def _machine() -> dict:
    from gpu_fabric.worker._gpus import discover_gpus

    gpus = [g for g in discover_gpus() if not g.simulated]
    if not gpus:
        return {}
    g = gpus[0]
    return {"gpu": g.name, "type": g.type, "gpus": len(gpus), "memory_mb": g.memory_mb, "driver": g.driver_version,
            "cuda": g.cuda_version}


def _criu_row() -> str:
    from checkpointing import detect_criu

    support = detect_criu()
    tool = shutil.which("cuda-checkpoint")
    criu = "criu usable" if support.usable else f"criu unusable ({support.reason})"
    cuda = f"cuda-checkpoint at {tool}" if tool else "no cuda-checkpoint on PATH"
    return f"unavailable: {criu}; {cuda}; containers are not restored from CRIU images yet, so GPU containers start cold or from the fork-server"


def run(samples: int, blob_gib: float) -> dict:
    import cloudpickle
    import numpy as np
    import torch

    figures: dict = {}
    rows: list[tuple[str, str, str]] = []
    np.save(WEIGHTS, np.full(GIB // 4, 0.5, dtype=np.float32))
    numel = int(blob_gib * GIB) // 4

    # Baselines without the fabric, first: this process stays free of CUDA until they are done.
    fresh_first_op = _fresh_process(_FRESH_FIRST_OP, samples)
    fresh_model = _fresh_process(_FRESH_MODEL, samples)

    with app.run(show_logs=False):
        cold = []
        for _ in range(samples):
            t0 = time.time()
            at, pid = first_cuda_cold.remote()
            cold.append(at - t0)
            _gone(pid)
        figures["cold_first_cuda_op_s"] = cold
        rows.append(("call -> first CUDA op, cold container", _ms(cold), f"fresh python process: {_ms(fresh_first_op)}"))

        cold_model = []
        for _ in range(samples):
            t0 = time.time()
            got = ColdModel().first_line.remote()
            assert got["device"].startswith("cuda"), got
            cold_model.append(got["at"] - t0)
            _gone(got["pid"])
        forked = []
        for _ in range(samples + 1):
            t0 = time.time()
            got = SnapModel().first_line.remote()
            assert got["device"].startswith("cuda"), got
            forked.append((got["at"] - t0, got["ppid"] == got["snap_pid"] != got["pid"]))
            _gone(got["pid"])
        warmup, forked_s = forked[0][0], [s for s, _ in forked[1:]]
        from_zygote = sum(1 for _, f in forked[1:] if f)
        figures.update(model_cold_s=cold_model, model_fork_server_s=forked_s, model_fork_server_first_s=warmup,
                       model_forked_from_zygote=f"{from_zygote}/{len(forked_s)}")
        speedup = statistics.median(cold_model) / statistics.median(forked_s)
        rows.append(("1 GiB model on the GPU, cold container", _ms(cold_model), f"fresh python process: {_ms(fresh_model)}"))
        rows.append(("1 GiB model on the GPU, fork-server", _ms(forked_s),
                     f"{speedup:.1f}x faster than cold; {from_zygote}/{len(forked_s)} forked from the zygote;"
                     f" the zygote's first container (waits for the warm-up): {warmup * 1000:.0f} ms"))
        rows.append(("1 GiB model on the GPU, CRIU + cuda-checkpoint", _criu_row(), ""))
        figures["criu"] = _criu_row()

        warm_gpu.remote("first_op")  # the warm container
        warm = []
        for _ in range(max(20, samples)):
            t0 = time.time()
            warm.append(warm_gpu.remote("first_op") - t0)
        _first_cuda_op()
        here = []
        for _ in range(max(20, samples)):
            t0 = time.time()
            here.append(_first_cuda_op() - t0)
        figures.update(warm_first_cuda_op_s=warm, in_process_cuda_op_s=here)
        rows.append(("call -> first CUDA op, warm container", _ms(warm), f"same op in this process: {_ms(here)}"))

        remote, local = [], []
        for i in range(300):
            t0 = time.perf_counter()
            warm_gpu.remote("small", float(i))
            remote.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            _small(float(i))
            local.append(time.perf_counter() - t0)
        remote, local = remote[50:], local[50:]
        overhead = statistics.median(remote) - statistics.median(local)
        figures.update(small_remote_p50_s=statistics.median(remote), small_remote_p99_s=_pct(remote, 0.99),
                       small_local_p50_s=statistics.median(local), small_overhead_p50_s=overhead)
        rows.append(("warm .remote() of a small GPU function",
                     f"p50 {statistics.median(remote) * 1000:.2f} ms, p99 {_pct(remote, 0.99) * 1000:.2f} ms",
                     f"in this process: p50 {statistics.median(local) * 1000:.3f} ms; overhead p50 {overhead * 1000:.2f} ms"))

        tensor = torch.ones(numel, dtype=torch.float32)
        size_gib = tensor.numel() * 4 / GIB
        t0 = time.perf_counter()
        assert warm_gpu.remote("in", tensor) == numel
        arg_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        back = warm_gpu.remote("out", numel)
        ret_s = time.perf_counter() - t0
        assert back.numel() == numel and float(back[:16].sum()) == 16.0
        del back
        t0 = time.perf_counter()
        cloudpickle.loads(cloudpickle.dumps(tensor))
        pickle_s = time.perf_counter() - t0
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        on_gpu = tensor.to("cuda")
        torch.cuda.synchronize()
        h2d_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        on_gpu.cpu()
        d2h_s = time.perf_counter() - t0
        del on_gpu, tensor
        figures.update(blob_gib=size_gib, blob_arg_s=arg_s, blob_return_s=ret_s, pickle_roundtrip_s=pickle_s,
                       h2d_s=h2d_s, d2h_s=d2h_s)
        rows.append((f"{size_gib:g} GiB tensor argument (blob path)", f"{size_gib / arg_s:.2f} GiB/s ({arg_s:.1f} s)",
                     f"cloudpickle dumps+loads here: {size_gib / pickle_s:.2f} GiB/s; host->GPU copy: {size_gib / h2d_s:.1f} GiB/s"))
        rows.append((f"{size_gib:g} GiB tensor result (blob path)", f"{size_gib / ret_s:.2f} GiB/s ({ret_s:.1f} s)",
                     f"GPU->host copy: {size_gib / d2h_s:.1f} GiB/s"))

    width = max(len(r[0]) for r in rows)
    fab_width = max(len(r[1]) for r in rows if r[2])
    print(f"{'measure':<{width}}  {'through the fabric':<{fab_width}}  baseline (this run, no fabric)")
    for name, through, baseline in rows:
        print(f"{name:<{width}}  {through:<{fab_width}}  {baseline}".rstrip())
    return figures


def _rounded(value):
    """Figures to 0.1 µs: enough for milliseconds, short enough to read."""
    if isinstance(value, float):
        return round(value, 7)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3, help="New containers per cold/fork-server figure.")
    parser.add_argument("--blob-gib", type=float, default=2.0, help="Size of the tensor sent and returned.")
    args = parser.parse_args()
    machine = _machine()
    if not machine:
        print("no NVIDIA GPU: skipped (NVML and nvidia-smi found none; bench/gpu.py needs one)")
        return 0
    try:
        import torch
    except ImportError as exc:
        print(f"NVIDIA GPU {machine['gpu']} found, but PyTorch is not installed ({exc}): cannot measure")
        return 1
    if not torch.cuda.is_available():
        print(f"NVIDIA GPU {machine['gpu']} found, but PyTorch {torch.__version__} sees no CUDA device: cannot measure")
        return 1
    if GPU_TYPE != machine["type"]:  # the functions above were declared for another type: again, with this one
        return subprocess.call([sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                               env=dict(os.environ, **{TYPE_ENV: machine["type"]}))
    os.environ[TYPE_ENV] = machine["type"]  # the containers import this file too: the same GPU type there
    machine.update(torch=torch.__version__, torch_cuda=torch.version.cuda, python=sys.version.split()[0])
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    try:
        figures = run(args.samples, args.blob_gib)
    finally:
        if os.path.exists(WEIGHTS):
            os.unlink(WEIGHTS)
    print("figures: " + json.dumps(_rounded({"machine": machine, **figures})))
    return 0


if __name__ == "__main__":
    sys.exit(main())
