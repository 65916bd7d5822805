"""A hand-written pipelined event-socket client, the ceiling of ``bench/esl_pool.py``.

No library: plain gevent sockets, ``connections`` connections, commands handed to them in turn
(so with 16 callers and 4 connections about 4 are in flight on each), one reader greenlet per
connection matching replies to callers first in, first out. No timeouts, no reconnects, no
checks: what a user writes by hand to see how fast FreeSWITCH can go, not something to run a
service on.
"""
from __future__ import annotations

import collections
import itertools

import gevent
import gevent.event
from gevent import socket


class RawConnection:
    """One authenticated connection: ``api(command)`` returns the body as bytes."""

    def __init__(self, host: str, port: int, password: str) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.waiting: collections.deque[gevent.event.AsyncResult] = collections.deque()
        self._frame()  # auth/request
        self.sock.sendall(f"auth {password}\n\n".encode())
        headers, _ = self._frame()
        if b"+OK accepted" not in headers:
            raise ConnectionError(f"auth refused: {headers!r}")
        self.reader = gevent.spawn(self._read)

    def _frame(self) -> tuple[bytes, bytes]:
        """The next frame (head, body), reading as needed."""
        while True:
            end = self.buffer.find(b"\n\n")
            if end >= 0:
                head = self.buffer[:end]
                length = 0
                marker = head.find(b"Content-Length: ")
                if marker >= 0:
                    length = int(head[marker + 16:].split(b"\n", 1)[0])
                if len(self.buffer) >= end + 2 + length:
                    body = self.buffer[end + 2:end + 2 + length]
                    self.buffer = self.buffer[end + 2 + length:]
                    return head, body
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.buffer += data

    def _read(self) -> None:
        try:
            while True:
                _, body = self._frame()
                self.waiting.popleft().set(body)
        except (ConnectionError, OSError):
            while self.waiting:
                self.waiting.popleft().set_exception(ConnectionError("closed"))

    def api(self, command: str) -> bytes:
        result = gevent.event.AsyncResult()
        self.waiting.append(result)
        self.sock.sendall(f"api {command}\n\n".encode())
        return result.get()

    def close(self) -> None:
        self.sock.close()
        self.reader.kill()


class RawPipelined:
    """``connections`` raw connections; each call goes to the next one in turn."""

    def __init__(self, host: str, port: int, password: str, connections: int = 4) -> None:
        self.connections = [RawConnection(host, port, password) for _ in range(connections)]
        self._turn = itertools.count()

    def api(self, command: str) -> bytes:
        conns = self.connections
        return conns[next(self._turn) % len(conns)].api(command)

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


__all__ = ["RawPipelined"]
