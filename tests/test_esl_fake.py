"""The test FreeSWITCH's own behaviour: its encoder, its clock-exact events, how it serves
connections, its faults and its worker processes.

These tests read the fake with a raw socket (not esl_bridge), so that the reference the rest of
the suite relies on is checked on its own; ``test_freeswitch_conformance.py`` replays the
recordings of a real FreeSWITCH against it.
"""
from __future__ import annotations

import itertools
import select
import socket
from pathlib import Path
from urllib.parse import unquote

import gevent
import pytest
from conformance import DATA, Client, rec
from fake_freeswitch import (
    FakeFreeSwitch,
    _epoch,
    fs_url_encode,
)

CORE_UUID = "0c55becc-4a7e-478f-979a-0dad9aee2bfa"


@pytest.fixture
def pinned(fake_freeswitch_factory):
    """A fake whose clock, Core-UUID and host match the esl2 recordings."""
    now = [_epoch("2026-11-25 18:54:17")]
    fake = fake_freeswitch_factory(switchname="vm", clock=lambda: now[0], core_uuid=CORE_UUID)

    def at(stamp_us: int, sequence: int) -> None:
        now[0] = stamp_us / 1_000_000
        fake._sequence = itertools.count(sequence)

    fake.at = at
    fake.now = now
    return fake


def register_recorded(fake: FakeFreeSwitch, user: str, event: bool = False, **kwargs):
    port, call_id = {"2001": (50541, "lab01-5b4b2ad167-1"),
                     "2002": (50549, "lab01-2c65931b5f-1")}[user]
    return fake.register(user, "acme.test", network_port=port, call_id=call_id,
                         user_agent=f"SIPp-lab01-phone{user}", event=event, **kwargs)


# ---------------------------------------------------------------------- encoder


def recorded_events() -> list[Path]:
    return sorted(p for p in DATA.glob("esl*/*_plain.txt"))


def test_url_encoder_reproduces_every_recorded_event_header():
    checked = 0
    for path in recorded_events():
        raw = path.read_text()
        _, _, inner = raw.partition("\n\n")
        head = inner.partition("\n\n")[0]
        for line in head.split("\n"):
            name, _, value = line.partition(": ")
            if name == "Content-Length":
                continue
            assert fs_url_encode(unquote(value)) == value, (path.name, name, value)
            checked += 1
    assert checked > 1000
    # What the recordings show: = and @ and space escaped; , ' / - . left alone.
    assert fs_url_encode("{a=b,c='D E'}user/1@x.y 9 XML d") == \
        "%7Ba%3Db,c%3D'D%20E'%7Duser/1%40x.y%209%20XML%20d"


def test_url_encoder_rules():
    assert fs_url_encode("\r\n \"#%&+:;<=>?@[\\]^`{|}") == \
        "%0D%0A%20%22%23%25%26%2B%3A%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D"
    assert fs_url_encode("é\x7f\x01~") == "%C3%A9%7F%01~"
    # switch_url_encode does not double-encode: an existing %XX (upper-case hex) passes as is,
    # which is how a phone can put "%0A" in a header value.
    assert fs_url_encode("x%0Ay") == "x%0Ay"
    assert fs_url_encode("x%0ay") == "x%250ay"
    assert fs_url_encode("50% off") == "50%25%20off"


# ---------------------------------------------------------------------- replies


def test_shutdown_notice_on_stop(fake_freeswitch):
    authed = Client(fake_freeswitch.port).login()
    anonymous = Client(fake_freeswitch.port)
    assert anonymous.frame() == rec("01_connect_banner.txt")
    fake_freeswitch.stop()
    assert authed.frame() == rec("80_shutdown_client_authed_no_events.txt")
    assert anonymous.frame() == rec("82_shutdown_client_unauthenticated.txt")
    assert authed.at_eof() and anonymous.at_eof()


def test_xmlstatus_encodes_each_field_as_mod_sofia_does(fake_freeswitch):
    """``show_reg_callback_xml``: contact and agent amp-encoded, sip-auth-user URL-encoded, the
    Call-ID and the user as they are (not in the recordings: their values are plain)."""
    raw = Client(fake_freeswitch.port).login()
    fake_freeswitch.register("a+b", "acme.test", event=False, call_id="c<1>&x",
                             user_agent="Tom's <Phone> & co", contact="<sip:a+b@10.0.0.1>")
    answer = raw.ask("api sofia xmlstatus profile internal user a+b@acme.test").decode()
    assert "        <call-id>c<1>&x</call-id>\n" in answer
    assert "        <user>a+b@acme.test</user>\n" in answer
    assert "        <contact>&lt;sip:a+b@10.0.0.1&gt;</contact>\n" in answer
    assert "        <agent>Tom&apos;s &lt;Phone&gt; &amp; co</agent>\n" in answer
    assert "        <sip-auth-user>a%2Bb</sip-auth-user>\n" in answer


def test_register_and_unregister_events_as_recorded(pinned):
    listener = Client(pinned.port).login()
    listener.ask("event plain CUSTOM sofia::register sofia::unregister sofia::expire")
    pinned.at(1795632857005607, 112255)
    register_recorded(pinned, "2001", event=True, variables={
        "esl_bridge_device_id": "0123456789abcdef0123456789abcdef",
        "esl_bridge_account_id": "fedcba9876543210fedcba9876543210"})
    assert listener.frame() == rec("101_event_CUSTOM_sofia_register_2001_plain.txt")
    register_recorded(pinned, "2002")
    pinned.at(1795632858685611, 112278)
    pinned.unregister("2002", "acme.test")
    assert listener.frame() == rec("104_event_CUSTOM_sofia_unregister_2002_plain.txt")


# ---------------------------------------------------------------------- jobs and calls

ORIGINATE_2001 = rec("113_bgapi_originate_quickcall_2001_job_uuid_reply.sent.txt").decode()[:-2]


@pytest.mark.parametrize("job_file, sent_file, stamp, sequence", [
    ("116_event_BACKGROUND_JOB_quickcall_ok_plain.txt",
     "113_bgapi_originate_quickcall_2001_job_uuid_reply.sent.txt", 1795632859745597, 112307),
    ("120b_event_BACKGROUND_JOB_unregistered_2004_plain.txt",
     "120a_bgapi_originate_unregistered_2004_reply.sent.txt", 1795632861785644, 112331),
    ("121b_event_BACKGROUND_JOB_ring_only_2005_timeout5_plain.txt",
     "121a_bgapi_originate_ring_only_2005_timeout5_reply.sent.txt", 1795632867005600, 112351),
    ("122b_event_BACKGROUND_JOB_busy_2006_plain.txt",
     "122a_bgapi_originate_busy_2006_reply.sent.txt", 1795632868045597, 112379),
])
def test_background_job_events_as_recorded(pinned, job_file, sent_file, stamp, sequence):
    first, job_line = rec(sent_file).decode()[:-2].split("\n")
    arg = first.split(" ", 2)[2]
    body = rec(job_file).decode().rsplit("\n\n", 1)[1]
    pinned.at(stamp, sequence)
    frame = pinned.background_job(job_line.split(": ")[1], "originate", arg, body)
    assert frame == rec(job_file)


def events_of(raw: Client, count: int) -> list[dict[str, str]]:
    found = []
    for _ in range(count):
        frame = raw.frame().decode()
        inner = frame.partition("\n\n")[2]
        head, _, body = inner.partition("\n\n")
        headers = {}
        for line in head.split("\n"):
            name, _, value = line.partition(": ")
            headers[name] = unquote(value)
        headers["_body"] = body
        headers["_names"] = [line.partition(": ")[0] for line in head.split("\n")]
        found.append(headers)
    return found


@pytest.mark.parametrize("setup, cause, channel_events", [
    (lambda f: None, "USER_NOT_REGISTERED", 0),
    (lambda f: f.set_behaviour("2001", "acme.test", "unknown"), "SUBSCRIBER_ABSENT", 0),
    (lambda f: (f.register("2001", "acme.test", event=False),
                f.set_behaviour("2001", "acme.test", "no_answer")), "NO_ANSWER", 2),
    (lambda f: (f.register("2001", "acme.test", event=False),
                f.set_behaviour("2001", "acme.test", "busy")), "USER_BUSY", 2),
])
def test_originate_failures(fake_freeswitch, setup, cause, channel_events):
    listener = Client(fake_freeswitch.port).login()
    listener.ask("event plain BACKGROUND_JOB CHANNEL_CREATE CHANNEL_ANSWER "
                 "CHANNEL_HANGUP_COMPLETE")
    setup(fake_freeswitch)
    raw = Client(fake_freeswitch.port).login()
    raw.ask(ORIGINATE_2001.replace("originate_timeout=30", "originate_timeout=5"))
    events = events_of(listener, channel_events + 1)
    assert [e["Event-Name"] for e in events] == \
        ["CHANNEL_CREATE", "CHANNEL_HANGUP_COMPLETE"][:channel_events] + ["BACKGROUND_JOB"]
    assert events[-1]["_body"] == f"-ERR {cause}\n"
    assert events[-1]["Job-UUID"] == "a9061ffb-bfdd-4924-8ee7-a8c5ddb85f44"
    if channel_events:
        assert events[1]["Hangup-Cause"] == cause


def test_unknown_realm_and_directory_callable(fake_freeswitch_factory):
    fake = fake_freeswitch_factory(directory=lambda user, realm: realm == "acme.test")
    raw = Client(fake.port).login()
    assert raw.ask("api originate user/2001@evil.test &echo").endswith(b"-ERR SUBSCRIBER_ABSENT\n")
    assert raw.ask("api originate user/2001@acme.test &echo").endswith(
        rec("52_api_originate_unregistered_1005.txt").partition(b"\n\n")[2])


def test_job_event_can_arrive_before_the_reply(fake_freeswitch):
    fake_freeswitch.job_event_before_reply = True
    listener = Client(fake_freeswitch.port).login()
    listener.ask("event plain BACKGROUND_JOB")
    raw = Client(fake_freeswitch.port).login()
    raw.send("bgapi status\nJob-UUID: 11111111-2222-3333-4444-555555555555")
    job = events_of(listener, 1)[0]
    assert job["Job-UUID"] == "11111111-2222-3333-4444-555555555555"
    assert job["Job-Command"] == "status" and "Job-Command-Arg" not in job
    assert raw.frame().startswith(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: 1111")


# ---------------------------------------------------------------------- connection behaviour


def test_msleep_holds_only_its_own_connection(fake_freeswitch):
    sleeper = Client(fake_freeswitch.port).login()
    other = Client(fake_freeswitch.port).login()
    sleeper.send("api msleep 300")
    gevent.sleep(0.01)
    assert other.ask("api status") == rec("04_api_status.txt")
    # the sleeper has not answered yet: its connection is held, the other one was not
    assert not select.select([sleeper.sock], [], [], 0)[0]
    assert sleeper.frame() == rec("124_api_msleep_50.txt")


def test_events_wait_while_a_command_runs_on_that_connection(fake_freeswitch):
    listener = Client(fake_freeswitch.port).login()
    listener.ask("event plain CUSTOM sofia::register")
    listener.send("api msleep 200")
    gevent.sleep(0.01)
    fake_freeswitch.register("2001", "acme.test")
    first = listener.frame()
    assert first.startswith(b"Content-Type: api/response")  # the event waited for the command
    assert b"sofia%3A%3Aregister" in listener.frame()


def test_faults_slow_hang_drop_close(fake_freeswitch):
    fake_freeswitch.slow("api status", 0.05, times=1)
    fake_freeswitch.hang("api version", times=1)
    fake_freeswitch.drop_mid_reply("api msleep", times=1)
    raw = Client(fake_freeswitch.port).login()
    assert raw.ask("api status") == rec("04_api_status.txt")
    raw.send("api version")
    gevent.sleep(0.05)
    assert not select.select([raw.sock], [], [], 0)[0]
    raw.close()
    dropped = Client(fake_freeswitch.port).login()
    dropped.send("api msleep 1")
    data = dropped.file.read()
    assert 0 < len(data) < len(rec("124_api_msleep_50.txt"))
    again = Client(fake_freeswitch.port).login()
    assert again.ask("api version") == rec("08_api_version.txt")  # the hang was for one time
    fake_freeswitch.close_on("api status")
    again.send("api status")
    assert again.at_eof()


def test_refuse_restart_and_hang_on_connect(fake_freeswitch):
    port = fake_freeswitch.port
    fake_freeswitch.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    fake_freeswitch.accept_connections()
    live = Client(fake_freeswitch.port).login()
    fake_freeswitch.restart()
    assert fake_freeswitch.port == port
    assert live.frame() == rec("80_shutdown_client_authed_no_events.txt")
    Client(fake_freeswitch.port).login()
    fake_freeswitch.hang_on_connect = True
    silent = Client(fake_freeswitch.port)
    assert not select.select([silent.sock], [], [], 0.05)[0]


def test_inject_and_kill(fake_freeswitch):
    listener = Client(fake_freeswitch.port).login()
    listener.ask("event plain BACKGROUND_JOB")
    other = Client(fake_freeswitch.port).login()
    assert fake_freeswitch.inject(b"garbage\n\n") == 1
    assert listener.frame() == b"garbage\n\n"
    fake_freeswitch.kill_connections()
    assert listener.at_eof() and other.at_eof()


def _read_frame(file) -> bytes:
    """One frame from a blocking file: the head, then the body its Content-Length announces."""
    head = b""
    while not head.endswith(b"\n\n"):
        line = file.readline()
        assert line, "connection closed"
        head += line
    for line in head.splitlines():
        if line.startswith(b"Content-Length: "):
            return head + file.read(int(line.split(b": ")[1]))
    return head


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes


def _server_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the fake's side of the TCP connection from ``client_port`` (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            return fields[9]
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_workers_serve_whole_connections_in_separate_processes():
    """``--workers 2``: two processes accept on one socket, each serving the connections it took
    (the benchmark's model of FreeSWITCH's thread per connection); SIGTERM ends both."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parent / "fake_freeswitch"
    child = subprocess.Popen([sys.executable, str(script), "--workers", "2"],
                             stdout=subprocess.PIPE, text=True)
    try:
        node, *pids = child.stdout.readline().split()
        workers = [int(pid) for pid in pids]
        assert len(workers) == 2 and workers[0] == child.pid
        port = int(node.split(":")[1])
        holders: dict[int, int] = {pid: 0 for pid in workers}
        clients = []
        while min(holders.values()) == 0 and len(clients) < 64:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            clients.append(sock)
            file = sock.makefile("rb")
            assert file.readline() == b"Content-Type: auth/request\n"
            file.readline()
            sock.sendall(b"auth ClueCon\n\napi status\n\n")
            assert b"Reply-Text: +OK accepted\n" in _read_frame(file)
            assert b"is ready" in _read_frame(file)
            inode = _server_inode(port, sock.getsockname()[1])
            owners = [pid for pid in workers if inode in _socket_inodes(pid)]
            assert len(owners) == 1, owners
            holders[owners[0]] += 1
        assert min(holders.values()) > 0, holders
    finally:
        child.terminate()
        assert child.wait(timeout=10) == 0
        for sock in clients:
            sock.close()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
