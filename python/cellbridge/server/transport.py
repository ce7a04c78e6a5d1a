"""The py4j side of the server: what a connection may send and call, and a shutdown that does not wait for
connected clients.

- Only the service interface is reachable: the entry point is an object with the eight interface methods and
  no state, so a caller cannot reach the service's internals (`_run`, `jobs`, `__setattr__` on state).
- A connection must authenticate within `AUTH_SECONDS`, with lines of at most `AUTH_LINE_BYTES`; after that,
  each line (one request) is at most `MAX_LINE_BYTES`. A connection that breaks a bound is closed.
- `stop()` closes every connection's socket first, so that py4j's shutdown does not block on a client that is
  still connected (py4j closes a reader another thread is blocked in).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from typing import Any

from py4j.clientserver import ClientServer, PythonServer

from cellbridge.server.requests import MAX_REQUEST_CHARS

log = logging.getLogger(__name__)

JAVA_INTERFACE = "qupath.ext.cellbridge.bridge.CellBridgeService"
INTERFACE_METHODS = ("ping", "version", "listModels", "signature", "putCountsRow", "submit", "status", "cancel",
                     "resultChunk", "shutdown")
AUTH_SECONDS = 10.0
AUTH_LINE_BYTES = 4096
AUTH_LINES = 3                                 # "A", the token, "e"
MAX_LINE_BYTES = 6 * MAX_REQUEST_CHARS + 1024  # a request as one escaped UTF-8 line (≤ 4 bytes per char, + escapes)
STOP_SECONDS = 5.0


def entry_point(service: Any) -> Any:
    """An object exposing exactly the interface methods of `service` (for `python_server_entry_point`)."""

    def forward(name: str):
        def method(self, *args: Any) -> Any:
            return getattr(service, name)(*args)
        method.__name__ = name
        return method

    class Java:
        implements = [JAVA_INTERFACE]

    namespace: dict[str, Any] = {name: forward(name) for name in INTERFACE_METHODS}
    namespace.update({"__slots__": (), "Java": Java, "__doc__": "The CellBridge service as py4j exposes it."})
    return type("CellBridgeEntryPoint", (), namespace)()


class BoundedLines:
    """A connection's input stream whose lines are bounded: `AUTH_LINES` small ones until the client has
    authenticated, which must happen within `AUTH_SECONDS` (else the socket is shut), then `MAX_LINE_BYTES`."""

    def __init__(self, stream: Any, sock: socket.socket, authenticated: bool) -> None:
        self._stream, self._socket = stream, sock
        self._lines = 0 if authenticated else AUTH_LINES
        self._watchdog: threading.Timer | None = None
        if not authenticated:
            self._watchdog = threading.Timer(AUTH_SECONDS, self._too_slow)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _too_slow(self) -> None:
        if self._lines > 0:
            log.info("closing a connection that did not authenticate within %.0f s", AUTH_SECONDS)
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def readline(self, size: int = -1) -> bytes:
        limit = AUTH_LINE_BYTES if self._lines > 0 else MAX_LINE_BYTES
        line = self._stream.readline(limit + 1)
        if len(line) > limit:
            raise ConnectionError(f"a line of more than {limit:,} bytes")
        if self._lines > 0:
            self._lines -= 1
            if self._lines == 0 and self._watchdog is not None:
                self._watchdog.cancel()  # authenticated (py4j closes the connection otherwise)
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class GuardedPythonServer(PythonServer):
    """py4j's Python server with bounded connections."""

    def _create_connection(self, sock: socket.socket, stream: Any) -> Any:
        authenticated = self.python_parameters.auth_token is None
        return super()._create_connection(sock, BoundedLines(stream, sock, authenticated))


class GuardedClientServer(ClientServer):
    """py4j's ClientServer with bounded connections and a shutdown that does not wait for clients."""

    def _create_callback_server(self, callback_server_parameters: Any) -> Any:
        return GuardedPythonServer(self._gateway_client, self.java_parameters, self.python_parameters,
                                   self.gateway_property)

    def stop(self) -> None:
        """Close every connection, then shut down (in the background, waiting at most `STOP_SECONDS`)."""
        server = self.get_callback_server()
        for connection in list(getattr(server, "connections", ())):
            with contextlib.suppress(OSError, AttributeError):
                connection.socket.shutdown(socket.SHUT_RDWR)
        done = threading.Thread(target=self._shutdown_quietly, name="cellbridge-stop", daemon=True)
        done.start()
        done.join(STOP_SECONDS)
        if done.is_alive():
            log.warning("py4j did not shut down within %.0f s; exiting anyway", STOP_SECONDS)

    def _shutdown_quietly(self) -> None:
        try:
            self.shutdown()
        except Exception:  # stopping anyway: a failing close must not keep the process alive
            log.debug("py4j shutdown failed", exc_info=True)
