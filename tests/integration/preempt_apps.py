"""A training-like function that checkpoints to a Volume each step; the preemption tests run it."""
import os
import time

import core_executor as fabric

app = fabric.App("preemption-integration")
ckpt_volume = fabric.Volume.from_name("it-checkpoints", create_if_missing=True)
# Functions without an image see their volumes through a symlink at the mount path: keep it private.
MOUNT = os.environ.get("IT_PREEMPT_MOUNT", "/tmp/gpufabric-it-ckpt")


@app.function(volumes={MOUNT: ckpt_volume}, retries=1, timeout=300)
def train(run_id: str, steps: int, step_s: float, mount: str) -> dict:
    from checkpointing import CheckpointManager

    ckpt = CheckpointManager(os.path.join(mount, run_id), keep=2, on_save=ckpt_volume.commit)
    found = ckpt.latest()
    state, start = ({"total": 0, "starts": []}, 0) if found is None else (found[0], found[1] + 1)
    state["starts"].append([start, fabric.current_input_attempt()])
    for step in range(start, steps):
        time.sleep(step_s)
        state["total"] += step
        ckpt.save(state, step)
    return state


@app.function(volumes={MOUNT: ckpt_volume})
def write_and_commit(path: str, text: str, mount: str) -> list:
    ckpt_volume.reload()
    full = os.path.join(mount, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        f.write(text)
    ckpt_volume.commit()
    return sorted(os.listdir(os.path.join(mount, os.path.dirname(path))))
