"""`esl-bridge serve --workers 2` as real processes: both workers answer on one port, share what
must be shared (documents, tokens, the hotdesk PIN lockout, /metrics), tell FreeSWITCH about a
write once, survive a killed worker, reload on SIGHUP and stop cleanly on SIGTERM."""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator

import gevent
import pytest
import requests
from fake_freeswitch import FakeFreeSwitch
from fixtures_web import FREESWITCH_SECRET, database_for, fresh_database, make_account
from serve_process import ESL_BRIDGE, Serve, serve
from test_actions_support import wait_until

from models import account as accounts
from models import db
from models import device as devices

pytestmark = [pytest.mark.store,
              pytest.mark.skipif(not ESL_BRIDGE.exists(), reason="the esl-bridge script is not installed")]

SECRET = {"X-ESL-Bridge-Secret": FREESWITCH_SECRET}
#: Seconds a PostgreSQL notification may take to show (generous: the machine is shared).
NOTICE = 3.0


@pytest.fixture(scope="module")
def freeswitch() -> Iterator[FakeFreeSwitch]:
    fake = FakeFreeSwitch(switchname="fs1").start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def office(tmp_path_factory, freeswitch) -> Iterator[dict]:
    """Two workers over one database and one FreeSWITCH; an account with its API key."""
    url = database_for(tmp_path_factory.mktemp("workers"), "workers.db")
    fresh_database(url)
    account_id, key, _ = make_account()
    # PostgreSQL: documents stay cached ten minutes unless a write says otherwise (SQLite: no cache).
    server = serve(url, "--freeswitch", freeswitch.node, "--freeswitch-secret", FREESWITCH_SECRET,
                   "--document-cache-seconds", "600", workers=2, cwd=tmp_path_factory.mktemp("cwd"))
    yield {"server": server, "account_id": account_id, "key": key, "fs": freeswitch}
    assert server.stop() == 0, server.err[-3000:]
    db.database.close_all()


def token(session: requests.Session, server: Serve, key: str) -> str:
    response = session.put(f"{server.url}/v2/api_auth", json={"data": {"api_key": key}}, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["auth_token"]


def worker_clients(office: dict) -> list[tuple[int, requests.Session, str]]:
    """(pid, session, base URL of the account) for each worker, the sessions authenticated."""
    server = office["server"]
    out = []
    for pid, session in sorted(server.per_worker().items()):
        session.headers["X-Auth-Token"] = token(session, server, office["key"])
        out.append((pid, session, f"{server.url}/v2/accounts/{office['account_id']}"))
    return out


def test_two_workers_answer_on_one_port(office) -> None:
    server = office["server"]
    pids = set(server.per_worker())
    assert pids == server.worker_pids() and len(pids) == 2
    for pid, session in server.per_worker().items():
        data = session.get(f"{server.url}/health", timeout=10).json()["data"]
        assert data["worker"] == {"pid": pid, "workers": 2} and data["database"]["ok"] is True


def test_a_write_in_one_worker_is_read_by_the_other(office) -> None:
    (_, a, base), (_, b, _) = worker_clients(office)
    created = a.put(f"{base}/devices", json={"data": {"name": "desk", "sip": {"username": "3001",
                                                                                "password": "secret1"}}},
                    timeout=10)
    assert created.status_code == 201, created.text
    device = created.json()["data"]
    url = f"{base}/devices/{device['id']}"
    read = b.get(url, timeout=10)
    assert read.status_code == 200 and read.json()["data"]["name"] == "desk"
    # Each worker has just read the device (on PostgreSQL, each now remembers it) when the other
    # writes it: the very next read, in the worker that did not write, gives the new revision.
    for turn in range(20):
        writer, reader = (a, b) if turn % 2 else (b, a)
        assert writer.get(url, timeout=10).status_code == 200
        assert reader.get(url, timeout=10).status_code == 200
        if turn < 2:  # PostgreSQL: the reads were kept (SQLite keeps none)
            for worker in (writer, reader):
                caches = worker.get(f"{office['server'].url}/health", timeout=10).json()["data"]
                assert caches.get("document_cache", {"entries": 1})["entries"] >= 1
        patched = writer.patch(url, json={"data": {"name": f"desk {turn}"}}, timeout=10)
        assert patched.status_code == 200, patched.text
        again = reader.get(url, timeout=10)
        assert again.json()["data"]["name"] == f"desk {turn}"
        assert again.json()["revision"] == patched.json()["revision"]
    # A token minted by one worker works in the other; a sub-account made in one is known to both.
    other_token = token(a, office["server"], office["key"])
    assert b.get(base, headers={"X-Auth-Token": other_token}, timeout=10).status_code == 200
    child = a.put(base, json={"data": {"name": "branch", "realm": "branch.test"}}, timeout=10)
    assert child.status_code == 201, child.text
    child_base = f"{office['server'].url}/v2/accounts/{child.json()['data']['id']}"
    assert b.get(child_base, timeout=10).json()["data"]["name"] == "branch"
    assert b.get(url, timeout=10).status_code == 200
    assert a.delete(url, timeout=10).status_code == 200
    assert b.get(url, timeout=10).status_code == 404


def test_a_write_by_another_process_reaches_both_workers(office) -> None:
    """As a write through another host would: PostgreSQL's notification is all the workers get
    (their cache would otherwise keep the device ten minutes)."""
    clients = worker_clients(office)
    base = clients[0][2]
    created = clients[0][1].put(f"{base}/devices", json={"data": {"name": "lobby", "sip": {
        "username": "3002", "password": "secret2"}}}, timeout=10)
    assert created.status_code == 201, created.text
    url = f"{base}/devices/{created.json()['data']['id']}"
    for _, session, _ in clients:
        assert session.get(url, timeout=10).json()["data"]["name"] == "lobby"
    with db.database.connection_context():
        devices.update_device(accounts.get_account(office["account_id"]), created.json()["data"]["id"],
                              {"name": "lobby east"}, merge=True)
    for _, session, _ in clients:
        # Well before the workers' own checks of what they hold (every 10 s here) would see it.
        assert wait_until(lambda s=session: s.get(url, timeout=10).json()["data"]["name"] == "lobby east",
                          NOTICE)


def test_writers_in_both_workers_take_turns(office) -> None:
    """Writes through two workers at once: to different devices every one succeeds (none is a
    500 for a locked database or a 409, as it would be where a transaction took SQLite's write
    lock only when it came to write); to one device under one If-Match, exactly one wins."""
    server = office["server"]
    base = f"{server.url}/v2/accounts/{office['account_id']}"
    clients = []  # 4 keep-alive sessions held by each worker, of this test alone
    by_worker: dict[int, int] = {}
    for _ in range(200):
        session = requests.Session()
        pid = session.get(f"{server.url}/health", timeout=10).json()["data"]["worker"]["pid"]
        if by_worker.get(pid, 0) < 4:
            by_worker[pid] = by_worker.get(pid, 0) + 1
            session.headers["X-Auth-Token"] = token(session, server, office["key"])
            clients.append((pid, session, base))
            if len(clients) == 8:
                break
        else:
            session.close()
    assert sorted(by_worker.values()) == [4, 4]
    ids = []
    for _, session, _ in clients:
        created = session.put(f"{base}/devices", json={"data": {"name": "busy"}}, timeout=10)
        assert created.status_code == 201, created.text
        ids.append(created.json()["data"]["id"])

    def patch_often(session: requests.Session, ident: str) -> list[int]:
        return [session.patch(f"{base}/devices/{ident}", json={"data": {"n": n}}, timeout=20).status_code
                for n in range(15)]

    jobs = [gevent.spawn(patch_often, session, ident) for (_, session, _), ident in zip(clients, ids, strict=True)]
    gevent.joinall(jobs, raise_error=True)
    assert [status for job in jobs for status in job.value] == [200] * 15 * len(clients)

    contested = ids[0]
    etag = clients[0][1].get(f"{base}/devices/{contested}", timeout=10).headers["ETag"]
    racers = [gevent.spawn(session.patch, f"{base}/devices/{contested}", json={"data": {"winner": i}},
                           headers={"If-Match": etag}, timeout=20)
              for i, (_, session, _) in enumerate(clients)]
    gevent.joinall(racers, raise_error=True)
    statuses = sorted(job.value.status_code for job in racers)
    assert statuses.count(200) == 1 and set(statuses) <= {200, 409, 412}, statuses
    for _, session, _ in clients:
        session.close()


def test_the_pin_lockout_counts_guesses_made_through_every_worker(office) -> None:
    (_, a, base), (_, b, _) = worker_clients(office)
    user = a.put(f"{base}/users", json={"data": {"first_name": "Bob", "last_name": "Pin", "hotdesk": {
        "enabled": True, "id": "700", "pin": "4321", "require_pin": True}}}, timeout=10)
    assert user.status_code == 201, user.text
    for desk in ("3101", "3102", "3103", "3104", "3105", "3106"):
        assert a.put(f"{base}/devices", json={"data": {"name": desk, "sip": {
            "username": desk, "password": "secret1"}}}, timeout=10).status_code == 201
    url = f"{office['server'].url}/freeswitch/hotdesk/login"

    def login(session: requests.Session, desk: str, pin: str) -> str:
        form = {"sip_user": desk, "realm": "acme.test", "hotdesk_id": "700", "pin": pin}
        response = session.post(url, data=form, headers=SECRET, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["result"]

    # Five wrong PINs (the limit) from five phones, alternating between the workers: each worker
    # saw only two or three of them, all five count.
    for n, desk in enumerate(("3101", "3102", "3103", "3104", "3105")):
        assert login((a, b)[n % 2], desk, "0000") == "invalid_pin"
    assert login(a, "3106", "4321") == "too_many_attempts"
    assert login(b, "3106", "4321") == "too_many_attempts"


def test_a_device_change_reaches_freeswitch_once(office) -> None:
    fake, server = office["fs"], office["server"]
    clients = worker_clients(office)
    deadline = time.monotonic() + 20
    while not all(s.get(f"{server.url}/health", timeout=10).json()["data"]["freeswitch_connected"]
                  for _, s, _ in clients):
        assert time.monotonic() < deadline, "the workers did not connect to FreeSWITCH"
        gevent.sleep(0.05)
    (_, a, base), (_, b, _) = clients
    device = a.put(f"{base}/devices", json={"data": {"name": "flush", "sip": {
        "username": "3201", "password": "secret1"}}}, timeout=10).json()["data"]
    before = len(fake.received("api xml_flush_cache"))
    assert b.patch(f"{base}/devices/{device['id']}", json={"data": {"sip": {"password": "secret2"}}},
                   timeout=10).status_code == 200
    assert fake.wait_for(lambda: len(fake.received("api xml_flush_cache")) > before, timeout=10)
    gevent.sleep(0.5)  # time for a second worker's flush, if one were (wrongly) sent
    assert fake.received("api xml_flush_cache")[before:] == ["api xml_flush_cache id 3201 acme.test"]


def test_metrics_add_up_every_worker(office) -> None:
    server = office["server"]
    sessions = server.per_worker()

    def count(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('esl_bridge_http_requests_total{endpoint="/health",method="GET",status="200"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    first = next(iter(sessions.values()))
    before = count(first.get(f"{server.url}/metrics", timeout=10).text)
    for session in sessions.values():
        for _ in range(3):
            assert session.get(f"{server.url}/health", timeout=10).status_code == 200
    for session in sessions.values():  # whichever worker answers the scrape
        assert count(session.get(f"{server.url}/metrics", timeout=10).text) == before + 6
    text = first.get(f"{server.url}/metrics", timeout=10).text
    assert f'esl_bridge_esl_node_up{{node="{office["fs"].name}"}}' in text


def test_a_killed_worker_is_replaced_while_the_other_answers(office) -> None:
    server = office["server"]
    (victim, _), (survivor, session) = sorted(server.per_worker().items())
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        # The other worker answers all along, on the connection it holds and on new ones.
        assert session.get(f"{server.url}/health", timeout=10).json()["data"]["worker"]["pid"] == survivor
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
        pids = server.worker_pids()
        if len(pids) == 2 and victim not in pids:
            break
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        gevent.sleep(0.05)
    newcomer = (pids - {survivor}).pop()
    _, held = server.session_of(newcomer)
    assert held.get(f"{server.url}/health", timeout=10).json()["data"]["worker"]["pid"] == newcomer


def test_sighup_replaces_the_workers_sigusr2_is_refused_and_sigterm_drains_then_stops_all(tmp_path, tmp_path_factory) -> None:
    url = database_for(tmp_path_factory.mktemp("stop"), "workers.db")
    fresh_database(url)
    account_id, key, _ = make_account()
    server = serve(url, workers=2, cwd=tmp_path)
    try:
        old = server.worker_pids()
        # SIGUSR2 would start a second master beside this one (gunicorn's binary upgrade): refused.
        server.process.send_signal(signal.SIGUSR2)
        gevent.sleep(0.5)
        assert server.worker_pids() == old
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while server.worker_pids() & old or len(server.worker_pids()) != 2:
            assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
            assert time.monotonic() < deadline, "SIGHUP did not replace the workers"
            gevent.sleep(0.05)
        workers = server.worker_pids()
        # A request in flight when SIGTERM arrives: its body is half sent.
        session = requests.Session()
        auth = token(session, server, key)
        body = json.dumps({"data": {"name": "late"}}).encode()
        conn = socket.create_connection(("127.0.0.1", server.port))
        conn.sendall(f"PUT /v2/accounts/{account_id}/devices HTTP/1.1\r\nHost: x\r\n"
                     f"X-Auth-Token: {auth}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
        session.close()
        gevent.sleep(0.3)  # the worker has read the headers and waits for the rest
        server.process.send_signal(signal.SIGTERM)
        gevent.sleep(0.3)
        conn.sendall(body[5:])
        conn.settimeout(20)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        conn.close()
        assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    finally:
        code = server.stop()
    assert code == 0, server.err[-3000:]
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]
    assert "Traceback" not in server.err
    assert "SIGUSR2 ignored" in server.err
