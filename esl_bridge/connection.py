"""One event-socket connection: greenswitch's ``InboundESL``, made safe to share.

This module is the one place where greenswitch is subclassed. greenswitch 0.0.19 is the wire
client the project standardised on, but as shipped it cannot be used under load (see
``freeswitch/README.md``): the auth exchange and every command wait forever, replies are matched
first-in-first-out without a lock, writes use ``send`` (a partial write shifts every later reply),
a disconnect leaves waiting callers blocked forever, the whole frame is URL-decoded before it is
split (so ``%0A`` forges headers and an event body is glued onto the last header), and a non-UTF-8
byte or a reply nobody waits for kills its reader while ``connected`` stays true. Each override
below names the flaw it removes. What is kept from greenswitch: its constructor state (host, port,
password, connect timeout, ``connected``, the auth-request event) and its handler registry
(``register_handle``/``unregister_handle`` with the same ``CUSTOM``-by-subclass and ``'*'`` rules).

Rules this class guarantees:

- TCP connect, the wait for ``auth/request`` and the ``auth`` reply share one connect timeout.
- One command in flight per connection (a lock), written whole (a first ``send``, then
  ``sendall`` for any remainder), bounded by a timeout.
- A connection that times out, fails to write, sees a disconnect notice, EOF or a frame it cannot
  parse is closed at once and for good; the caller in flight gets the exception immediately and
  later callers get ``NotConnected``. It is never reused: the pool makes a new one.
- Frames are parsed header by header (``esl_bridge.frames``); malformed lines and non-UTF-8 bytes
  are logged and skipped, never fatal to the reader.

The pool uses this class for the event connection. Its command connections, which never
subscribe, use the variant in ``esl_bridge.command_connection`` (``CommandConnection``): the same
rules without greenswitch's reader greenlet, the caller reading its own reply.
"""
from __future__ import annotations

import logging
import socket as _stdlib_socket
import time
from collections.abc import Callable

import gevent
import gevent.event
import gevent.lock
from gevent import socket
from greenswitch.esl import InboundESL

from .errors import (
    AuthFailed,
    CommandTimeout,
    ConnectionLost,
    ConnectTimeout,
    EslError,
    NotConnected,
    ProtocolError,
    ReplyTimeout,
)
from .frames import Event, Frame, check_frame_text, parse_event, read_frame

log = logging.getLogger(__name__)


class EslConnection(InboundESL):
    """An authenticated inbound event-socket connection with timeouts and a lock.

    ``execute(text)`` sends one frame and returns the reply ``Frame``. Events (on a connection
    that subscribed with ``event plain ...``) go to handlers registered with
    ``register_handle(name, fn)``; ``fn(event)`` runs in the reader greenlet and must not block.
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
        self.sock = None
        self.sock_file = None
        self._on_malformed = on_malformed
        self._loop = gevent.get_hub().loop
        self._lock = gevent.lock.Semaphore(1)
        self._pending: gevent.event.AsyncResult | None = None
        self._is_closed = False
        self._exiting = False
        # Bookkeeping of the pool that lends this connection out (not used here).
        self.in_use = False
        self.retiring = False
        self.last_used = 0.0

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
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
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

    def _attach(self, sock: socket.socket) -> None:
        """Set up reading from the freshly connected socket (here: the reader's buffered file)."""
        self.sock_file = sock.makefile("rb")

    def _await_auth_request(self, deadline: float) -> None:
        """Wait until the reader saw ``auth/request``; ``ConnectTimeout`` past ``deadline``."""
        if not self._auth_request_event.wait(max(deadline - time.monotonic(), 0)):
            raise ConnectTimeout(
                f"no auth/request within {self.timeout:g} s of connecting", self.node)

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
        line are allowed, as ``bgapi``/``sendevent`` use). On timeout the connection is closed,
        since a late reply would otherwise be taken for the next command's, and
        ``CommandTimeout`` is raised. Waiting for the lock counts towards the timeout.
        """
        timeout = self._take_turn(text, timeout)
        try:
            waiter = gevent.event.AsyncResult()
            self._pending = waiter
            # A bare loop timer rather than gevent.Timeout: a few microseconds less per command,
            # and when it fires it closes the connection, which also frees a blocked sendall.
            timer = self._loop.timer(timeout)
            timer.start(self._deadline_passed, waiter, text, timeout)
            try:
                self._write_all((text + "\n\n").encode("utf-8"))
                return waiter.get()
            except OSError as exc:
                reason = self.close_reason
                if not isinstance(reason, CommandTimeout):
                    reason = ConnectionLost(f"write failed: {exc}", self.node)
                    self.close(reason)
                raise reason from exc
            except BaseException:
                if not waiter.ready():
                    # Interrupted from outside (killed, an outer gevent.Timeout) in flight: its
                    # reply may still come and would be taken for the next command's.
                    self.close(ConnectionLost("a command was interrupted in flight", self.node))
                raise
            finally:
                timer.close()
                self._pending = None
        finally:
            self._lock.release()

    def _take_turn(self, text: str, timeout: float | None) -> float:
        """Check ``text``, then take the connection's lock; returns the time left to reply.

        Waiting for the lock counts towards ``timeout`` (``command_timeout`` when None). The
        caller must release ``self._lock`` once its command is done.
        """
        check_frame_text(text)
        if timeout is None:
            timeout = self.command_timeout
        if self._is_closed:
            raise NotConnected("connection is closed", self.node)
        lock = self._lock
        if not lock.acquire(blocking=False):
            started = time.monotonic()
            if not lock.acquire(timeout=timeout):
                # Busy, not broken: the command in flight has its own timeout.
                raise CommandTimeout(f"connection busy for {timeout:g} s", self.node)
            timeout = max(timeout - (time.monotonic() - started), 0.0001)
        if self._is_closed:
            lock.release()
            raise NotConnected("connection is closed", self.node)
        return timeout

    def _write_all(self, data: bytes) -> None:
        """Write every byte (greenswitch's bare ``send`` may write part of a frame).

        One ``send`` nearly always takes a whole command; gevent's ``sendall`` costs several
        microseconds more per call, so it only writes what a first ``send`` left over.
        """
        sent = self.sock.send(data)
        if sent < len(data):
            self.sock.sendall(memoryview(data)[sent:])

    def _deadline_passed(self, waiter: gevent.event.AsyncResult, text: str, timeout: float
                         ) -> None:
        # Runs in the hub: must not block. Closing releases the waiter with the timeout.
        if waiter.ready() or self._pending is not waiter:
            return
        verb = text.split(" ", 1)[0].split("\n", 1)[0]
        self.close(ReplyTimeout(f"no reply to {verb!r} within {timeout:g} s", self.node))

    def send(self, data: str) -> Frame:
        """greenswitch's entry point, routed through ``execute`` (lock, sendall, timeout).

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

    # ------------------------------------------------------------------ reading

    def start_event_handlers(self) -> None:
        """Start only the reader.

        Override: greenswitch also starts a dispatcher greenlet that polls a queue once a second;
        handlers here run in the reader (they are short and must not block), which saves a
        greenlet per connection and lets ``close`` finish without waiting for the poll.
        """
        self._receive_events_greenlet = gevent.spawn(self.receive_events)

    def receive_events(self) -> None:
        """Read frames until the connection ends; never dies on bad bytes.

        Override: greenswitch reads lines as UTF-8 (one bad byte kills the reader while
        ``connected`` stays true), URL-decodes the whole frame, and on EOF leaves waiting callers
        blocked. Here: frames are read as bytes and parsed by ``read_frame``; EOF or an
        unrecoverable framing error closes the connection, which releases every waiter.
        """
        stream = self.sock_file
        try:
            while not self._is_closed:
                frame = read_frame(stream)
                if frame is None:
                    self.close(ConnectionLost("FreeSWITCH closed the connection", self.node))
                    break
                self._report(frame.notes)
                try:
                    self.handle_event(frame)
                except Exception:  # a bug in a handler must not take the reader down
                    log.exception("ESL %s: error while handling a %s frame", self.node,
                                  frame.content_type or "untyped")
        except ProtocolError as exc:
            self._report([f"unrecoverable framing error: {exc}"])
            self.close(ConnectionLost(f"protocol error: {exc}", self.node))
        except (OSError, ValueError) as exc:
            # ValueError: the buffered file was closed under us during close().
            self.close(ConnectionLost(f"read failed: {exc}", self.node))
        finally:
            try:
                stream.close()
            except Exception:  # closing a file that is already broken
                log.debug("ESL %s: error closing the socket file", self.node, exc_info=True)

    def handle_event(self, frame: Frame) -> None:  # type: ignore[override]
        """Route one frame by its ``Content-Type``.

        Override: greenswitch pops a waiter for every reply (an unsolicited reply raises and kills
        the reader), ignores disconnects for callers, and parses events lossily.
        """
        ctype = frame.content_type
        if ctype in ("command/reply", "api/response"):
            waiter = self._pending
            if waiter is None or waiter.ready():
                log.warning("ESL %s: %s with no command waiting, dropped: %r", self.node, ctype,
                            (frame.reply_text or frame.body[:80]))
                self._report([f"unsolicited {ctype}"])
                return
            waiter.set(frame)
        elif ctype == "text/event-plain":
            event = parse_event(frame.body)
            self._report(event.notes)
            self.dispatch(event)
        elif ctype == "auth/request":
            self._auth_request_event.set()
        elif ctype == "text/disconnect-notice":
            if frame.headers.get("Content-Disposition") == "linger":
                log.debug("ESL %s: linger notice", self.node)
                return
            reason = frame.text().strip().replace("\n", " ") or "disconnect notice"
            # After our own "exit" the notice is the expected goodbye, not news.
            log.log(logging.DEBUG if self._exiting else logging.INFO,
                    "ESL %s: FreeSWITCH disconnected us: %s", self.node, reason)
            self.close(ConnectionLost(f"FreeSWITCH disconnected: {reason}", self.node))
        elif ctype == "text/rude-rejection":
            self.close(AuthFailed(f"rejected by the event socket ACL: {frame.text().strip()}",
                                  self.node))
        else:
            log.debug("ESL %s: ignored a frame of type %r", self.node, ctype)

    def dispatch(self, event: Event) -> None:
        """Run the handlers registered for this event (greenswitch's rules), logging failures."""
        if event.name == "CUSTOM":
            handlers = self.event_handlers.get(event.subclass)
        else:
            handlers = self.event_handlers.get(event.name)
        if not handlers:
            handlers = self.event_handlers.get("*")
        for handler in handlers or ():
            try:
                handler(event)
            except Exception:
                log.exception("ESL %s: event handler %r failed on %s", self.node, handler,
                              event.name)

    def _report(self, notes: list[str]) -> None:
        for note in notes:
            log.warning("ESL %s: %s", self.node, note)
            if self._on_malformed is not None:
                self._on_malformed(note)
        notes.clear()

    # ------------------------------------------------------------------ closing

    def close(self, reason: EslError | None = None) -> None:
        """Close for good and release every waiter with ``reason`` at once (idempotent)."""
        if self._is_closed:
            return
        self._is_closed = True
        self.connected = False
        self._run = False
        self.close_reason = reason or NotConnected("connection closed", self.node)
        waiter = self._pending
        if waiter is not None and not waiter.ready():
            waiter.set_exception(self.close_reason)
        # connect() may be waiting for auth/request.
        self._auth_request_event.set()
        sock = self.sock
        if sock is not None:
            # shutdown wakes the reader with EOF; it closes the buffered file itself (closing it
            # from here while the reader is inside it would be a re-entrant buffered-IO call).
            try:
                sock.shutdown(_stdlib_socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass
        reader = self._receive_events_greenlet
        if reader is None and self.sock_file is not None:
            try:
                self.sock_file.close()
            except Exception:
                log.debug("ESL %s: error closing the socket file", self.node, exc_info=True)
        self.closed.set()

    def stop(self, timeout: float = 1.0) -> None:
        """Say ``exit`` if still alive (bounded), close, and wait for the reader to end.

        Override: greenswitch's ``stop`` sends ``exit`` without a timeout and joins a dispatcher
        that polls once a second.
        """
        if self.alive:
            self._exiting = True
            try:
                self.execute("exit", timeout)
            except EslError:
                pass
        self.close(NotConnected("connection stopped", self.node))
        reader = self._receive_events_greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.join(timeout)
            if not reader.dead:
                reader.kill(block=True, timeout=timeout)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "closed"
        return f"<EslConnection {self.node} {state}>"


__all__ = ["EslConnection"]
