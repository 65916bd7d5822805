"""The event connection (``EventConnection``): greenswitch's reader greenlet, made safe.

The pool's one connection per node that subscribes to events. A reader greenlet reads every
frame; events go to the handlers registered with ``register_handle(name, fn)`` (``fn(event)``
runs in the reader and must not block); the reply to the one command in flight goes to its
caller. Commands take turns (a lock): this connection carries few of them (the auth, the
subscription, ``exit``), so it has no need of pipelining.
"""
from __future__ import annotations

import logging
import time

import gevent
import gevent.event
import gevent.lock
from gevent import socket

from .connection import EslConnection
from .errors import (
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


class EventConnection(EslConnection):
    """A connection whose reader greenlet dispatches events; one command in flight at a time."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._lock = gevent.lock.Semaphore(1)
        self._pending: gevent.event.AsyncResult | None = None

    def _attach(self, sock: socket.socket) -> None:
        self.sock_file = sock.makefile("rb")

    def _await_auth_request(self, deadline: float) -> None:
        if not self._auth_request_event.wait(max(deadline - time.monotonic(), 0)):
            raise ConnectTimeout(
                f"no auth/request within {self.timeout:g} s of connecting", self.node)

    # ------------------------------------------------------------------ commands

    def execute(self, text: str, timeout: float | None = None) -> Frame:
        """Send one command frame and return its reply, taking turns with other callers.

        Waiting for the turn counts towards the timeout. On timeout the connection is closed,
        since a late reply would otherwise be taken for the next command's.
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
        try:
            if self._is_closed:
                raise NotConnected("connection is closed", self.node)
            waiter = gevent.event.AsyncResult()
            self._pending = waiter
            # A bare loop timer: when it fires it closes the connection, which also frees a
            # blocked sendall.
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
            lock.release()

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

    def handle_event(self, frame: Frame) -> None:
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
            self.close(ConnectionLost(self._disconnected(frame), self.node))
        elif ctype == "text/rude-rejection":
            self.close(self._rejected(frame))
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

    # ------------------------------------------------------------------ closing

    def _release_waiters(self, reason: EslError) -> None:
        waiter = self._pending
        if waiter is not None and not waiter.ready():
            waiter.set_exception(reason)

    def stop(self, timeout: float = 1.0) -> None:
        """Say ``exit`` if alive (bounded), close, and wait for the reader to end."""
        super().stop(timeout)
        reader = self._receive_events_greenlet
        if reader is not None and reader is not gevent.getcurrent():
            reader.join(timeout)
            if not reader.dead:
                reader.kill(block=True, timeout=timeout)


__all__ = ["EventConnection"]
