"""Connection timeouts and limits on real sockets, with one worker and with two
(`esl-bridge serve --workers N`): an idle keep-alive is closed, headers trickled a byte at a time
and a body stalled half way get 408, open connections are capped, a stop answers a connection's
first request still on its way, clients take turns, and the open files limit is raised at
start."""
from __future__ import annotations

import json
import resource
import select
import socket
from collections.abc import Iterator

import gevent
import pytest
from serve_process import ESL_BRIDGE, Serve, serve
from test_actions_support import wait_until

pytestmark = pytest.mark.skipif(not ESL_BRIDGE.exists(), reason="the esl-bridge script is not installed")

TIMEOUTS = ("--idle-timeout", "0.5", "--header-timeout", "1", "--body-timeout", "0.5")
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def _serve(request, tmp_path_factory, *flags: str) -> Iterator[Serve]:
    path = tmp_path_factory.mktemp("limits")
    server = serve(f"sqlite:///{path}/limits.db", *flags, workers=request.param, cwd=path)
    yield server
    assert server.stop() == 0, server.err[-3000:]


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def limited(request, tmp_path_factory) -> Iterator[Serve]:
    """Short timeouts."""
    yield from _serve(request, tmp_path_factory, *TIMEOUTS)


@pytest.fixture(scope="module", params=[1, 2], ids=["1 worker", "2 workers"])
def capped(request, tmp_path_factory) -> Iterator[Serve]:
    """Two connections per worker, and idle ones kept for long (so that only the cap closes them)."""
    yield from _serve(request, tmp_path_factory, "--max-connections", "2", "--idle-timeout", "120")


def connect(server: Serve) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.settimeout(20)  # a bound for the test itself, far above every server timeout
    return sock


def response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response: its head and body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed the connection (reading gets EOF, not data)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_idle_keep_alive_connection_is_closed(limited) -> None:
    sock = connect(limited)
    sock.sendall(HEALTH)
    head, _ = response(sock)
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
    assert closed_by_server(sock)  # nothing sent: closed after the idle timeout
    sock.close()
    silent = connect(limited)  # never sends a byte
    assert closed_by_server(silent)
    silent.close()


def test_headers_trickled_a_byte_at_a_time_get_408(limited) -> None:
    sock = connect(limited)
    request = HEALTH[:-2] + b"X-Slow: " + b"a" * 400 + b"\r\n\r\n"
    sent = 0
    # One byte every 20 ms: each arrives well within any per-read timeout, the whole would take
    # 9 s; the header deadline (1 s) answers first.
    while sent < len(request) and not select.select([sock], [], [], 0.02)[0]:
        sock.sendall(request[sent:sent + 1])
        sent += 1
    assert sent < len(request)
    head, body = response(sock)
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    envelope = json.loads(body)
    assert (envelope["status"], envelope["error"], envelope["message"]) == ("error", "408", "request timeout")
    assert closed_by_server(sock)
    sock.close()


def test_a_body_stalled_half_way_gets_408(limited) -> None:
    sock = connect(limited)
    sock.sendall(b"PUT /v2/api_auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n" + b'{"data": {"api_')
    head, body = response(sock)
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    envelope = json.loads(body)
    assert (envelope["status"], envelope["error"]) == ("error", "408")
    assert closed_by_server(sock)
    sock.close()


def test_refusals_are_readable_cross_origin_except_freeswitchs(limited) -> None:
    # A browser UI sees a refused request's envelope as it sees any other error: a body stalled
    # half way, headers never finished, a request line too long.
    stalled_body = (b"PUT /v2/api_auth HTTP/1.1\r\nHost: x\r\nOrigin: https://ui.example\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"da")
    for request, code, cross_origin in (
            (stalled_body, b"408", True),
            (b"GET /v2/accounts HTTP/1.1\r\nHost: x\r\nOrigin: https://ui.exa", b"408", True),
            (b"GET /freeswitch/directory HTTP/1.1\r\nHost: x\r\nOrigin: https://ui.exa", b"408", False),
            (b"GET /v2/" + b"a" * 10000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414", True)):
        sock = connect(limited)
        sock.sendall(request)
        head, body = response(sock)
        assert head.startswith(b"HTTP/1.1 " + code) and json.loads(body)["error"] == code.decode()
        assert (b"access-control-allow-origin: *" in head.lower()) is cross_origin, head
        sock.close()


@pytest.mark.parametrize("limited", [1], indirect=True, ids=["1 worker"])
def test_a_client_sending_requests_back_to_back_does_not_keep_the_worker_to_itself(limited) -> None:
    """Requests that never wait (SQLite answers without yielding) from one keep-alive client
    take turns with another client's: its request, sent while the first client's are being
    answered, is answered before all of them."""
    count = 1000
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # room for every answer
    busy.connect(("127.0.0.1", limited.port))
    busy.settimeout(20)
    other = connect(limited)
    busy.sendall(HEALTH * count)  # all in the server's buffer at once
    busy.recv(1, socket.MSG_PEEK)  # the worker is answering them
    other.sendall(HEALTH)
    assert response(other)[0].startswith(b"HTTP/1.1 200")
    answered_first = busy.recv(64 << 20, socket.MSG_PEEK | socket.MSG_DONTWAIT).count(b"HTTP/1.1 200")
    # Taking turns, a few of the first client's come before; keeping the worker, nearly all.
    assert answered_first < count // 2
    received = b""
    while received.count(b"HTTP/1.1 200") < count:  # and the busy client gets all of its answers
        chunk = busy.recv(1 << 20)
        assert chunk, f"closed after {received.count(b'HTTP/1.1 ')} answers"
        received += chunk
    busy.close()
    other.close()


def test_open_connections_are_capped(capped) -> None:
    # Eight clients, each done with a request and keeping its connection: past two per worker,
    # each newcomer closes the one that has waited longest.
    socks = []
    for _ in range(8):
        sock = connect(capped)
        sock.sendall(HEALTH)
        assert response(sock)[0].startswith(b"HTTP/1.1 200")
        socks.append(sock)
    gevent.sleep(0.1)  # the last closes are on their way through the loopback
    ready, _, _ = select.select(socks, [], [], 0)
    open_ones = [sock for sock in socks if sock not in ready or not closed_by_server(sock)]
    assert len(open_ones) <= 2 * capped.workers
    for sock in socks:
        sock.close()
    # The evicted clients reconnect without trouble.
    again = connect(capped)
    again.sendall(HEALTH)
    assert response(again)[0].startswith(b"HTTP/1.1 200")
    again.close()


def test_a_stop_answers_the_first_request_of_a_connection_it_had_accepted(start_bridge) -> None:
    """A stop (SIGTERM, or a worker replaced on SIGHUP) closes connections idle between
    keep-alive requests, but one accepted just before it whose request is on its way gets its
    answer: closed unanswered, its client would see the request fail."""
    server = start_bridge()
    http = server.servers[0]
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=20)
    served = socket.create_connection(("127.0.0.1", server.http_port), timeout=20)
    served.sendall(HEALTH)
    assert response(served)[0].startswith(b"HTTP/1.1 200")
    assert wait_until(lambda: len(http.waiting) == 2)  # one fresh, one between requests
    stopping = gevent.spawn(server.stop, 5)
    assert wait_until(lambda: http.closed)
    assert closed_by_server(served)
    sock.sendall(HEALTH)
    head, body = response(sock)
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    assert json.loads(body)["status"] == "success"
    assert closed_by_server(sock)
    stopping.join(timeout=20)
    assert stopping.successful()


def test_a_stop_closes_a_new_connection_that_sends_nothing(start_bridge) -> None:
    server = start_bridge()
    http = server.servers[0]
    silent = socket.create_connection(("127.0.0.1", server.http_port), timeout=20)
    assert wait_until(lambda: http.waiting)
    stopping = gevent.spawn(server.stop, 15)
    assert closed_by_server(silent)  # after a short grace, well before the stop's own bound
    assert stopping.join(timeout=20) is None and stopping.successful()
    silent.close()


def open_files_limit(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no open files limit")


def test_the_open_files_limit_is_raised_at_start(tmp_path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard <= 512:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise to")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    server = serve(f"sqlite:///{tmp_path}/nofile.db", workers=2, cwd=tmp_path, preexec_fn=low_soft_limit)
    try:
        for pid in (server.process.pid, *server.worker_pids()):
            assert open_files_limit(pid) == (hard, hard)
        # and with that limit, more than 256 clients are served at once
        socks = [connect(server) for _ in range(300)]
        for sock in socks:
            sock.sendall(HEALTH)
        for sock in socks:
            assert response(sock)[0].startswith(b"HTTP/1.1 200")
        for sock in socks:
            sock.close()
    finally:
        assert server.stop() == 0, server.err[-3000:]
