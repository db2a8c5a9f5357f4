"""CheckpointManager: atomic saves, keep-K, corrupt checkpoints skipped; the loss policy."""
import os
import signal

import pytest

from checkpointing import CheckpointError, CheckpointManager, CorruptCheckpoint, LossKind, charge_attempt, classify_exit


def test_save_latest_and_keep(tmp_path):
    saved = []
    ckpt = CheckpointManager(str(tmp_path / "c"), keep=2, on_save=lambda: saved.append(1))
    assert ckpt.latest() is None
    for step in range(5):
        ckpt.save({"w": step * 10}, step)
    assert ckpt.steps() == [3, 4]
    assert ckpt.latest() == ({"w": 40}, 4)
    assert len(saved) == 5


def test_corrupt_or_partial_checkpoint_is_skipped(tmp_path):
    ckpt = CheckpointManager(str(tmp_path), keep=5)
    ckpt.save("good", 1)
    path = ckpt.save("newer", 2)
    with open(path, "r+b") as f:  # a torn write: the file is cut short
        f.truncate(os.path.getsize(path) - 3)
    with pytest.raises(CorruptCheckpoint):
        ckpt.load(2)
    assert ckpt.latest() == ("good", 1)
    with open(ckpt._path(3), "wb") as f:
        f.write(b"garbage")
    assert ckpt.latest() == ("good", 1)


def test_crash_mid_save_leaves_previous(tmp_path):
    class Boom:
        def __reduce__(self):
            raise RuntimeError("crash while serializing")

    ckpt = CheckpointManager(str(tmp_path))
    ckpt.save([1], 1)
    with pytest.raises(RuntimeError):
        ckpt.save(Boom(), 2)
    assert ckpt.latest() == ([1], 1)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".tmp")] == []


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        CheckpointManager(str(tmp_path), keep=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError):
        CheckpointManager(str(tmp_path / "file" / "sub"))
    with pytest.raises(CheckpointError):
        CheckpointManager(str(tmp_path)).load(7)


def test_loss_policy():
    assert classify_exit(1) is LossKind.USER_ERROR and charge_attempt(LossKind.USER_ERROR)
    assert classify_exit(-signal.SIGKILL) is LossKind.KILLED and charge_attempt(LossKind.KILLED)
    assert not charge_attempt(LossKind.KILLED, free_kills=True)
    assert classify_exit(-signal.SIGKILL, oom=True) is LossKind.USER_ERROR
    assert classify_exit(1, preempting=True) is LossKind.PREEMPTED and not charge_attempt(LossKind.PREEMPTED)
    assert not charge_attempt(LossKind.WORKER_LOST)
