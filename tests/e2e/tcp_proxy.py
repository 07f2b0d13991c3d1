"""A TCP proxy the tests start and stop, standing for a broker that goes away and comes
back, without touching the shared RabbitMQ. ``stop()`` closes the listener and every
connection through it at once, as a broker that died would; ``pause()`` stops passing on
what the clients send, as from a client that hangs (the broker still hears nothing wrong).

A proxy made with port 0 listens on a port the system picks, read back as ``port`` once
started (or reserved): a port chosen first and bound later may be taken in between by
another process. ``reserve()`` binds it without listening, for a broker that is not there
yet: connections are refused until ``start()``."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    def __init__(self, target: tuple[str, int], port: int = 0):
        self.target = target
        self.port = port
        self._thread: threading.Thread | None = None
        self._running = False
        self._paused = False
        self._held = threading.Event()  # set by the proxy's thread once nothing is read
        self._reserved: socket.socket | None = None

    def reserve(self) -> TcpProxy:
        reserved = socket.socket()
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as create_server
        reserved.bind(("127.0.0.1", self.port))
        self.port = reserved.getsockname()[1]
        self._reserved = reserved
        return self

    def start(self) -> TcpProxy:
        listener, self._reserved = self._reserved, None
        if listener is None:
            listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        else:
            listener.listen()
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._serve, args=(listener,), daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        """From now on, what the clients send stays with them (in their sockets' buffers):
        the broker sees their connections open and quiet, and still sends to them. Returns
        once the proxy's thread reads from no client any more."""
        self._paused = True
        assert self._held.wait(5), "the proxy did not pause"

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _serve(self, listener: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ, None)
        peers: dict[socket.socket, socket.socket] = {}
        clients: set[socket.socket] = set()
        try:
            while self._running:
                if self._paused:  # not read, so not forwarded (and no busy loop on them)
                    for client in clients:
                        if client in selector.get_map():
                            selector.unregister(client)
                    self._held.set()
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    if sock is listener:
                        client, _ = listener.accept()
                        upstream = socket.create_connection(self.target)
                        for a, b in ((client, upstream), (upstream, client)):
                            peers[a] = b
                            selector.register(a, selectors.EVENT_READ, None)
                        clients.add(client)
                        continue
                    try:
                        data = sock.recv(65536)
                    except OSError:
                        data = b""
                    other = peers.get(sock)
                    if data and other is not None:
                        with contextlib.suppress(OSError):
                            other.sendall(data)
                        continue
                    for s in (sock, other):  # one side closed: close both
                        if s is not None and s in peers:
                            if s in selector.get_map():  # a paused client is not
                                selector.unregister(s)
                            peers.pop(s)
                            clients.discard(s)
                            s.close()
        finally:
            for s in list(peers):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            listener.close()
            selector.close()
