"""One client connection of the test FreeSWITCH, served as mod_event_socket serves it."""
from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import gevent
import gevent.event
import gevent.lock
from gevent import socket

from .wire import AUTH_REQUEST, MAX_COMMAND

if TYPE_CHECKING:
    from .server import FakeFreeSwitch

log = logging.getLogger("fake_freeswitch")


class FakeConnection:
    """One client connection, served by one greenlet as FreeSWITCH serves it by one thread.

    The greenlet reads a command (byte by byte, never ahead), runs it, writes the reply, then
    reads the next. Events are written between commands: while a command runs (``msleep``, a
    slow or hung command) they wait, and so does everything else on that connection; other
    connections are not affected.
    """

    def __init__(self, fake: FakeFreeSwitch, sock: socket.socket, address: tuple) -> None:
        self.fake = fake
        self.sock = sock
        self.address = address
        self.authenticated = False
        self.events: set[str] = set()
        self.subclasses: set[str] = set()
        self.all_events = False
        self.format = ""
        self.commands: list[str] = []
        #: ("recv" | "reply", first line) in the order they happened: shows pipelining
        self.trace: list[tuple[str, str]] = []
        self.closed = gevent.event.Event()
        self.busy = False
        self.greenlet: gevent.Greenlet | None = None
        self._pending: list[bytes] = []  # events that arrived while a command ran
        self._close_after_pending = False
        self._write_lock = gevent.lock.Semaphore(1)

    @property
    def subscribed(self) -> bool:
        return self.all_events or bool(self.events)

    def wants(self, name: str, subclass: str = "") -> bool:
        if self.all_events:
            return True
        if name == "CUSTOM":
            return "CUSTOM" in self.events and subclass in self.subclasses
        return name in self.events

    def deliver(self, data: bytes, close: bool = False) -> None:
        """Write an event (or raw bytes) now if idle, else right after the running command."""
        if self.closed.is_set():
            return
        if self.busy or self._pending:
            self._pending.append(data)
            self._close_after_pending |= close
            return
        self.write(data)
        if close:
            self.close()

    def _flush(self) -> None:
        while self._pending and not self.closed.is_set():
            self.write(self._pending.pop(0))
        if self._close_after_pending:
            self.close()

    def write(self, data: bytes) -> None:
        if self.closed.is_set():
            return
        try:
            with self._write_lock:
                self.sock.sendall(data)
        except OSError:
            self.close()

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        serving = self.greenlet
        if self.busy and serving is not None and serving is not gevent.getcurrent():
            # A closed connection's command (msleep, a hang fault) ends with it.
            serving.kill(block=False)

    def vanish(self) -> int:
        """Stop serving without a word: no FIN, no RST, nothing more read or written. Returns
        a duplicate of the socket's descriptor, which holds the socket open until it is
        closed (closing the connection's own socket object then sends nothing)."""
        held = os.dup(self.sock.fileno())
        self.closed.set()  # writes stop, and close() has nothing left to do
        serving = self.greenlet
        if serving is not None and serving is not gevent.getcurrent():
            serving.kill(block=False)
        return held

    def read_command(self) -> tuple[str, bytes] | None:
        """Read one command as mod_event_socket's ``read_packet`` does: one byte per ``recv``.

        FreeSWITCH never reads ahead, so commands pipelined on one connection cost it as much
        as commands sent one at a time; a buffered reader would make pipelining look far
        cheaper than it is on a real FreeSWITCH. The body announced by a ``Content-Length``
        header is read in one go, as FreeSWITCH does. ``None`` at the end of the stream.
        """
        recv = self.sock.recv
        data = bytearray()
        while not data.endswith(b"\n\n"):
            byte = recv(1)
            if not byte:
                return None
            if not data and byte in b"\r\n":
                continue  # FreeSWITCH skips blank lines before a command
            data += byte
            if len(data) % 4096 == 0:
                # Let the rest of the process run while a huge command trickles in.
                gevent.sleep(0)
                while self.fake.stall_reads and not self.closed.is_set():
                    gevent.sleep(0.005)
                if len(data) >= MAX_COMMAND:
                    break  # as read_packet: a command ends at its size limit
        text = data.decode("utf-8", "replace").replace("\r", "")
        lines = [line for line in text.split("\n") if line]
        body = b""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                size = int(value.strip())
                while len(body) < size:
                    chunk = recv(size - len(body))
                    if not chunk:
                        return None
                    body += chunk
        return "\n".join(lines), body

    def serve(self) -> None:
        self.greenlet = gevent.getcurrent()
        if self.fake.hang_on_connect:
            # Say nothing; end when the client goes away (noticed by peeking for its EOF).
            try:
                if self.sock.recv(1, socket.MSG_PEEK) == b"":
                    return
            except OSError:
                return
            self.closed.wait()
            return
        self.write(AUTH_REQUEST)
        try:
            while not self.closed.is_set():
                while self.fake.stall_reads and not self.closed.is_set():
                    gevent.sleep(0.005)
                command = self.read_command()
                if command is None:
                    return
                text, body = command
                self.trace.append(("recv", text.split("\n", 1)[0]))
                self.busy = True
                try:
                    self.fake._handle_command(self, text, body)
                finally:
                    self.busy = False
                self._flush()
        except (OSError, ValueError):
            return
        except gevent.GreenletExit:
            raise
        except Exception:
            log.exception("fake FreeSWITCH: connection failed")
        finally:
            self.close()


