"""The worker's preemption watcher: polls the notice source, drains containers, gives them a grace."""
from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Callable, Optional, Protocol

import grpc

from gpu_fabric.proto import volumes_pb2, volumes_pb2_grpc, worker_pb2

if TYPE_CHECKING:
    from gpu_fabric.providers import PreemptionSource

    from ._agent import WorkerAgent

logger = logging.getLogger(__name__)

__all__ = ["ControlPlaneNotices", "HttpNotices", "Notice", "PreemptionWatcher", "NOTICE_FILE"]

# Written into a container's directory on notice; the runtime watches for it (a signal would
# also hit the sandbox's bwrap/sh processes, which die of SIGUSR1).
NOTICE_FILE = "preempt"
# What is left of the deadline when containers are stopped: time for @exit and the exit reports.
STOP_MARGIN_S = 3.0
STOP_GRACE_S = 2.0
# Env var naming the cloud whose metadata notices this worker watches (aws, gcp, oci).
PROVIDER_ENV = "GPUFABRIC_PROVIDER"


class Notice:
    """A preemption notice: the machine goes away `deadline_s` after it was heard."""

    def __init__(self, deadline_s: float, reason: str) -> None:
        self.deadline_s, self.reason = deadline_s, reason


class NoticeSource(Protocol):
    poll_s: float

    def poll(self) -> Optional[Notice]: ...


class ControlPlaneNotices:
    """Simulated notices (`gpufabric worker preempt ID`) queued at the control plane."""

    poll_s = 0.5

    def __init__(self, channel: grpc.Channel, metadata, worker_id: Callable[[], str]) -> None:
        self._stub = volumes_pb2_grpc.FabricVolumesStub(channel)
        self._metadata, self._worker_id = metadata, worker_id

    def poll(self) -> Optional[Notice]:
        worker_id = self._worker_id()
        if not worker_id:
            return None
        try:
            resp = self._stub.WorkerPreemptionPoll(volumes_pb2.WorkerPreemptionPollRequest(worker_id=worker_id),
                                                   metadata=self._metadata, timeout=5.0)
        except grpc.RpcError:
            return None  # the heartbeat loop reports a missing control plane
        return Notice(resp.deadline_s, resp.reason) if resp.preempt else None


class HttpNotices:
    """A cloud's instance-metadata notice (the provider's PreemptionSource): AWS, GCP."""

    def __init__(self, source: "PreemptionSource", opener: Callable = urllib.request.urlopen) -> None:
        self.source, self.poll_s, self._open = source, source.poll_s, opener

    def poll(self) -> Optional[Notice]:
        if not self.source.url:
            return None
        request = urllib.request.Request(self.source.url, headers=dict(self.source.headers))
        try:
            with self._open(request, timeout=2.0) as resp:
                status, body = resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, ""
        except (OSError, ValueError):
            return None
        if self.source.is_notice(status, body):
            return Notice(self.source.lead_time_s, f"{self.source.cloud} preemption notice")
        return None


def default_sources(agent: "WorkerAgent") -> list:
    """The control plane's simulated notices, plus the cloud's metadata notices where configured."""
    sources: list = [ControlPlaneNotices(agent._channel, agent._metadata, lambda: agent.worker_id)]
    cloud = os.environ.get(PROVIDER_ENV, "")
    if cloud and cloud != "local":
        try:
            from gpu_fabric.providers import make_provider

            source = make_provider(cloud).preemption_source()
            if source is not None and source.url:
                sources.append(HttpNotices(source))
        except Exception:  # noqa: BLE001 - a provider we cannot build cannot warn us either
            logger.warning("no preemption notices from provider %s", cloud, exc_info=True)
    return sources


class PreemptionWatcher:
    """Polls notice sources; on a notice: tell the control plane, warn the containers (their
    `on_preemption` hooks), wait out the grace, then stop them (SIGTERM runs @exit)."""

    def __init__(self, agent: "WorkerAgent", sources: Optional[list] = None, *, sleep=time.sleep) -> None:
        self.agent = agent
        self.sources = sources if sources is not None else default_sources(agent)
        self._sleep = sleep
        self.noticed: Optional[Notice] = None
        self._thread = threading.Thread(target=self._run, name="gpufabric-preemption", daemon=True)

    def start(self) -> "PreemptionWatcher":
        self._thread.start()
        return self

    def _run(self) -> None:
        stop = self.agent._stop
        interval = min((s.poll_s for s in self.sources), default=1.0)
        while not stop.wait(interval) and self.noticed is None:
            for source in self.sources:
                try:
                    notice = source.poll()
                except Exception:  # noqa: BLE001 - a flaky source must not end the watch
                    logger.debug("preemption source failed", exc_info=True)
                    continue
                if notice is not None:
                    self.handle(notice)
                    return

    def handle(self, notice: Notice) -> None:
        """Drain this worker: the control plane re-queues what it runs, for free, elsewhere."""
        self.noticed = notice
        agent = self.agent
        logger.warning("preemption notice: %s; %.0fs to go", notice.reason, notice.deadline_s)
        heard = time.monotonic()
        try:
            agent._stub.WorkerPreemptionNotice(worker_pb2.WorkerPreemptionNoticeRequest(
                worker_id=agent.worker_id, deadline_s=notice.deadline_s, reason=notice.reason),
                metadata=agent._metadata, timeout=5.0)
        except grpc.RpcError as exc:
            logger.warning("could not tell the control plane of the preemption: %s", exc.code())
        manager = agent.containers
        with manager._lock:
            directories = [c.directory for c in manager._containers.values()]
        for directory in directories:
            try:
                with open(os.path.join(directory, NOTICE_FILE), "w") as f:
                    f.write(f"{notice.deadline_s}\n{notice.reason}\n")
            except OSError:
                pass  # the container is exiting
        # Inputs get the grace; the machine itself may vanish at the deadline.
        grace_end = heard + max(0.0, notice.deadline_s - STOP_MARGIN_S)
        while time.monotonic() < grace_end and not agent._stop.is_set():
            if not any(s.active_inputs for s in manager.statuses()):
                break
            self._sleep(0.2)
        for container_id in manager.running_ids():
            manager.stop(container_id, STOP_GRACE_S)
