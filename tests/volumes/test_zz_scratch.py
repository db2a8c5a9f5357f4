import collections, random, threading, time
import pytest
from gpu_fabric.control_plane.volumes import GcPolicy, VolumeError, VolumeStore
from .test_gc import _digest

class TLock:
    def __init__(self, stats):
        self._l = threading.Lock(); self.stats = stats
    def __enter__(self):
        t0 = time.perf_counter(); self._l.acquire(); w = time.perf_counter() - t0
        n = threading.current_thread().name
        s = self.stats[n]; s[0] += 1; s[1] += w; s[2] = max(s[2], w)
        self._t = time.perf_counter()
        return self
    def __exit__(self, *a):
        self.stats[threading.current_thread().name][3] += time.perf_counter() - self._t
        self._l.release()

@pytest.mark.parametrize("grace_s", [0, 600])
def test_x(backend, clock, grace_s):
    store = VolumeStore(backend, clock=clock)
    stats = collections.defaultdict(lambda: [0, 0.0, 0.0, 0.0])
    tl = TLock(stats)
    store._locks["v"] = tl
    store.get_or_create("v", True)
    policy = GcPolicy(keep_versions=0, retention_s=0, grace_s=grace_s)
    clock.advance(1000)
    contents = [b"alpha", b"beta", b"gamma", b"delta"]
    rounds = 25 if type(backend).__name__ == "LocalBackend" else 8
    done, errors, failures, last = threading.Event(), [], [], {}
    sweeps = [0]
    def writer(w):
        rng = random.Random(w)
        try:
            for _ in range(rounds):
                data = rng.choice(contents)
                while True:
                    digest = _digest(data)
                    if store.missing_blocks("v", [digest]):
                        store.put_blocks("v", [data])
                    time.sleep(rng.random() * 0.004)
                    try:
                        store.commit("v", [{"path": f"w{w}", "size": len(data), "blocks": [digest]}], [])
                        break
                    except VolumeError as exc:
                        if exc.code != "FAILED_PRECONDITION":
                            raise
                        failures.append(w)
                last[w] = data
        except Exception as exc:
            errors.append(exc)
    def sweeper():
        while not done.is_set():
            clock.advance(0.5); sweeps[0] += 1
            store.collect(policy)
    def checker():
        while not done.is_set():
            with store._lock("v"):
                _, files = store.manifest("v")
                for path, entry in files.items():
                    for h in entry["blocks"]:
                        assert backend.exists(f"vol/v/b/{h}")
    writers = [threading.Thread(target=writer, args=(w,), name=f"w{w}") for w in range(3)]
    others = [threading.Thread(target=sweeper, name="sweeper"), threading.Thread(target=checker, name="checker")]
    t0 = time.perf_counter()
    for t in writers + others: t.start()
    for t in writers: t.join(120)
    el = time.perf_counter() - t0
    done.set()
    for t in others: t.join(60)
    print(f"\n{backend.__class__.__name__} grace={grace_s} writers {el:.2f}s sweeps={sweeps[0]} failures={len(failures)} errors={errors}")
    for n, s in sorted(stats.items()):
        print(f"  {n}: acq={s[0]} wait_total={s[1]:.2f}s wait_max={s[2]:.3f}s held_total={s[3]:.2f}s")
