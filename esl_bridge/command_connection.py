"""Command connections (``CommandConnection``): an ``EslConnection`` whose caller reads its reply.

For the pool's command connections, which never subscribe to events. The class docstring says
why greenswitch's reader greenlet is bypassed and how its duties are kept.
"""
from __future__ import annotations

import logging
import socket as _stdlib_socket
import time
from collections.abc import Callable

import gevent
from gevent import socket

from .connection import EslConnection
from .errors import (
    AuthFailed,
    ConnectionLost,
    ConnectTimeout,
    EslError,
    NotConnected,
    ProtocolError,
    ReplyTimeout,
)
from .frames import Frame, FrameBuffer

log = logging.getLogger(__name__)

#: One recv takes a whole usual reply (``api status`` is ~400 bytes) and most big ones in a few.
RECV_SIZE = 65536
_REPLY_TYPES = ("api/response", "command/reply")
_NEVER = float("inf")


class CommandConnection(EslConnection):
    """A connection that only carries commands: the caller reads its own reply.

    Why greenswitch's reader is bypassed here: a connection that never subscribes to events
    receives nothing but the reply to its one command in flight (and, when FreeSWITCH shuts
    down, a disconnect notice). Passing each reply from a reader greenlet to the caller through
    an ``AsyncResult`` costs two extra greenlet switches and a hub round per command, which was
    most of the pool's own cost per round trip. Here the greenlet holding the lock writes the
    command, then reads and parses its reply from the socket itself (``FrameBuffer``: the same
    header-by-header parse as ``read_frame``). greenswitch's constructor state and API are kept;
    what its reader did for this connection is done as follows:

    - Deadline: a loop timer closes the connection when the deadline of the command in flight
      passes; closing wakes the caller (blocked in ``recv`` or ``sendall``), which raises the
      close reason (``CommandTimeout``). Connect and auth have theirs (``ConnectTimeout``). The
      timer is re-armed lazily (``_arm``), not created per command.
    - Unsolicited bytes: while idle, an io watcher sees any byte or EOF at once, in the hub; the
      connection is closed (a disconnect notice gives its reason; anything else means the
      stream is out of step) and never reused, so the pool's slot replaces it. A frame that is
      not a reply, met while waiting for the reply, also closes it and fails that command
      (``ConnectionLost``); bytes that arrive glued after a reply close it once the reply is
      returned.
    - A caller interrupted while its command is in flight (killed, an outer ``gevent.Timeout``)
      closes the connection: its reply may still come and would be taken for the next one's.

    ``register_handle`` still works but nothing is ever dispatched: use ``EslConnection`` for a
    connection that subscribes to events.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._frames = FrameBuffer()
        self._recv_sock: socket.socket | None = None
        self._raw: _stdlib_socket.socket | None = None
        self._read_event: object = None
        self._idle_watch: object = None
        self._hub = gevent.get_hub()
        # The deadline of what is in flight (a command, or connect's wait for auth/request) and
        # the error it ends with; None when nothing is. See _arm.
        self._deadline = 0.0
        self._late: Callable[[], EslError] | None = None
        self._late_text = ""
        self._late_timeout = 0.0
        self._timer: object = None
        self._timer_at = _NEVER

    # ------------------------------------------------------------------ connecting

    def _attach(self, sock: socket.socket) -> None:
        # gevent's socket keeps the non-blocking stdlib socket in ``_sock`` and its read
        # watcher in ``_read_event`` (both since gevent 1.0). Waiting on that very watcher, as
        # gevent's own recv does, keeps close() able to wake us (it cancels waits on it).
        self._recv_sock = sock
        self._raw = sock._sock  # type: ignore[attr-defined]
        self._read_event = sock._read_event  # type: ignore[attr-defined]
        # ref=False: watching an idle connection must not keep a finished program running.
        self._idle_watch = self._loop.io(sock.fileno(), 1, ref=False)

    def start_event_handlers(self) -> None:
        """No reader greenlet (see the class docstring)."""

    def _await_auth_request(self, deadline: float) -> None:
        self._late = self._auth_request_late
        self._deadline = deadline
        self._arm(deadline)
        try:
            while True:
                frame = self._next_frame()
                self._report(frame.notes)
                ctype = frame.content_type
                if ctype == "auth/request":
                    self._auth_request_event.set()
                    return
                if ctype == "text/rude-rejection":
                    raise self._fail(AuthFailed(
                        f"rejected by the event socket ACL: {frame.text().strip()}", self.node))
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
            self._late = None

    def _auth_request_late(self) -> EslError:
        return ConnectTimeout(f"no auth/request within {self.timeout:g} s of connecting",
                              self.node)

    def _command_late(self) -> EslError:
        verb = self._late_text.split(" ", 1)[0].split("\n", 1)[0]
        return ReplyTimeout(f"no reply to {verb!r} within {self._late_timeout:g} s", self.node)

    def _arm(self, deadline: float) -> None:
        """Make sure the deadline timer fires no later than ``deadline`` (monotonic seconds).

        One timer per connection, re-armed lazily: commands follow one another with deadlines
        that only move later, so the timer armed for an earlier one stays; when it fires it
        closes the connection if the deadline in flight has passed, else re-arms for it. That
        is one timer per ``command_timeout`` seconds rather than one per command.
        """
        if self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.close()  # type: ignore[attr-defined]
        # ref=False: an armed timer of an idle connection must not keep a program running.
        timer = self._loop.timer(max(deadline - time.monotonic(), 0.0), ref=False)
        timer.start(self._deadline_fired, update=True)
        self._timer, self._timer_at = timer, deadline

    def _deadline_fired(self) -> None:
        # Runs in the hub. Closing wakes the caller (blocked in recv or sendall) with the reason.
        self._timer.close()  # type: ignore[attr-defined]
        self._timer, self._timer_at = None, _NEVER
        late = self._late
        if late is None or self._is_closed:
            return  # nothing in flight: the next command arms it again
        if time.monotonic() >= self._deadline:
            self.close(late())
        else:
            self._arm(self._deadline)

    # ------------------------------------------------------------------ commands

    def execute(self, text: str, timeout: float | None = None) -> Frame:
        """Send one command frame and read its reply in the calling greenlet.

        Same contract as ``EslConnection.execute``: the lock, the whole frame written, the reply
        within ``timeout`` (waiting for the lock included) or ``CommandTimeout`` and the
        connection closed; ``ConnectionLost`` when it dies or goes out of step.
        """
        timeout = self._take_turn(text, timeout)
        try:
            self._idle_watch.stop()  # type: ignore[attr-defined]
            frames = self._frames
            if frames.pending:  # came while idle, not yet seen by the watcher
                self._unsolicited(eof=False)
                raise self.close_reason or NotConnected("connection is closed", self.node)
            self._late_text = text
            self._late_timeout = timeout
            self._late = self._command_late
            self._deadline = deadline = time.monotonic() + timeout
            if self._timer_at > deadline:
                self._arm(deadline)
            try:
                self._write_all((text + "\n\n").encode("utf-8"))
                # Right after the write the reply cannot be in yet: wait until the socket is
                # readable rather than make a recv that fails first (as gevent's recv does).
                self._hub.wait(self._read_event)
                data = self._recv_sock.recv(RECV_SIZE)  # type: ignore[union-attr]
                if not data:
                    raise self._fail(ConnectionLost("FreeSWITCH closed the connection",
                                                    self.node))
                frames.feed(data)
                frame = frames.next_frame() or self._next_frame()
                if frame.notes:
                    self._report(frame.notes)
                if frame.headers.get("Content-Type") not in _REPLY_TYPES:
                    raise self._unexpected(frame)
            except OSError as exc:
                # Closed under us (deadline, stop) or a socket error.
                raise self._fail(ConnectionLost(f"connection failed: {exc}", self.node)) from exc
            except ProtocolError as exc:
                self._report([f"unrecoverable framing error: {exc}"])
                raise self._fail(ConnectionLost(f"protocol error: {exc}", self.node)) from exc
            except EslError:
                raise
            except BaseException:
                # Interrupted from outside: the reply may still come, the stream is not ours.
                self.close(ConnectionLost("a command was interrupted in flight", self.node))
                raise
            finally:
                self._late = None
            if self._exiting:
                pass  # the goodbye notice follows "exit": not news
            elif frames.pending:
                self._unsolicited(eof=False)  # the caller keeps its reply; nobody else uses it
            elif not self._is_closed:
                self._idle_watch.start(self._idle_readable)  # type: ignore[attr-defined]
            return frame
        finally:
            self._lock.release()

    def _next_frame(self) -> Frame:
        """The next frame, reading from the socket (in the calling greenlet) until it is whole."""
        frames = self._frames
        frame = frames.next_frame() if frames.pending else None
        while frame is None:
            if self._is_closed:
                raise OSError("the connection is closed")
            data = self._recv_sock.recv(RECV_SIZE)  # type: ignore[union-attr]
            if not data:
                what = " in the middle of a frame" if frames.pending else ""
                raise self._fail(ConnectionLost(f"FreeSWITCH closed the connection{what}",
                                                self.node))
            frames.feed(data)
            frame = frames.next_frame()
        return frame

    def _fail(self, error: EslError) -> EslError:
        """Close with ``error`` unless already closed; the reason the caller should get."""
        if not self._is_closed:
            self.close(error)
        return self.close_reason or error

    def _unexpected(self, frame: Frame) -> EslError:
        """Close because of a frame that is not the reply awaited; returns the reason."""
        ctype = frame.content_type
        if ctype == "text/disconnect-notice":
            reason = frame.text().strip().replace("\n", " ") or "disconnect notice"
            log.log(logging.DEBUG if self._exiting else logging.INFO,
                    "ESL %s: FreeSWITCH disconnected us: %s", self.node, reason)
            return self._fail(ConnectionLost(f"FreeSWITCH disconnected: {reason}", self.node))
        if ctype == "text/rude-rejection":
            return self._fail(AuthFailed(
                f"rejected by the event socket ACL: {frame.text().strip()}", self.node))
        note = f"unexpected {ctype or 'untyped'} frame on a command connection"
        self._report([note])
        return self._fail(ConnectionLost(f"{note}: the stream is out of step", self.node))

    def _unsolicited(self, eof: bool) -> None:
        """Close because bytes (or EOF) came with no command in flight, saying what they were."""
        if self._exiting:
            self.close(NotConnected("connection stopped", self.node))
            return
        try:
            frame = self._frames.next_frame() if self._frames.pending else None
        except ProtocolError as exc:
            self._report([f"unrecoverable framing error: {exc}"])
            self._fail(ConnectionLost(f"protocol error: {exc}", self.node))
            return
        if frame is not None:
            self._unexpected(frame)
        elif eof and not self._frames.pending:
            self._fail(ConnectionLost("FreeSWITCH closed the connection", self.node))
        else:
            self._report(["unexpected bytes on an idle command connection"])
            self._fail(ConnectionLost("unexpected bytes on an idle command connection",
                                      self.node))

    def _idle_readable(self) -> None:
        # Runs in the hub and must not block: a byte or EOF on an idle connection.
        self._idle_watch.stop()  # type: ignore[attr-defined]
        if self._is_closed:
            return
        try:
            data = self._raw.recv(RECV_SIZE)  # type: ignore[union-attr]  # non-blocking
        except BlockingIOError:
            self._idle_watch.start(self._idle_readable)  # type: ignore[attr-defined]
            return
        except OSError as exc:
            self._fail(ConnectionLost(f"read failed: {exc}", self.node))
            return
        if data:
            self._frames.feed(data)
        self._unsolicited(eof=not data)

    # ------------------------------------------------------------------ closing

    def close(self, reason: EslError | None = None) -> None:
        """Close for good (idempotent); a caller blocked on the socket wakes with ``reason``."""
        if self._is_closed:
            return
        idle = self._idle_watch
        if idle is not None:
            idle.stop()  # type: ignore[attr-defined]
        timer = self._timer
        if timer is not None:
            timer.stop()  # type: ignore[attr-defined]
            self._timer, self._timer_at = None, _NEVER
        self._late = None
        super().close(reason)

    def __repr__(self) -> str:
        state = "alive" if self.alive else "closed"
        return f"<CommandConnection {self.node} {state}>"


__all__ = ["CommandConnection"]
