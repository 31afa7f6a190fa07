"""A loopback TCP proxy that can be cut and restored: a network outage on demand, for fault tests.

The embedded broker keeps its topics in memory, so stopping it would lose them; instead the broker
advertises the proxy's port, every client connects through the proxy, and ``cut()`` makes the broker
unreachable (live connections are closed, new ones refused) until ``restore()``::

    proxy = TcpProxy(upstream_port=broker_port, port=advertised_port, listening=False)  # down at start
    proxy.restore()    # reachable
    proxy.cut()        # unreachable: connect() gets ECONNREFUSED
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading

from worker.services import free_port

__all__ = ["TcpProxy"]

log = logging.getLogger(__name__)
_CHUNK = 256 * 1024


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port`` while restored; refuses while cut."""

    def __init__(self, upstream_port: int, port: int | None = None, listening: bool = True) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._stop_accepting = threading.Event()
        self._connections: set[socket.socket] = set()
        if listening:
            self.restore()

    @property
    def address(self) -> str:
        """host:port that clients use."""
        return f"127.0.0.1:{self.port}"

    @property
    def listening(self) -> bool:
        """Whether the proxy currently accepts connections."""
        return self._listener is not None

    def restore(self) -> None:
        """Accept and forward connections again (no-op when already listening)."""
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            self._listener, self._stop_accepting = listener, threading.Event()
            threading.Thread(target=self._accept, args=(listener, self._stop_accepting), name="proxy-accept",
                             daemon=True).start()
        log.info("proxy 127.0.0.1:%d -> %d: restored", self.port, self.upstream_port)

    def cut(self) -> None:
        """Close every live connection and refuse new ones until ``restore()``."""
        with self._lock:
            listener, self._listener = self._listener, None
            self._stop_accepting.set()
            if listener is not None:
                listener.close()
            for sock in list(self._connections):
                _close(sock)
            self._connections.clear()
        log.info("proxy 127.0.0.1:%d -> %d: cut", self.port, self.upstream_port)

    close = cut

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not stop.is_set():
                if not selector.select(timeout=0.1):
                    continue
                try:
                    client, _ = listener.accept()
                except OSError:  # closed by cut()
                    return
                self._open(client, stop)

    def _open(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if stop.is_set():  # cut while connecting
                _close(client)
                _close(upstream)
                return
            self._connections |= {client, upstream}
        for source, target in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, target), name="proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK):
                target.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections -= {source, target}
            _close(source)
            _close(target)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
