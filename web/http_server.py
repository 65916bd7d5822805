"""gevent's WSGI server as esl-bridge runs it, alone or in each worker: connection limits and
timeouts, and the app's error envelope on requests refused before the app sees them.

A connection lives through three phases, each with its own bound:

- waiting for a request (before the first one and between keep-alive requests): at most
  ``idle_timeout`` seconds, then it is closed;
- reading the request line and headers, from their first byte: ``header_timeout`` seconds in
  all (a request trickled a byte at a time gets ``408``), the TLS handshake included;
- the body and the response: ``body_timeout`` seconds without progress on any read or write
  (a body stalled half way gets ``408``; a client that stops reading is dropped).

At most ``max_connections`` connections per port are open in one process; past that it stops
accepting (the kernel's backlog holds newcomers) and, to make room, closes the connection that
has waited longest for its next keep-alive request. A server that stops closes the connections
waiting for a next keep-alive request at once, lets those with a request in progress finish, and
gives one it accepted but that has not sent its first request yet ``FIRST_REQUEST_GRACE`` seconds
to send it (its client sent it, or is about to: closing would drop that request unanswered).
"""
from __future__ import annotations

import json
import logging
import resource
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import Input, WSGIHandler, WSGIServer
from werkzeug.exceptions import RequestTimeout

log = logging.getLogger(__name__)

#: File descriptors a process needs besides client connections (database, FreeSWITCH, logs).
RESERVED_FILES = 256
#: Seconds a stopping server still waits for the first request of a connection it accepted.
FIRST_REQUEST_GRACE = 1.0


@dataclass(frozen=True)
class Limits:
    """Per-connection timeouts (seconds) and the cap on open connections (per port)."""

    idle_timeout: float = 15.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 1000

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(settings.idle_timeout, settings.header_timeout, settings.body_timeout,
                   settings.max_connections)


#: The requests refused before the app sees them, as the app words its errors.
_REFUSED = {"414": ("Request URI Too Long", "request URI too long"),
            "400": ("Bad Request", "malformed HTTP request"),
            "408": ("Request Timeout", "request timeout")}


def refused_response(code: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A whole HTTP response with the Kazoo error envelope (and a request id) for a request
    refused before the app read it (over-long request line, bad headers, too slow), with
    `headers` too (CORS)."""
    rid = uuid.uuid4().hex
    reason, message = _REFUSED[code]
    body = json.dumps({"auth_token": "undefined", "status": "error", "request_id": rid,
                       "error": code, "message": message, "data": {}},
                      separators=(",", ":")).encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return (f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nX-Request-ID: {rid}\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class TimedInput(Input):
    """The request body; a read that times out becomes a 408 and closes the connection."""

    __slots__ = ("handler", "timed_out")

    def _timed_out(self) -> RequestTimeout:
        self.timed_out = True
        self.handler.close_connection = True
        log.info("closing the connection from %s: the body stalled", self.handler.client_address)
        return RequestTimeout()

    def read(self, length: int | None = None) -> bytes:
        try:
            return super().read(length)
        except TimeoutError:
            raise self._timed_out() from None

    def readline(self, size: int | None = None) -> bytes:
        try:
            return super().readline(size)
        except TimeoutError:
            raise self._timed_out() from None

    def _discard(self) -> None:
        if not self.timed_out:  # else the rest will not come: do not wait for it again
            super()._discard()


class BridgeHandler(WSGIHandler):
    """gevent's handler with the phases' timeouts and the envelope on refused requests."""

    _header_timer: gevent.Timeout | None = None
    _waiting_since: float = 0.0
    #: Requests this connection has carried: a stopping server ends it once it has had one.
    served: int = 0
    wsgi_input: Any  # set by gevent's WSGIHandler, replaced by a TimedInput in get_environ

    def handle_one_request(self) -> Any:
        limits: Limits = self.server.limits
        if self.server.closed and self.served:
            return None  # stopping: a keep-alive connection ends between requests
        if self.served:
            # Let the other connections' requests run first. A request served from SQLite never
            # waits, so without this a client that sends its next request at once keeps the
            # worker to itself: under load from wrk the others waited up to a second (p99 60 ms
            # to 1 s; with it, 7 to 17 ms at the same requests per second).
            gevent.sleep(0)
        wait = FIRST_REQUEST_GRACE if self.server.closed else limits.idle_timeout
        if not self._wait_for_request(wait):
            return None
        self.served += 1
        self.socket.settimeout(None)  # the header deadline below bounds this phase as a whole
        timer = self._header_timer = gevent.Timeout(limits.header_timeout)
        timer.start()
        try:
            result = super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            log.info("closing the connection from %s: no complete request headers within %gs",
                     self.client_address, limits.header_timeout)
            return "408", self._refused("408")
        finally:
            timer.close()
        if isinstance(result, tuple) and result[0] in _REFUSED:
            return result[0], self._refused(result[0])
        return result

    def _refused(self, code: str) -> bytes:
        """The refusal, readable by a browser UI as any other error is (CORS), except on the
        FreeSWITCH endpoints, which never answer cross-origin."""
        cors = self.server.cors
        path = getattr(self, "path", None) or ""
        if cors is None or path.startswith("/freeswitch"):
            return refused_response(code)
        headers = getattr(self, "headers", None)
        return refused_response(code, cors(headers.get("Origin") if headers is not None else None))

    def _handle_client_error(self, ex: BaseException) -> Any:
        # A malformed request (over 100 headers, a bad header line) is the client's fault: one
        # warning line, not gevent's ERROR with a traceback.
        address = self.client_address
        log.warning("refused a malformed request from %s: %s",
                    address[0] if isinstance(address, tuple) else address, str(ex) or type(ex).__name__)
        return "400", b""  # handle_one_request puts the envelope in

    def _wait_for_request(self, seconds: float) -> bool:
        """Wait for the first byte of a request; False when the client left or took too long."""
        self.socket.settimeout(seconds)
        self._waiting_since = time.monotonic()
        self.server.waiting.add(self)
        try:
            return bool(self.rfile.peek(1))
        except (TimeoutError, OSError, ValueError):
            return False  # silent for too long, gone, or closed by a stopping server
        finally:
            self.server.waiting.discard(self)

    def get_environ(self) -> dict[str, Any]:
        # The headers are in: from here on, the body and the response have their own bound.
        if self._header_timer is not None:
            self._header_timer.close()
        self.socket.settimeout(self.server.limits.body_timeout)
        env = super().get_environ()
        if env["wsgi.input"] is self.wsgi_input:
            plain = self.wsgi_input
            timed = TimedInput(self.rfile, self.content_length, socket=plain.socket,
                               chunked_input=plain.chunked_input)
            timed.handler, timed.timed_out = self, False
            self.wsgi_input = env["wsgi.input"] = timed
        return env

    def start_response(self, status: Any, headers: Any, exc_info: Any = None) -> Callable[..., Any]:
        if self.server.closed:  # stopping: this is the connection's last response
            self.close_connection = True
        if self.close_connection and self.request_version == "HTTP/1.1":
            headers = [*headers, ("Connection", "close")]
        return super().start_response(status, headers, exc_info)

    def wake(self) -> None:
        """End the wait for a next request (the server is stopping, or needs the room)."""
        try:
            self.socket.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass  # already gone


class BridgeWSGIServer(WSGIServer):
    """gevent's WSGI server with ``Limits``, Nagle's algorithm off, and a clean stop."""

    handler_class = BridgeHandler

    def __init__(self, listener: Any, application: Any, *, limits: Limits,
                 spawn: Pool | None = None,
                 cors: Callable[[str | None], Iterable[tuple[str, str]]] | None = None,
                 **kwargs: Any) -> None:
        self.limits = limits
        #: The CORS headers for a request from an origin (`web.cors.CorsPolicy.headers`).
        self.cors = cors
        self.waiting: set[BridgeHandler] = set()
        super().__init__(listener, application, spawn=spawn or Pool(limits.max_connections), **kwargs)

    #: With several workers on one socket: after accepting a connection, seconds per connection
    #: this worker holds before it accepts again (at most ``_MAX_ACCEPT_PAUSE``). Every worker is
    #: woken for a new connection and the least busy takes it: without this, one worker accepts
    #: a burst of keep-alive clients whole and keeps them for their lifetime.
    accept_pause: float = 0.0
    _MAX_ACCEPT_PAUSE = 0.002
    _resume_timer: Any = None
    _grace_timer: Any = None  # a stopping server's end of FIRST_REQUEST_GRACE

    def do_read(self) -> Any:
        accepted = super().do_read()
        if accepted and self.accept_pause and self.pool is not None:
            pause = min(self._MAX_ACCEPT_PAUSE, self.accept_pause * (self.pool.size - self.pool.free_count()))
            if pause > 0:
                self.stop_accepting()
                self._resume_timer = self.loop.timer(pause)
                self._resume_timer.start(self._resume_accepting)
        return accepted

    def _resume_accepting(self) -> None:
        self._resume_timer = None
        if not self.closed:
            self.start_accepting()

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        # The TLS handshake is part of the request's headers phase: bounded like them.
        client_socket.settimeout(self.limits.header_timeout)
        return super().wrap_socket_and_handle(client_socket, address)

    def handle(self, sock: Any, address: Any) -> Any:
        try:
            # pywsgi writes a response's headers and body separately; on a keep-alive connection
            # Nagle holds the body back until the client's delayed ACK (about 40 ms per request).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a UNIX socket in tests): nothing to tune
        if self.pool is not None and self.pool.full() and self.waiting:
            # This connection took the last place: make room by closing the one that has waited
            # longest for its next request (it costs its client a reconnect, nothing more).
            min(self.waiting, key=lambda handler: handler._waiting_since).wake()
        return super().handle(sock, address)

    def close(self) -> None:
        """Stop accepting, and close every connection that is waiting for a next request; one
        waiting for its first gets ``FIRST_REQUEST_GRACE`` seconds to send it."""
        if self._resume_timer is not None:
            self._resume_timer.stop()
            self._resume_timer = None
        super().close()
        fresh = [handler for handler in self.waiting if not handler.served]
        for handler in list(self.waiting):
            if handler.served:
                handler.wake()
        if fresh:
            self._grace_timer = self.loop.timer(FIRST_REQUEST_GRACE)
            self._grace_timer.start(self._wake_still_waiting, fresh)

    def _wake_still_waiting(self, handlers: list[BridgeHandler]) -> None:
        self._grace_timer = None
        for handler in handlers:
            if handler in self.waiting:
                handler.wake()


def raise_open_files_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files to its hard limit; (before, after).

    systemd and most shells start services with a soft limit of 1024, which a few hundred idle
    clients use up. Children (the workers) inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or target <= soft:
        return soft, soft
    while target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("open files limit raised from %d to %d", soft, target)
            return soft, target
        except (ValueError, OSError):
            target //= 2  # an unlimited hard limit is still capped by the kernel (nr_open)
    return soft, soft


def check_open_files(limits: Limits, ports: int) -> None:
    """Warn when the open files limit cannot hold ``max_connections`` on every port."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = limits.max_connections * ports + RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning("the open files limit (%d) is below what %d connections on %d port(s) need "
                    "(%d): raise LimitNOFILE or lower ESL_BRIDGE_MAX_CONNECTIONS",
                    soft, limits.max_connections, ports, needed)
