"""Sandboxed containers: namespaces (bubblewrap), the image as root with a writable overlay, cgroup limits."""
from __future__ import annotations

import functools
import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

logger = logging.getLogger(__name__)

__all__ = ["Facilities", "Sandbox", "detect", "runtime_binds"]

# Where the runtime's own code (core_executor, gpu_fabric.proto) appears inside a container;
# under /run, a fresh tmpfs, so its mount points exist even on a read-only image root.
RUNTIME_DIR = "/run/gpufabric/python"
# Where the container's agent-side directory (status file) appears inside it.
AGENT_DIR = "/run/gpufabric/agent"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Facilities:
    """What this host offers for isolation, found by trying, with reasons for what is missing."""

    bwrap: Optional[str]
    overlay: bool
    cgroup_version: int
    memory_parent: Optional[str]
    cpu_parent: Optional[str]
    missing: tuple[str, ...] = field(default_factory=tuple)


def _own_cgroup(controller: str) -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(",") or (controller == "" and controllers == ""):
                return path
    return "/"


def _probe_cgroup(parent: str, limit_file: str, value: str) -> bool:
    probe = os.path.join(parent, f"gpufabric-probe-{os.getpid()}")
    try:
        os.makedirs(probe, exist_ok=True)
        with open(os.path.join(probe, limit_file), "w") as f:
            f.write(value)
        return True
    except OSError:
        return False
    finally:
        try:
            os.rmdir(probe)
        except OSError:
            pass


def _cgroup_parents() -> tuple[int, Optional[str], Optional[str]]:
    # Hybrid hosts mount v1 controllers next to a v2 tree without them: use whichever works.
    v1_memory = next((p for p in ("/sys/fs/cgroup/memory",) if os.path.exists(f"{p}/cgroup.procs")), None)
    v1_cpu = next((p for p in ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")
                   if os.path.exists(f"{p}/cgroup.procs")), None)
    memory = cpu = None
    if v1_memory:
        parent = v1_memory + _own_cgroup("memory")
        memory = parent if _probe_cgroup(parent, "memory.limit_in_bytes", str(1 << 30)) else None
    if v1_cpu:
        parent = v1_cpu + _own_cgroup("cpu")
        cpu = parent if _probe_cgroup(parent, "cpu.shares", "1024") else None
    if memory or cpu:
        return 1, memory, cpu
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open(f"{root}/cgroup.controllers") as f:
                controllers = f.read().split()
        except OSError:
            continue
        parent = root + _own_cgroup("")
        memory = parent if "memory" in controllers and _probe_cgroup(parent, "memory.max", str(1 << 30)) else None
        cpu = parent if "cpu" in controllers and _probe_cgroup(parent, "cpu.weight", "100") else None
        if memory or cpu:
            return 2, memory, cpu
    return 0, None, None


@functools.lru_cache(maxsize=1)
def detect() -> Facilities:
    """Probes bubblewrap, overlayfs and cgroup controllers once per process."""
    missing = []
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        missing.append("bubblewrap is not installed (Debian package bubblewrap)")
    else:
        probe = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                                "--unshare-ipc", "--unshare-uts", "true"], capture_output=True, timeout=30)
        if probe.returncode != 0:
            missing.append(f"bubblewrap cannot create namespaces: {probe.stderr.decode(errors='replace').strip()}")
            bwrap = None
    overlay = os.geteuid() == 0 and shutil.which("unshare") is not None and _filesystem_known("overlay")
    if not overlay:
        missing.append("no writable overlay (needs root and overlayfs): image roots are read-only")
    version, memory, cpu = _cgroup_parents()
    if memory is None:
        missing.append("no usable memory cgroup controller: memory limits are not enforced")
    if cpu is None:
        missing.append("no usable cpu cgroup controller: cpu shares are not applied")
    for reason in missing:
        logger.info("sandbox: %s", reason)
    return Facilities(bwrap, overlay, version, memory, cpu, tuple(missing))


def _filesystem_known(name: str) -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == name for line in f if line.strip())
    except OSError:
        return False


def runtime_binds() -> list[tuple[str, str]]:
    """(host path, container path) of the runtime's code: the container imports the worker's own copy."""
    import core_executor
    import gpu_fabric.proto

    sdk = os.path.dirname(core_executor.__file__)
    proto = os.path.dirname(gpu_fabric.proto.__file__)
    fabric_init = os.path.join(os.path.dirname(proto), "__init__.py")
    return [(sdk, f"{RUNTIME_DIR}/core_executor"), (fabric_init, f"{RUNTIME_DIR}/gpu_fabric/__init__.py"),
            (proto, f"{RUNTIME_DIR}/gpu_fabric/proto")]


class Sandbox:
    """One container's isolation: argv and env that start it, and its cgroup to read and remove after."""

    # True: no network inside (block_network=True); set before argv().
    block_network = False

    def __init__(self, container_id: str, *, image_root: str, directory: str, memory_mb: int = 0,
                 cpu: float = 0.0, gpu_indices: Sequence[int] = (), workdir: str = "/root",
                 facilities: Optional[Facilities] = None) -> None:
        self.facilities = facilities or detect()
        if self.facilities.bwrap is None:
            raise RuntimeError("cannot sandbox: " + "; ".join(self.facilities.missing[:1]))
        self.container_id = container_id
        self.image_root = image_root
        self.directory = directory
        self.memory_mb = int(memory_mb)
        self.workdir = workdir or "/root"
        self.gpu_indices = list(gpu_indices)
        self.cgroups: list[str] = []
        name = f"gpufabric-{container_id}"
        facilities = self.facilities
        if memory_mb > 0 and facilities.memory_parent:
            path = os.path.join(facilities.memory_parent, name)
            os.makedirs(path, exist_ok=True)
            limit = str(int(memory_mb) << 20)
            if facilities.cgroup_version == 1:
                self._write(path, "memory.limit_in_bytes", limit)
                # Swap must not let the container grow past its limit.
                self._write(path, "memory.memsw.limit_in_bytes", limit, required=False)
            else:
                self._write(path, "memory.max", limit)
                self._write(path, "memory.swap.max", "0", required=False)
            self.cgroups.append(path)
        if cpu > 0 and facilities.cpu_parent:
            path = os.path.join(facilities.cpu_parent, name)
            if path not in self.cgroups:
                os.makedirs(path, exist_ok=True)
                self.cgroups.append(path)
            if facilities.cgroup_version == 1:
                self._write(path, "cpu.shares", str(max(2, int(1024 * cpu))))
            else:
                self._write(path, "cpu.weight", str(min(10000, max(1, int(100 * cpu)))))

    @staticmethod
    def _write(path: str, name: str, value: str, required: bool = True) -> None:
        try:
            with open(os.path.join(path, name), "w") as f:
                f.write(value)
        except OSError:
            if required:
                raise

    def argv(self, command: Sequence[str]) -> list[str]:
        """The process to start: joins the cgroups, mounts the overlay, then execs bubblewrap."""
        f = self.facilities
        upper, work, merged = (os.path.join(self.directory, n) for n in ("upper", "overlay-work", "root"))
        bwrap = [f.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                 "--unshare-cgroup-try"]
        if self.block_network:  # an empty network namespace; the fabric via a unix socket (_relay.py)
            bwrap.append("--unshare-net")
        if f.overlay:
            for path in (upper, work, merged):
                os.makedirs(path, exist_ok=True)
            bwrap += ["--bind", merged, "/"]
        else:
            # Read-only image; the places a program expects to write get their own tmpfs.
            bwrap += ["--ro-bind", self.image_root, "/", "--tmpfs", "/root", "--tmpfs", "/var/tmp"]
        bwrap += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run",
                  "--bind", self.directory, AGENT_DIR]
        for host, inside in runtime_binds():
            bwrap += ["--ro-bind", host, inside]
        for host, inside, read_only in getattr(self, "volume_binds", ()):  # volumes (worker/_volumes.py)
            bwrap += ["--ro-bind" if read_only else "--bind", host, inside]
        if os.path.exists("/etc/resolv.conf") and (f.overlay or os.path.exists(
                os.path.join(self.image_root, "etc/resolv.conf"))):
            bwrap += ["--ro-bind", os.path.realpath("/etc/resolv.conf"), "/etc/resolv.conf"]
        for device in self._gpu_devices():
            bwrap += ["--dev-bind", device, device]
        bwrap += ["--chdir", self.workdir, "--"] + list(command)
        script = []
        for path in self.cgroups:
            script.append(f"echo $$ > {shlex.quote(os.path.join(path, 'cgroup.procs'))}")
        if f.overlay:
            options = f"lowerdir={self.image_root},upperdir={upper},workdir={work}"
            script.append(f"mount -t overlay gpufabric-overlay -o {shlex.quote(options)} {shlex.quote(merged)}")
            script.append(f"mkdir -p {shlex.quote(os.path.join(merged, self.workdir.lstrip('/')))}")
        script.append("exec " + " ".join(shlex.quote(a) for a in bwrap))
        shell = ["sh", "-c", " && ".join(script)]
        if f.overlay:
            # A private mount namespace: the overlay disappears with the container, whatever happens.
            return ["unshare", "--mount", "--propagation", "private", "--"] + shell
        return shell

    def _gpu_devices(self) -> list[str]:
        devices = [f"/dev/nvidia{i}" for i in self.gpu_indices]
        if self.gpu_indices:
            devices += ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
        return [d for d in devices if os.path.exists(d)]

    def env(self, env: dict[str, str], image_env: Optional[dict[str, str]] = None) -> dict[str, str]:
        """The container's environment: the image's and function's variables and the fabric's, nothing of the host's."""
        out = {"PATH": _PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        out.update(image_env or {})
        keep = {k: v for k, v in env.items() if k.startswith("GPUFABRIC_") or k in (
            "CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED")}
        out.update(keep)
        out["PYTHONPATH"] = RUNTIME_DIR + (":" + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
        out["GPUFABRIC_STATUS_FILE"] = f"{AGENT_DIR}/{os.path.basename(env.get('GPUFABRIC_STATUS_FILE', 'status'))}"
        # Inside a PID namespace the runtime's parent is not the agent; bubblewrap's
        # --die-with-parent ties the container to the agent instead.
        out.pop("GPUFABRIC_AGENT_PID", None)
        return out

    def out_of_memory(self) -> bool:
        """True when the kernel killed something in this container for exceeding its memory limit."""
        for path in self.cgroups:
            for name in ("memory.oom_control", "memory.events"):
                try:
                    with open(os.path.join(path, name)) as f:
                        for line in f:
                            key, _, value = line.partition(" ")
                            if key == "oom_kill" and int(value or 0) > 0:
                                return True
                except OSError:
                    continue
        return False

    def exit_note(self) -> str:
        """A line for the exit report: the out-of-memory case named as such."""
        if self.out_of_memory():
            return (f"gpufabric: the container ran out of memory (limit {self.memory_mb} MiB) and was killed; "
                    "ask for more with memory=...\n")
        return ""

    def cleanup(self) -> None:
        """Removes the container's cgroups (once their processes are gone)."""
        for path in self.cgroups:
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        self.cgroups = []
