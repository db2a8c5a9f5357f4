"""CRIU detection: whether this host can dump and restore processes (detected, never assumed)."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional

__all__ = ["CriuSupport", "detect_criu", "MIN_VERSION"]

# Older CRIU (Debian 12's 3.17) fails on kernels >= 6.13 ("Unexpected rt vDSO area bounds").
MIN_VERSION = (4, 1)


@dataclass(frozen=True)
class CriuSupport:
    """What `detect_criu` found; `usable` False comes with a `reason` saying what is missing."""

    usable: bool
    reason: str = ""
    path: str = ""
    version: tuple = ()


def detect_criu(criu: Optional[str] = None, *, timeout_s: float = 20.0) -> CriuSupport:
    """Find criu, check its version is >= 4.1 and that `criu check` passes on this kernel."""
    path = criu or shutil.which("criu") or ""
    if not path:
        return CriuSupport(False, "criu is not installed (build 4.1.x from source; see docs/volumes.md)")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuSupport(False, f"cannot run {path}: {exc}", path)
    match = re.search(r"Version:\s*(\d+)\.(\d+)", out.stdout)
    if not match:
        return CriuSupport(False, f"cannot read the version of {path}", path)
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_VERSION:
        return CriuSupport(False, f"criu {version[0]}.{version[1]} is too old (need >= 4.1 on this kernel)", path, version)
    try:
        check = subprocess.run([path, "check"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CriuSupport(False, f"criu check did not run: {exc}", path, version)
    if check.returncode != 0:
        tail = (check.stderr or check.stdout).strip().splitlines()[-1:] or ["criu check failed"]
        return CriuSupport(False, f"criu check failed: {tail[0]}", path, version)
    return CriuSupport(True, "", path, version)
