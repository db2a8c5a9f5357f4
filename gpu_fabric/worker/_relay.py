"""The fabric relay: a unix socket inside a network-less container, forwarded to the control plane.

A container of a `block_network=True` function has its own empty network namespace, so it
cannot open the TCP connection its runtime needs. The worker listens on a unix socket in the
container's directory (bound into the sandbox) and copies bytes both ways to the fabric's
address: the container reaches the control plane and nothing else.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Optional
from urllib.parse import urlparse

logger = logging.getLogger(__name__)

__all__ = ["FabricRelay", "SOCKET_NAME"]

SOCKET_NAME = "fabric.sock"
_BUFFER = 256 * 1024


def _address(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else "grpc://" + url)
    if parsed.scheme not in ("grpc", "grpcs") or not parsed.hostname or not parsed.port:
        raise ValueError(f"cannot relay to fabric URL {url!r}: expected grpc://HOST:PORT")
    return parsed.hostname, parsed.port


class FabricRelay:
    """Listens on `socket_path`; each connection there is piped to the fabric at `url`."""

    def __init__(self, socket_path: str, url: str) -> None:
        if url.strip().startswith("grpcs://"):
            # The bytes would pass, but the container would check the certificate against the
            # socket path rather than the fabric's name.
            raise ValueError("block_network=True needs a plain grpc:// fabric URL on the worker for now")
        self.socket_path = socket_path
        self._upstream = _address(url)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._bind(socket_path)
            os.chmod(socket_path, 0o666)  # the container's user may not be the worker's
            self._listener.listen(16)
        except OSError:
            self._listener.close()
            raise
        self._thread = threading.Thread(target=self._accept, name="gpufabric-relay", daemon=True)
        self._thread.start()

    def _bind(self, path: str) -> None:
        if os.path.exists(path):
            os.unlink(path)
        if len(os.fsencode(path)) < 100:
            self._listener.bind(path)
            return
        # A unix socket path is limited to ~108 bytes; reach a deep directory through /proc.
        directory = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._listener.bind(f"/proc/self/fd/{directory}/{os.path.basename(path)}")
        finally:
            os.close(directory)

    def url_inside(self, path_inside: Optional[str] = None) -> str:
        """The GPUFABRIC_URL a container uses: the socket as the container sees it."""
        return "unix://" + (path_inside or self.socket_path)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._upstream, timeout=10)
                upstream.settimeout(None)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError as exc:
                logger.warning("relay: cannot reach the fabric at %s:%d: %s", *self._upstream, exc)
                client.close()
                continue
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    upstream.close()
                    return
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), name="gpufabric-relay-pipe",
                                 daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_BUFFER)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        try:
            sink.shutdown(socket.SHUT_WR)  # pass the end of stream on; the other direction may go on
        except OSError:
            pass
        with self._lock:
            # The second direction to finish closes both sockets.
            if source in self._open and sink not in self._open:
                self._open.discard(source)
                source.close()
                sink.close()
            elif source in self._open:
                self._open.discard(source)

    def close(self) -> None:
        """Stops listening and cuts every relayed connection."""
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass


def without_network(directory: str, url: str, argv: list[str], env: dict[str, str], *,
                    sandboxed: bool) -> tuple[FabricRelay, list[str], dict[str, str]]:
    """A container's relay, argv and env for block_network=True.

    `sandboxed`: argv is a Sandbox's (it unshares the network itself, and sees `directory` at
    AGENT_DIR); otherwise argv runs the worker's own Python, which bubblewrap puts in an
    empty network namespace (loopback only) with the host's filesystem.
    """
    from ._sandbox import AGENT_DIR, detect

    relay = FabricRelay(os.path.join(directory, SOCKET_NAME), url)
    env = dict(env)
    if sandboxed:
        env["GPUFABRIC_URL"] = relay.url_inside(f"{AGENT_DIR}/{SOCKET_NAME}")
        return relay, argv, env
    bwrap = detect().bwrap
    if bwrap is None:
        relay.close()
        raise RuntimeError("block_network=True needs bubblewrap (Debian package bubblewrap) on the worker")
    env["GPUFABRIC_URL"] = relay.url_inside()
    # The runtime's parent is bubblewrap now, not the agent: --die-with-parent ties them instead.
    env.pop("GPUFABRIC_AGENT_PID", None)
    return relay, [bwrap, "--dev-bind", "/", "/", "--unshare-net", "--die-with-parent", "--", *argv], env
