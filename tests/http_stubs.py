"""HTTP servers for tests: the lab's capture server, a fixed answer, no answer at all, a
closed port."""
from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

from gevent.server import StreamServer

#: what a route answers: status, content type, body; None: accept and never answer
Answer = tuple[str, str, bytes] | None


class HttpStub:
    """An HTTP server on port 0 that keeps every request's bytes and answers from ``route``
    (request line and body → status, content type, body), or never answers (``route`` gives
    None): the capture server of the recordings."""

    def __init__(self, route: Callable[[str, bytes], Answer]) -> None:
        self.route = route
        self.requests: list[bytes] = []
        self.server = StreamServer(("127.0.0.1", 0), self._serve)

    def _serve(self, sock: Any, _address: Any) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: *(\d+)", head, re.I).group(1)) \
            if b"content-length" in head.lower() else 0
        while len(body) < length:
            body += sock.recv(65536)
        self.requests.append(head + b"\r\n\r\n" + body)
        answer = self.route(head.split(b"\r\n", 1)[0].decode(), body)
        if answer is None:
            sock.recv(1)  # accepted, never answered: until the client gives up
            return
        status, content_type, content = answer
        sock.sendall(f"HTTP/1.1 {status}\r\nServer: xtest-capture/1.0\r\nContent-Type: "
                     f"{content_type}\r\nContent-Length: {len(content)}\r\nConnection: close"
                     f"\r\n\r\n".encode() + content)

    def __enter__(self) -> HttpStub:
        self.server.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.stop(timeout=0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"


class StubHttp(HttpStub):
    """Every request answered with one status and body; ``with StubHttp(...) as url``."""

    def __init__(self, status: str = "200 OK", body: bytes = b"",
                 content_type: str = "application/json") -> None:
        super().__init__(lambda line, request_body: (status, content_type, body))

    def __enter__(self) -> str:  # type: ignore[override]
        return super().__enter__().url


class SilentServer(StubHttp):
    """Accepts connections and never answers: a hung esl-bridge."""

    def __init__(self) -> None:
        HttpStub.__init__(self, lambda line, request_body: None)


def closed_port() -> int:
    """A local port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
