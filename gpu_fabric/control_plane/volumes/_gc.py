"""Volume garbage collection: which versions are kept, and sweeping the blocks none of them use.

A run, per volume:

1. Kept versions: HEAD, the `keep_versions` versions before it, and every older version that was
   HEAD less than `retention_s` ago (a reader that fetched its manifest then may still be
   downloading its blocks). The manifests of other versions are deleted, and so are manifests above
   HEAD (a commit that crashed between its manifest and HEAD; the next commit rewrites that number).
2. Reachable blocks: those the kept manifests name. Every other block is garbage, except
   - blocks stored less than `grace_s` ago (an upload whose commit has not come yet),
   - blocks an upload or commit request named less than `grace_s` ago (claims, in memory; and
     leases, in storage, for present blocks HEAD did not reference, so a restart does not lose them),
   - blocks pinned by a commit in progress (checked to exist, manifest not yet written).
3. Garbage blocks are deleted in batches (`ObjectBackend.delete_batch` keys); each batch holds the volume's lock (no commit writes a
   manifest meanwhile) and its gate alone (no upload checks or stores a block meanwhile), and
   rechecks HEAD, claims and pins first. So a commit racing the sweep either finds a block gone
   before it checked (FAILED_PRECONDITION, nothing written; a retry uploads it again) or keeps it.

A volume with storage but no `meta` (a deletion cut short) has all its objects deleted.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ._store import _HASH, VolumeError

if TYPE_CHECKING:
    from ._store import VolumeStore

__all__ = ["GcPolicy", "GcResult", "collect"]

log = logging.getLogger("gpu_fabric.control_plane.volumes")


@dataclass(frozen=True)
class GcPolicy:
    """What garbage collection keeps. Defaults: HEAD and 3 versions before it, versions superseded
    within the last hour, and unreferenced blocks younger than 6 hours."""

    keep_versions: int = 3
    retention_s: float = 3600.0
    grace_s: float = 6 * 3600.0

    def __post_init__(self) -> None:
        for field in ("keep_versions", "retention_s", "grace_s"):
            if getattr(self, field) < 0:
                raise ValueError(f"volume GC {field} must be >= 0, got {getattr(self, field)!r}")


@dataclass
class GcResult:
    """What one volume's collection freed and kept (the fields of the VolumeGcResult message)."""

    name: str
    deleted: bool = False
    versions_kept: int = 0
    versions_freed: int = 0
    blocks_kept: int = 0
    bytes_kept: int = 0
    blocks_freed: int = 0
    bytes_freed: int = 0
    blocks_pending: int = 0
    bytes_pending: int = 0
    error: str = ""


def collect(store: "VolumeStore", policy: GcPolicy, *, name: Optional[str] = None, workspace: Optional[str] = None,
            dry_run: bool = False, stop: Optional[threading.Event] = None) -> list[GcResult]:
    """Collects volume `name` (NOT_FOUND if it has no storage at all), or every volume of
    `workspace` ("" the default one, None all), with what deleted volumes left. With `dry_run`,
    reports what would be freed and deletes nothing. `stop`, when set, ends the run between volumes
    and batches."""
    with store._gc_lock:
        if name is not None:
            store._check_name(name)
            names = [name]
        else:
            names = store.stored_names(workspace)
        results = []
        for volume in names:
            if stop is not None and stop.is_set():
                break
            result = _collect_one(store, policy, volume, dry_run, stop)
            if result is None:
                if name is not None:
                    raise VolumeError("NOT_FOUND", f"no volume named {name.rpartition('/')[2]!r}")
                continue
            results.append(result)
        if not dry_run:
            store.prune_claims(store._clock() - policy.grace_s)
        return results


def _collect_one(store: "VolumeStore", policy: GcPolicy, name: str, dry_run: bool,
                 stop: Optional[threading.Event]) -> Optional[GcResult]:
    prefix = store._key(name) + "/"
    objects = {info.key[len(prefix):]: info for info in store.backend.list_info(prefix)}
    if not objects:
        return None
    if "meta" not in objects and store._meta(name) is None:
        return _collect_deleted(store, name, dry_run)
    result = GcResult(name)
    now = store._clock()
    blocks = {rel[2:]: info for rel, info in objects.items() if rel.startswith("b/") and _HASH.match(rel[2:])}
    versions = {int(rel[2:-5]): rel for rel in objects if rel.startswith("v/") and rel.endswith(".json") and rel[2:-5].isdigit()}
    head = store.head(name)
    try:
        kept, reachable = _kept_versions(store, policy, name, head, now)
    except VolumeError as exc:
        if store._meta(name) is None:
            return None  # deleted while we looked
        result.error = str(exc)
        log.error("volume GC skipped %s: %s", name, exc)
        return result
    leased, expired_leases = _leases(store, policy, name, objects, now)
    young = {d for d, info in blocks.items() if now - info.mtime < policy.grace_s}
    protected = leased | young | store.protected(name, now - policy.grace_s)
    garbage = sorted(d for d in blocks if d not in reachable and d not in protected)
    old_versions = [v for v in versions if v < min(kept, default=head + 1)]
    debris = [v for v in versions if v > head]

    freed: set[str] = set()
    if dry_run:
        freed = set(garbage)
    else:
        freed = _sweep(store, policy, name, garbage, head, reachable, stop)
        if old_versions or debris:
            with store._lock(name):  # no commit is writing a manifest above HEAD meanwhile
                now_head = store.head(name)
                debris = [v for v in debris if v > now_head]
                store.backend.delete_many(store._key(name, versions[v]) for v in old_versions + debris)
        store.backend.delete_many(store._key(name, rel) for rel in expired_leases)
    result.versions_kept = len(kept)
    result.versions_freed = len(old_versions) + len(debris)
    for digest, info in blocks.items():
        if digest in freed:
            result.blocks_freed += 1
            result.bytes_freed += info.size
        elif digest in reachable:
            result.blocks_kept += 1
            result.bytes_kept += info.size
        else:
            result.blocks_pending += 1
            result.bytes_pending += info.size
    return result


def _kept_versions(store: "VolumeStore", policy: GcPolicy, name: str, head: int, now: float) -> tuple[list[int], set[str]]:
    """(kept versions, newest first; the blocks they reference). Walks down from HEAD: a version is
    kept while it is within `keep_versions` of HEAD or was superseded (its successor committed)
    less than `retention_s` ago; both only grow older going down, so the first version kept by
    neither ends the walk."""
    kept: list[int] = []
    reachable: set[str] = set()
    superseded_at = float("inf")  # HEAD is never superseded
    version = head
    while version >= 1:
        if version < head and head - version > policy.keep_versions and now - superseded_at >= policy.retention_s:
            break
        stored = store.read_manifest(name, version)
        if stored is None:
            if version == head:
                raise VolumeError("DATA_LOSS", f"volume {name!r}: manifest of HEAD version {version} is missing; nothing collected")
            break  # pruned by an older fabric, which kept only the last few
        kept.append(version)
        reachable.update(h for f in stored["files"].values() for h in f["blocks"])
        superseded_at = float(stored.get("committed_at", 0.0))  # unknown (older fabric): long ago
        version -= 1
    return kept, reachable


def _leases(store: "VolumeStore", policy: GcPolicy, name: str, objects: dict, now: float) -> tuple[set[str], list[str]]:
    """(blocks named by unexpired leases, keys of expired leases)."""
    leased: set[str] = set()
    expired: list[str] = []
    for rel in objects:
        if not rel.startswith("leases/"):
            continue
        stamp = rel[len("leases/"):].split("-", 1)[0]
        if stamp.isdigit() and now - int(stamp) / 1000 >= policy.grace_s:
            expired.append(rel)
            continue
        raw = store.backend.get(store._key(name, rel))
        leased.update(line for line in (raw or b"").decode().split() if _HASH.match(line))
    return leased, expired


# Between two batches of deletes, waiting uploads and commits get the volume (see _sweep).
BATCH_PAUSE_S = 0.01


def _sweep(store: "VolumeStore", policy: GcPolicy, name: str, garbage: list[str], head: int, reachable: set[str],
           stop: Optional[threading.Event]) -> set[str]:
    """Deletes `garbage` in batches, each rechecked alone at the volume's lock and gate; returns what went."""
    freed: set[str] = set()
    size = max(1, store.backend.delete_batch)
    for i in range(0, len(garbage), size):
        if stop is not None and stop.is_set():
            break
        with store._lock(name), store._gate(name).exclusive():
            if store._meta(name) is None:
                break  # deleted meanwhile: its storage went with it
            current = store.head(name)
            for version in range(head + 1, current + 1):  # committed since the listing
                stored = store.read_manifest(name, version) or {"files": {}}
                reachable.update(h for f in stored["files"].values() for h in f["blocks"])
            head = max(head, current)
            spared = store.protected(name, store._clock() - policy.grace_s)
            batch = [d for d in garbage[i:i + size] if d not in reachable and d not in spared]
            store.backend.delete_many(store._key(name, "b", d) for d in batch)
            freed.update(batch)
        if i + size < len(garbage):
            # Locks are not fair: without a pause the sweep would take them straight back, and
            # uploads and commits waiting on this volume would wait for the whole sweep.
            time.sleep(BATCH_PAUSE_S)
    return freed


def _collect_deleted(store: "VolumeStore", name: str, dry_run: bool) -> GcResult:
    """All objects of a volume whose `meta` is gone (its deletion was cut short)."""
    result = GcResult(name, deleted=True)
    with store._lock(name), store._gate(name).exclusive():
        if store._meta(name) is not None:  # created again meanwhile: a later run collects it
            return GcResult(name, error="created again during collection; run again")
        objects = list(store.backend.list_info(store._key(name) + "/"))
        for info in objects:
            if "/b/" in info.key:
                result.blocks_freed += 1
            elif "/v/" in info.key:
                result.versions_freed += 1
            result.bytes_freed += info.size
        if not dry_run:
            store.backend.delete_many(info.key for info in objects)
            store._forget(name)
    return result
