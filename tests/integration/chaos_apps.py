"""A one-minute "training" function that checkpoints to a Volume; the chaos test kills it."""
import hashlib
import os
import time

import core_executor as fabric

app = fabric.App("chaos-integration")
chaos_volume = fabric.Volume.from_name("it-chaos", create_if_missing=True)
# Functions without an image see their volumes through a symlink at the mount path: keep it private.
MOUNT = os.environ.get("IT_CHAOS_MOUNT", "/tmp/gpufabric-it-chaos")


def expected(steps: int) -> dict:
    """What `train` returns when every step ran exactly once, in order."""
    digest, total = "", 0
    for step in range(steps):
        digest, total = _advance(digest, total, step)
    return {"digest": digest, "total": total}


def _advance(digest: str, total: int, step: int) -> tuple[str, int]:
    # A chained hash: a skipped, repeated or reordered step changes the result.
    return hashlib.sha256(f"{digest}:{step}".encode()).hexdigest(), total + step * step


def _note(path: str, line: str) -> None:
    # Outside the volume and flushed per line: the test sees progress even of a killed run.
    with open(path, "a") as f:
        f.write(line + "\n")


# retries=0: the kills are the infrastructure's losses, so the call must still succeed.
@app.function(volumes={MOUNT: chaos_volume}, retries=0, timeout=900)
def train(run_id: str, steps: int, step_s: float, every: int, mount: str, progress: str) -> dict:
    from checkpointing import CheckpointManager

    ckpt = CheckpointManager(os.path.join(mount, run_id), keep=2, on_save=chaos_volume.commit)
    found = ckpt.latest()
    state, start = ({"digest": "", "total": 0, "starts": []}, 0) if found is None else (found[0], found[1] + 1)
    attempt = fabric.current_input_attempt()
    state["starts"].append([start, attempt])
    _note(progress, f"start {os.getpid()} {start} {attempt}")
    for step in range(start, steps):
        time.sleep(step_s)
        state["digest"], state["total"] = _advance(state["digest"], state["total"], step)
        _note(progress, f"done {os.getpid()} {step}")
        if (step + 1) % every == 0 or step == steps - 1:
            ckpt.save(state, step)
    return state
