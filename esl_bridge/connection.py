"""One event-socket connection: greenswitch's ``InboundESL``, made safe (``EslConnection``).

This module and its two subclasses are the one place where greenswitch is subclassed.
greenswitch 0.0.19 is the wire client the project standardised on, but as shipped it cannot be
used under load (``docs/esl.md`` lists each flaw and the override that removes it). What is kept
from greenswitch: its constructor state (host, port, password, connect timeout, ``connected``,
the auth-request event) and its handler registry (``register_handle``/``unregister_handle``
with the same ``CUSTOM``-by-subclass and ``'*'`` rules).

``EslConnection`` holds what both kinds of connection share: connecting and authenticating
within one connect timeout, writing whole frames, closing for good. How replies are read is
each kind's own:

- ``EventConnection`` (``esl_bridge.event_connection``): greenswitch's reader greenlet,
  events dispatched to handlers, one command at a time. The pool's event connection.
- ``CommandConnection`` (``esl_bridge.command_connection``): never subscribes; several commands
  in flight, their replies matched first in, first out. The pool's command connections.

Rules every connection guarantees:

- TCP connect, the wait for ``auth/request`` and the ``auth`` reply share one connect timeout.
- Every command is written whole (greenswitch's bare ``send`` may write part of a frame) and
  bounded by a timeout.
- A connection that times out, fails to write, sees a disconnect notice, EOF or a frame it cannot
  parse is closed at once and for good; every caller waiting on it gets the exception at once
  and later callers get ``NotConnected``. It is never reused: the pool makes a new one.
- Frames are parsed header by header (``esl_bridge.frames``); malformed lines and non-UTF-8 bytes
  are logged and skipped, never fatal.
"""
from __future__ import annotations

import ipaddress
import logging
import socket as _stdlib_socket
import time
from collections.abc import Callable
from typing import Any

import gevent
import gevent.event
from gevent import socket
from greenswitch.esl import InboundESL

from .errors import (
    AuthFailed,
    CommandTimeout,
    ConnectTimeout,
    EslError,
    NotConnected,
)
from .frames import Frame

log = logging.getLogger(__name__)


class EslConnection(InboundESL):
    """An authenticated inbound event-socket connection with timeouts (the shared base).

    ``execute(text)`` sends one frame and returns the reply ``Frame``; the subclasses say how.
    ``closed`` is a ``gevent.event.Event`` set when the connection is gone for good, with the
    reason in ``close_reason``.
    """

    def __init__(
        self,
        host: str,
        port: int,
        password: str,
        *,
        node: str | None = None,
        connect_timeout: float = 5.0,
        command_timeout: float = 5.0,
        on_malformed: Callable[[str], None] | None = None,
    ) -> None:
        # greenswitch's constructor sets host, port, password, timeout (the connect timeout),
        # connected, the auth-request event and the handler registry, all of which we use.
        super().__init__(host, port, password, timeout=connect_timeout)
        self.node = node or f"{host}:{port}"
        self.command_timeout = command_timeout
        self.closed = gevent.event.Event()
        self.close_reason: EslError | None = None
        self.sock: Any = None  # a gevent socket once connected
        self.sock_file: Any = None  # the event connection's buffered reader of it
        self._receive_events_greenlet: gevent.Greenlet | None = None
        self._on_malformed = on_malformed
        self._hub = gevent.get_hub()
        self._loop = self._hub.loop
        self._is_closed = False
        self._exiting = False

    # ------------------------------------------------------------------ connecting

    def connect(self) -> None:
        """Connect and authenticate, all within the connect timeout.

        Override: greenswitch bounds only the TCP connect; its wait for ``auth/request`` and the
        auth reply are unbounded, a refused connection leaks the raw socket error, and a wrong
        password raises ``ValueError``. Here every failure is an ``EslError``: ``NotConnected``,
        ``ConnectTimeout`` or ``AuthFailed``, and the half-open connection is closed.
        """
        deadline = time.monotonic() + self.timeout
        try:
            sock = self._open_socket()
        except TimeoutError as exc:
            raise ConnectTimeout(f"TCP connect timed out after {self.timeout:g} s", self.node) from exc
        except OSError as exc:
            raise NotConnected(f"cannot connect: {exc.strerror or exc}", self.node) from exc
        if self._is_closed:  # closed (the pool stopping) while the TCP connect ran
            sock.close()
            raise self.close_reason or NotConnected("closed while connecting", self.node)
        try:
            # Small request/response frames: do not let Nagle hold a command back.
            sock.setsockopt(_stdlib_socket.IPPROTO_TCP, _stdlib_socket.TCP_NODELAY, 1)
        except OSError:
            pass
        sock.settimeout(None)
        self.sock = sock
        self._attach(sock)
        self.connected = True
        self.start_event_handlers()
        try:
            self._await_auth_request(deadline)
            if self._is_closed:
                raise self.close_reason or NotConnected("closed before authenticating", self.node)
            self.authenticate(max(deadline - time.monotonic(), 0.001))
        except CommandTimeout as exc:
            err = ConnectTimeout(f"no reply to auth within {self.timeout:g} s", self.node)
            self.close(err)
            raise err from exc
        except BaseException as exc:
            self.close(exc if isinstance(exc, EslError) else
                       NotConnected(f"connect failed: {exc}", self.node))
            raise

    def _open_socket(self) -> socket.socket:
        """The TCP connection, within the connect timeout.

        An IP address is connected to directly: ``create_connection`` would resolve it through
        gevent's thread-pool resolver first, a thread hop and loop turns that delay every
        reconnect when the loop is busy.
        """
        try:
            family = ipaddress.ip_address(self.host).version
        except ValueError:
            return socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock = socket.socket(socket.AF_INET6 if family == 6 else socket.AF_INET,
                             socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        return sock

    def _attach(self, sock: socket.socket) -> None:
        """Set up reading from the freshly connected socket (the subclass's way)."""
        raise NotImplementedError

    def start_event_handlers(self) -> None:
        """Start reading, the subclass's way (greenswitch's hook, called by ``connect``)."""
        raise NotImplementedError

    def _await_auth_request(self, deadline: float) -> None:
        """Wait until ``auth/request`` arrived; ``ConnectTimeout`` past ``deadline``."""
        raise NotImplementedError

    def authenticate(self, timeout: float | None = None) -> None:
        """Send ``auth <password>``; raise ``AuthFailed`` unless FreeSWITCH accepts it.

        Override: greenswitch raises ``ValueError`` and has no timeout.
        """
        frame = self.execute(f"auth {self.password}", timeout)
        if frame.reply_text != "+OK accepted":
            err = AuthFailed(f"authentication refused: {frame.reply_text or 'no reply text'}",
                             self.node)
            self.close(err)
            raise err

    # ------------------------------------------------------------------ commands

    @property
    def alive(self) -> bool:
        """True until the connection is closed; a dead connection never comes back."""
        return not self._is_closed and self.connected

    def execute(self, text: str, timeout: float | None = None) -> Frame:
        """Send one command frame and return its reply (``command/reply`` or ``api/response``).

        ``text`` is the frame without its terminating blank line (header lines after the first
        line are allowed, as ``bgapi``/``sendevent`` use). ``CommandTimeout`` when no reply came
        within ``timeout`` (``command_timeout`` when None); the connection is then closed.
        """
        raise NotImplementedError

    def send(self, data: str) -> Frame:
        """greenswitch's entry point, routed through ``execute`` (whole writes, timeout).

        Override: greenswitch's ``send`` queues a waiter without a lock, writes with ``send`` and
        waits forever.
        """
        return self.execute(data)

    def api(self, command: str, timeout: float | None = None) -> str:
        """``api <command>`` on this connection; returns the response body as text."""
        frame = self.execute(f"api {command}", timeout)
        text = frame.text()
        self._report(frame.notes)
        return text

    def _report(self, notes: list[str]) -> None:
        for note in notes:
            log.warning("ESL %s: %s", self.node, note)
            if self._on_malformed is not None:
                self._on_malformed(note)
        notes.clear()

    def _disconnected(self, frame: Frame) -> str:
        """Why FreeSWITCH sent a ``text/disconnect-notice`` frame, in words (logged)."""
        reason = frame.text().strip().replace("\n", " ") or "disconnect notice"
        # Not news on its own: after our own "exit" it is the expected goodbye, and a node that
        # goes away is logged once by the pool (esl_bridge.slots), with this reason.
        log.debug("ESL %s: FreeSWITCH disconnected us: %s", self.node, reason)
        return f"FreeSWITCH disconnected: {reason}"

    def _rejected(self, frame: Frame) -> AuthFailed:
        """The reason to close with for a ``text/rude-rejection`` frame (the ACL refused us)."""
        return AuthFailed(f"rejected by the event socket ACL: {frame.text().strip()}", self.node)

    # ------------------------------------------------------------------ closing

    def close(self, reason: EslError | None = None) -> None:
        """Close for good and release every waiter with ``reason`` at once (idempotent)."""
        if self._is_closed:
            return
        self._is_closed = True
        self.connected = False
        self._run = False
        self.close_reason = reason or NotConnected("connection closed", self.node)
        self._release_waiters(self.close_reason)
        # connect() may be waiting for auth/request.
        self._auth_request_event.set()
        sock = self.sock
        if sock is not None:
            # shutdown wakes a reader with EOF; it closes its buffered file itself (closing it
            # from here while the reader is inside it would be a re-entrant buffered-IO call).
            try:
                sock.shutdown(_stdlib_socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        if self._receive_events_greenlet is None and self.sock_file is not None:
            try:
                self.sock_file.close()
            except Exception:
                log.debug("ESL %s: error closing the socket file", self.node, exc_info=True)
        self.closed.set()

    def _release_waiters(self, reason: EslError) -> None:
        """Fail every caller waiting for a reply (the subclass knows them); runs in ``close``."""

    def _say_exit(self, timeout: float) -> None:
        """Say ``exit`` (bounded), expecting FreeSWITCH's goodbye notice."""
        self._exiting = True
        try:
            self.execute("exit", timeout)
        except EslError:
            pass

    def stop(self, timeout: float = 1.0) -> None:
        """Say ``exit`` if still alive (bounded), then close.

        Override: greenswitch's ``stop`` sends ``exit`` without a timeout and joins a dispatcher
        that polls once a second.
        """
        if self.alive:
            self._say_exit(timeout)
        self.close(NotConnected("connection stopped", self.node))

    def __repr__(self) -> str:
        state = "alive" if self.alive else "closed"
        return f"<{type(self).__name__} {self.node} {state}>"


__all__ = ["EslConnection"]
