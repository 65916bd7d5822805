"""Command connections (``CommandConnection``): several commands in flight, replies in order.

For the pool's command connections, which never subscribe to events. ``mod_event_socket``
handles one connection's commands strictly in order (``api`` runs on the connection's thread
and answers before the next command is read; ``bgapi`` and ``sendevent`` answer at once), so
replies come back in the order the commands were written and are matched first in, first out.
What would make that unsafe is only a queue out of step with the stream, hence the invariant:

    any timeout, failed write or error on the connection closes it at once and fails every
    command still waiting on it; nothing is ever matched across a reconnect (a closed connection
    is never reused). A short send is not a failure: the rest goes when the socket takes it,
    and a frame still not written by its command's deadline times out like a missing reply.

How it works:

- A command joins the queue of commands in flight and the output in one step; the hub writes
  the output (every frame queued since its last write, in one ``send``), so frames never
  interleave and are written in queue order. A write that fails closes the connection.
- Replies are read by an io watcher in the hub, not by a reader greenlet: when the socket is
  readable the hub reads what is there, cuts frames (``FrameBuffer``) and switches each reply
  straight into the greenlet waiting for it. One switch per reply, none for a reader.
- One loop timer per connection, armed lazily for the earliest deadline in flight: when a
  deadline passes the connection is closed; that command gets ``ReplyTimeout`` and the others
  ``ConnectionLost`` (each caller its own exception instance: ``EslPool.bgapi`` attaches a job
  to it). A command interrupted from outside (killed, an outer ``gevent.Timeout``) after it
  was written keeps its place: its reply is read and dropped, then the next reply goes to the
  next command.
- Any frame that is not a reply, or a reply with nothing in flight, closes the connection.

How many commands a connection carries, and when a slow one keeps new ones away, is the pool's
policy (``esl_bridge.node``). Nothing is ever dispatched to ``register_handle``'s handlers.
"""
from __future__ import annotations

import collections
import logging
import socket as _stdlib_socket
import time
from collections.abc import Callable

from gevent import socket
from gevent.hub import Waiter

from .connection import EslConnection
from .errors import (
    AuthFailed,
    ConnectionLost,
    ConnectTimeout,
    EslError,
    FreeSwitchTimeout,
    FreeSwitchUnavailable,
    NotConnected,
    ProtocolError,
    ReplyTimeout,
)
from .frames import Frame, FrameBuffer, check_frame_text

log = logging.getLogger(__name__)

#: One recv takes several usual replies (``api status`` is ~400 bytes) and big ones in a few.
RECV_SIZE = 65536
_REPLY_TYPES = ("api/response", "command/reply")
_NEVER = float("inf")


class _InFlight:
    """One command written (or being written) on a connection, until its reply or failure."""

    __slots__ = ("waiter", "started", "deadline", "text", "timeout", "slow", "abandoned", "done")

    def __init__(self, waiter: Waiter, started: float, timeout: float, text: str,
                 slow: bool) -> None:
        self.waiter = waiter
        self.started = started
        self.deadline = started + timeout
        self.text = text
        self.timeout = timeout
        self.slow = slow  # expected to hold FreeSWITCH for a while (see execute)
        self.abandoned = False  # its caller was interrupted: the reply is read and dropped
        self.done = False  # answered or failed


class CommandConnection(EslConnection):
    """A connection that only carries commands, several at a time (see the module docstring).

    ``on_freed(conn)``, when set, is called in the hub when the reply of an abandoned command
    has been dropped (a place in flight that no caller will give back).
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._frames = FrameBuffer()
        self._inflight: collections.deque[_InFlight] = collections.deque()
        # Frames queued for the next flush; _blocked while waiting for the socket to take more.
        self._out: list[bytes | memoryview] = []
        self._flush_due = False
        self._blocked = False
        self._write_watch: object = None
        self._raw: _stdlib_socket.socket | None = None
        self._watch: object = None
        self._run_callback = self._loop.run_callback
        self._timer: object = None
        self._timer_at = _NEVER
        self.on_freed: Callable[[CommandConnection], None] | None = None
        self._answered_at = 0.0  # when the last reply came
        # The pool's bookkeeping (esl_bridge.node).
        self.load = 0
        self.abandoned = 0
        self.slow_in_flight = 0
        self.retiring = False
        self.last_used = 0.0

    @property
    def in_flight(self) -> int:
        """Commands written and not yet answered (abandoned ones included)."""
        return len(self._inflight)

    def stalled(self, now: float, after: float) -> bool:
        """True when the oldest command in flight was written more than ``after`` s ago."""
        inflight = self._inflight
        return bool(inflight) and now - inflight[0].started > after

    # ------------------------------------------------------------------ connecting

    def _attach(self, sock: socket.socket) -> None:
        # gevent's socket keeps the non-blocking stdlib socket in ``_sock`` (since gevent 1.0):
        # the hub reads from it without blocking when the io watcher says it is readable.
        self._raw = sock._sock
        # ref=False: watching a connection must not keep a finished program running.
        self._watch = self._loop.io(sock.fileno(), 1, ref=False)
        self._write_watch = self._loop.io(sock.fileno(), 2, ref=False)

    def start_event_handlers(self) -> None:
        """No reader greenlet: the io watcher starts once ``auth/request`` is in."""

    def _await_auth_request(self, deadline: float) -> None:
        timer = self._loop.timer(max(deadline - time.monotonic(), 0.0), ref=False)
        timer.start(self._auth_request_late)
        try:
            while True:
                frame = self._next_frame()
                self._report(frame.notes)
                ctype = frame.content_type
                if ctype == "auth/request":
                    break
                if ctype == "text/rude-rejection":
                    raise self._fail(self._rejected(frame))
                if ctype == "text/disconnect-notice":
                    raise self._fail(NotConnected(
                        f"FreeSWITCH disconnected: {frame.text().strip()}", self.node))
                raise self._fail(ConnectionLost(
                    f"a {ctype or 'untyped'} frame before auth/request", self.node))
        except OSError as exc:
            raise self._fail(NotConnected(f"connect failed: {exc}", self.node)) from exc
        except ProtocolError as exc:
            raise self._fail(ConnectionLost(f"protocol error: {exc}", self.node)) from exc
        finally:
            timer.close()
        self._auth_request_event.set()
        if self._frames.pending:  # FreeSWITCH says nothing more until we send auth
            raise self._fail(ConnectionLost("bytes after auth/request", self.node))
        self._watch.start(self._readable)  # type: ignore[attr-defined]

    def _auth_request_late(self) -> None:
        self.close(ConnectTimeout(f"no auth/request within {self.timeout:g} s of connecting",
                                  self.node))

    def _next_frame(self) -> Frame:
        """The next frame, read in the calling greenlet (only before the io watcher starts)."""
        frames = self._frames
        frame = frames.next_frame() if frames.pending else None
        while frame is None:
            if self._is_closed:
                raise OSError("the connection is closed")
            data = self.sock.recv(RECV_SIZE)
            if not data:
                raise self._fail(ConnectionLost("FreeSWITCH closed the connection", self.node))
            frames.feed(data)
            frame = frames.next_frame()
        return frame

    # ------------------------------------------------------------------ commands

    def execute(self, text: str, timeout: float | None = None, slow: bool = False) -> Frame:
        """Send one command frame and wait for its reply, other commands in flight or not.

        ``slow`` says the command is expected to hold FreeSWITCH for a while: it is counted in
        ``slow_in_flight`` until answered, so that the pool puts nothing behind it. The reply's
        ``service`` is the time FreeSWITCH spent on it. Raises ``ReplyTimeout`` when the reply
        did not come within ``timeout`` (writing included), ``ConnectionLost`` when the
        connection closed while the command was in flight (both mean FreeSWITCH may have run
        it), ``NotConnected`` when it is already closed.
        """
        check_frame_text(text)
        if timeout is None:
            timeout = self.command_timeout
        if self._is_closed:
            raise NotConnected("connection is closed", self.node)
        entry = _InFlight(Waiter(self._hub), time.monotonic(), timeout, text, slow)
        self.slow_in_flight += slow
        # In the queue and in the output in one step (no yield between): replies come back in
        # the order frames are written.
        self._inflight.append(entry)
        self._out.append((text + "\n\n").encode("utf-8"))
        if not self._flush_due:
            self._flush_due = True
            if not self._blocked:
                self._run_callback(self._flush)
        if entry.deadline < self._timer_at:
            self._arm(entry.deadline)
        try:
            return entry.waiter.get()
        except EslError:
            raise
        except BaseException:
            # Interrupted from outside: the reply will still come, in its place in the queue.
            if not entry.done:
                entry.abandoned = True
                self.abandoned += 1
            raise

    def _error_for(self, entry: _InFlight) -> EslError:
        """What a command gets when the connection closes while it is in flight."""
        reason = self.close_reason or NotConnected("connection is closed", self.node)
        if isinstance(reason, ReplyTimeout) and entry.deadline <= time.monotonic():
            return self._late(entry)
        if isinstance(reason, AuthFailed):
            return AuthFailed(reason.message, reason.node)
        message = reason.message if isinstance(reason, FreeSwitchUnavailable) else str(reason)
        if isinstance(reason, FreeSwitchTimeout):
            message = f"the connection was closed: {message}"
        return ConnectionLost(message, self.node)

    def _late(self, entry: _InFlight) -> ReplyTimeout:
        verb = entry.text.split(" ", 1)[0].split("\n", 1)[0]
        return ReplyTimeout(f"no reply to {verb!r} within {entry.timeout:g} s", self.node)

    # ------------------------------------------------------------------ writing (in the hub)

    def _flush(self) -> None:
        """Write every frame queued since the last flush, in one ``send`` when it takes them.

        Callers woken by one batch of replies each queue their next command; written together,
        they cost one system call, and FreeSWITCH finds them all waiting when it reads.
        Whatever the socket does not take now is written when it is writable again.
        """
        self._flush_due = False
        out = self._out
        if self._is_closed or not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        try:
            sent = self._raw.send(data)  # type: ignore[union-attr]  # non-blocking
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(ConnectionLost(f"write failed: {exc}", self.node))
            return
        if sent < len(data):
            out.append(memoryview(data)[sent:])
            self._blocked = True
            self._write_watch.start(self._writable)  # type: ignore[attr-defined]

    def _writable(self) -> None:
        self._write_watch.stop()  # type: ignore[attr-defined]
        self._blocked = False
        self._flush()

    def _arm(self, deadline: float) -> None:
        """Make the deadline timer fire at ``deadline`` (monotonic seconds).

        One timer per connection, re-armed lazily: with equal timeouts the deadlines of
        commands written one after another only move later, so the timer armed for an earlier
        one stays; when it fires it closes the connection if a deadline in flight has passed,
        else re-arms for the earliest one. That is one timer per ``command_timeout`` seconds
        rather than one per command.
        """
        if self._timer is not None:
            self._timer.close()  # type: ignore[attr-defined]
        # ref=False: an armed timer of an idle connection must not keep a program running.
        timer = self._loop.timer(max(deadline - time.monotonic(), 0.0), ref=False)
        timer.start(self._deadline_fired, update=True)
        self._timer, self._timer_at = timer, deadline

    def _deadline_fired(self) -> None:
        # Runs in the hub. Closing wakes every waiting caller with its error.
        self._timer.close()  # type: ignore[attr-defined]
        self._timer, self._timer_at = None, _NEVER
        if self._is_closed or not self._inflight:
            return  # nothing in flight: the next command arms it again
        earliest = min(self._inflight, key=lambda entry: entry.deadline)
        if time.monotonic() >= earliest.deadline:
            self.close(self._late(earliest))
        else:
            self._arm(earliest.deadline)

    # ------------------------------------------------------------------ reading (in the hub)

    def _readable(self) -> None:
        # The io watcher's callback: runs in the hub and must not block.
        try:
            data = self._raw.recv(RECV_SIZE)  # type: ignore[union-attr]  # non-blocking
        except BlockingIOError:
            return
        except OSError as exc:
            self._fail(ConnectionLost(f"read failed: {exc}", self.node))
            return
        if not data:
            if self._exiting:
                self.close(NotConnected("connection stopped", self.node))
            else:
                what = " in the middle of a frame" if self._frames.pending else ""
                self._fail(ConnectionLost(f"FreeSWITCH closed the connection{what}", self.node))
            return
        frames = self._frames
        frames.feed(data)
        inflight = self._inflight
        try:
            while not self._is_closed:
                frame = frames.next_frame()
                if frame is None:
                    return
                if not inflight or frame.headers.get("Content-Type") not in _REPLY_TYPES:
                    self._unexpected(frame)
                    return
                if frame.notes:
                    self._report(frame.notes)
                entry = inflight.popleft()
                entry.done = True
                self.slow_in_flight -= entry.slow
                now = time.monotonic()
                frame.service = now - max(entry.started, self._answered_at)
                self._answered_at = now
                if entry.abandoned:
                    self.abandoned -= 1
                    if self.on_freed is not None:
                        self.on_freed(self)
                    continue
                # Runs the caller until it waits again (often for its next command's reply).
                entry.waiter.switch(frame)
        except ProtocolError as exc:
            self._report([f"unrecoverable framing error: {exc}"])
            self._fail(ConnectionLost(f"protocol error: {exc}", self.node))
        except Exception as exc:  # a bug here must close the connection, not kill the hub
            log.exception("ESL %s: error while reading replies", self.node)
            self._fail(ConnectionLost(f"read failed: {exc}", self.node))

    def _unexpected(self, frame: Frame) -> None:
        """Close because of a frame that is not the reply to a command in flight."""
        if self._exiting:
            self.close(NotConnected("connection stopped", self.node))
            return
        ctype = frame.content_type
        if ctype == "text/disconnect-notice":
            self._fail(ConnectionLost(self._disconnected(frame), self.node))
        elif ctype == "text/rude-rejection":
            self._fail(self._rejected(frame))
        else:
            note = f"unexpected {ctype or 'untyped'} frame on a command connection"
            self._report([note])
            self._fail(ConnectionLost(f"{note}: the stream is out of step", self.node))

    def _fail(self, error: EslError) -> EslError:
        """Close with ``error`` unless already closed; the reason the caller should get."""
        if not self._is_closed:
            self.close(error)
        return self.close_reason or error

    # ------------------------------------------------------------------ closing

    def _release_waiters(self, reason: EslError) -> None:
        for watch in (self._watch, self._write_watch):
            if watch is not None:
                watch.stop()  # type: ignore[attr-defined]  # before the socket closes
        self._out.clear()
        timer = self._timer
        if timer is not None:
            timer.close()  # type: ignore[attr-defined]
            self._timer, self._timer_at = None, _NEVER
        inflight = self._inflight
        while inflight:
            entry = inflight.popleft()
            entry.done = True
            if not entry.abandoned:
                # Scheduled, not switched to: close() must finish before anyone runs.
                self._run_callback(entry.waiter.throw, self._error_for(entry))
        self.abandoned = self.slow_in_flight = 0

    def stop(self, timeout: float = 1.0) -> None:
        """Say ``exit`` if alive and idle (bounded), then close.

        Commands still in flight are not waited for: they get ``ConnectionLost`` at once.
        """
        if self.alive and not self._inflight:
            self._say_exit(timeout)
        self.close(NotConnected("connection stopped", self.node))


__all__ = ["CommandConnection"]
