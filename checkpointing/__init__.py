"""Checkpoints for preemption-resume, the retry/resume policy, and warm-start snapshots."""
from ._checkpoints import CheckpointError, CheckpointManager, CorruptCheckpoint
from ._policy import LossKind, charge_attempt, classify_exit
from ._zygote import Zygote, ZygoteError
from ._criu import (CriuError, CriuSupport, detect_criu, dump_tree, host_fingerprint, incompatibility, restore_process,
                    restore_tree, snapshot_process)

__all__ = [
    "CheckpointError", "CheckpointManager", "CorruptCheckpoint", "CriuError", "CriuSupport", "LossKind", "Zygote",
    "ZygoteError", "charge_attempt", "classify_exit", "detect_criu", "dump_tree", "host_fingerprint", "incompatibility",
    "restore_process", "restore_tree", "snapshot_process",
]
