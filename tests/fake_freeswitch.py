"""A test FreeSWITCH: an event socket on port 0 that speaks the recorded wire format.

Everything it writes is modelled on the bytes a real FreeSWITCH 1.10 sent
(``tests/data/freeswitch/esl*/``, copied from ``../shared/freeswitch/``): the same framing, header
order, URL-encoding (``switch_url_encode``: ``%XX`` for control bytes, bytes above 0x7e and
``\\r\\n "#%&+:;<=>?@[\\]^`{|}``, an existing ``%XX`` with upper-case hex left alone) and
Content-Length. Events are built from the recorded events used as templates, with the values of
this fake's state substituted; ``tests/test_esl_fake.py`` checks them byte for byte.

What it knows (state, all public attributes):

- ``registrations``: ``FakeRegistration`` rows (user, realm, profile, contact, network ip/port,
  call-id, user agent, presence id, directory variables). ``register()``, ``unregister()`` and
  ``expire()`` change them and fire ``sofia::register|unregister|expire`` exactly as recorded.
- ``channels``: live calls created by originate (``FakeChannel``), until ``uuid_kill``.
- ``commands``: the full text of every command received, on every connection, in order (first
  line and header lines of ``sendevent``/``bgapi``, without the ending blank line).
- ``sent_events``: ``(event name, headers dict)`` of every ``sendevent``.
- ``directory_cache``: (user, realm) pairs ``xml_flush_cache`` can clear (a registration or an
  originate caches its user, as ``cacheable`` directory answers do).

How it serves: one greenlet per connection, as FreeSWITCH uses one thread per connection: it
reads a command byte by byte and never ahead (as mod_event_socket's ``read_packet``), runs it,
writes the reply, and writes events only between commands. So ``msleep`` holds its own
connection and nothing else, and commands pipelined on one connection are served one by one.

Who is known: every user of every realm is known (a registered user rings, an unregistered one
gives ``-ERR USER_NOT_REGISTERED``) unless ``set_behaviour(user, realm, "unknown")`` or a
``directory(user, realm) -> bool`` callable given to the constructor says otherwise
(``-ERR SUBSCRIBER_ABSENT``).

Per-user behaviours (``set_behaviour``): ``answer`` (default: CHANNEL_CREATE, then after
``answer_delay`` CHANNEL_ANSWER and ``+OK <uuid>``), ``no_answer`` (rings ``originate_timeout``
seconds times ``time_scale``, then ``-ERR NO_ANSWER``), ``busy`` (``-ERR USER_BUSY``), ``hang``
(rings forever), ``unknown`` (``-ERR SUBSCRIBER_ABSENT``).

Faults: ``slow(prefix, seconds)``, ``hang(prefix)``, ``drop_mid_reply(prefix)`` and
``close_on(prefix)`` act on commands whose first line starts with ``prefix`` (optionally only
``times`` times); ``refuse_connections()``/``accept_connections()`` close and reopen the listener
(live connections stay); ``kill_connections()`` cuts every connection without a word;
``stop()`` sends the shutdown notice then closes (``stop(notice=False)`` = killed);
``start()`` again reuses the same port; ``restart(down_for)``; ``hang_on_connect`` (no
``auth/request``); ``stall_reads`` (reads nothing, so big writes block); ``inject(raw bytes)`` to event connections or all connections;
``job_event_before_reply`` makes ``BACKGROUND_JOB`` arrive before the ``bgapi`` reply;
``api_handlers[name] = fn(fake, args) -> str | bytes`` adds or replaces an api command.

Run it alone with ``python tests/fake_freeswitch.py [--port N] [--workers N]`` (the benchmark
does; see ``main``).
"""
from __future__ import annotations

import argparse
import calendar
import itertools
import logging
import time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import gevent
import gevent.event
import gevent.lock
from gevent import socket
from gevent.server import StreamServer

log = logging.getLogger("fake_freeswitch")

DATA = Path(__file__).resolve().parent / "data" / "freeswitch"

# ---------------------------------------------------------------------------- wire helpers

_URL_UNSAFE = set(b'\r\n "#%&+:;<=>?@[\\]^`{|}')
_UPPER_HEX = set(b"0123456789ABCDEF")


def fs_url_encode(value: str) -> str:
    """``switch_url_encode`` (``double_encode`` false), on the UTF-8 bytes of ``value``."""
    data = value.encode("utf-8")
    out = []
    size = len(data)
    for i, byte in enumerate(data):
        if (byte == 0x25 and i + 2 < size and data[i + 1] in _UPPER_HEX
                and data[i + 2] in _UPPER_HEX):
            out.append("%")  # an existing %XX escape is passed through
        elif byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def serialize_event(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """A ``text/event-plain`` frame as ``switch_event_serialize`` + mod_event_socket write it."""
    lines = "".join(f"{name}: {fs_url_encode(value) if value != '' else '_undef_'}\n"
                    for name, value in headers)
    if body:
        payload = (lines + f"Content-Length: {len(body.encode('utf-8'))}\n\n" + body).encode()
    else:
        payload = (lines + "\n").encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(payload) + payload


def api_response(body: bytes | str) -> bytes:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def command_reply(text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    head = f"Content-Type: command/reply\nReply-Text: {text}\n"
    for name, value in extra or ():
        head += f"{name}: {value}\n"
    return (head + "\n").encode("utf-8")


def disconnect_notice(body: str) -> bytes:
    data = body.encode("utf-8")
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(data) + data


#: mod_event_socket's read_packet ends a command at 10 MiB (max_len)
MAX_COMMAND = 10485760
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTDOWN = "The system is being shut down.\n"
AUTH_REQUEST = b"Content-Type: auth/request\n\n"


def _read_recording(relative: str) -> bytes:
    return (DATA / relative).read_bytes()


def _template(relative: str) -> tuple[list[tuple[str, str]], str]:
    """A recorded plain event as ``[(name, decoded value)]`` and its body (no Content-Length)."""
    raw = _read_recording(relative).decode("utf-8")
    _, _, inner = raw.partition("\n\n")
    head, _, rest = inner.partition("\n\n")
    headers = []
    body = ""
    for line in head.split("\n"):
        name, _, value = line.partition(": ")
        if name == "Content-Length":
            body = rest[: int(value)]
            continue
        headers.append((name, unquote(value)))
    return headers, body


def _event_templates(relative: str) -> list[tuple[list[tuple[str, str]], str]]:
    """Every plain event of a recording holding several frames, as ``_template`` reads one."""
    raw = _read_recording(relative).decode("utf-8")
    events = []
    while raw:
        head, _, rest = raw.partition("\n\n")
        outer = dict(line.split(": ", 1) for line in head.split("\n"))
        size = int(outer["Content-Length"])
        inner, raw = rest[:size], rest[size:]
        if outer.get("Content-Type") != "text/event-plain":
            continue
        headers = [(name, unquote(value)) for name, _, value in
                   (line.partition(": ") for line in inner.rstrip("\n").split("\n"))]
        events.append((headers, ""))
    return events


def _api_body(relative: str) -> bytes:
    raw = _read_recording(relative)
    return raw.partition(b"\n\n")[2]


STATUS_BODY = _api_body("esl/04_api_status.txt")
VERSION_BODY = _api_body("esl/08_api_version.txt")
T_REGISTER = _template("esl2/101_event_CUSTOM_sofia_register_2001_plain.txt")
T_EXPIRE = _template("esl2/102_event_CUSTOM_sofia_expire_flush_inbound_reg_2001_plain.txt")
T_UNREGISTER = _template("esl2/104_event_CUSTOM_sofia_unregister_2002_plain.txt")
T_CREATE = _template("esl2/114_event_CHANNEL_CREATE_quickcall_plain.txt")
T_ANSWER = _template("esl2/115_event_CHANNEL_ANSWER_quickcall_plain.txt")
T_HANGUP = _template("esl2/118_event_CHANNEL_HANGUP_COMPLETE_quickcall_plain.txt")
T_JOB = _template("esl2/116_event_BACKGROUND_JOB_quickcall_ok_plain.txt")
#: What a connection subscribed to them gets as FreeSWITCH shuts down, before the notice
#: (esl/81, without the API event of the recording's ``api shutdown``): SHUTDOWN, a
#: MODULE_UNLOAD per module, sofia's UNPUBLISH.
T_SHUTDOWN_EVENTS = [event for event in _event_templates("esl/81_shutdown_client_event_plain_ALL.txt")
                     if dict(event[0])["Event-Name"] != "API"]

# The directory variables at the end of the recorded register event, and the originate's
# {variables} in the recorded channel events: replaced by this fake's own.
_RECORDED_DIRECTORY_VARS = ("esl_bridge_device_id", "esl_bridge_account_id")
_RECORDED_ORIGINATE_VARS = tuple(
    f"variable_{name}" for name in (
        "origination_uuid", "origination_caller_id_name", "origination_caller_id_number",
        "effective_caller_id_name", "effective_caller_id_number", "originate_timeout",
        "ignore_early_media", "sip_auto_answer", "esl_bridge_account_id",
        "esl_bridge_device_id"))
_COMMON = ("Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
           "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp",
           "Event-Sequence")


def xml_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def amp_encode(text: str) -> str:
    """``switch_amp_encode``: what xmlstatus does to ``contact`` and ``agent``."""
    return xml_escape(text).replace("'", "&apos;")


#: How mod_sofia's ``show_reg_callback_xml`` writes each xmlstatus field: ``contact`` and
#: ``agent`` amp-encoded, ``sip-auth-user`` URL-encoded, every other one as it is (a phone's
#: Call-ID may hold ``<``, ``>`` and ``/``).
XMLSTATUS_ENCODING: dict[str, Callable[[str], str]] = {
    "contact": amp_encode, "agent": amp_encode, "sip-auth-user": fs_url_encode}


# ---------------------------------------------------------------------------- state


@dataclass
class FakeRegistration:
    """One registration held by the fake (see ``FakeFreeSwitch.register``)."""

    user: str
    realm: str
    profile: str = "internal"
    network_ip: str = "127.0.0.1"
    network_port: int = 5070
    call_id: str = ""
    user_agent: str = ""
    contact: str = ""
    presence_id: str = ""
    expires: int = 3600
    context: str = "default"
    variables: dict[str, str] = field(default_factory=dict)
    registered_at: float = 0.0

    def matches(self, user: str | None, realm: str) -> bool:
        return (self.realm.lower() == realm.lower()
                and (user is None or self.user.lower() == user.lower()))


@dataclass
class FakeChannel:
    """A call leg created by originate."""

    uuid: str
    user: str
    realm: str
    registration: FakeRegistration
    variables: list[tuple[str, str]]
    context: str
    created_us: int = 0
    answered_us: int = 0
    job_uuid: str = ""
    answered: bool = False
    #: set to the cause when the leg is hung up while it rings (uuid_kill, hupall)
    ended: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)


@dataclass
class Fault:
    kind: str  # slow | hang | drop | close
    prefix: str
    seconds: float = 0.0
    times: int | None = None


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


# ---------------------------------------------------------------------------- the server


class FakeFreeSwitch:
    """A FreeSWITCH event socket for tests (see the module docstring for the full API).

    ``node`` is ``"127.0.0.1:<port>:<password>"``, ready for ``esl_bridge.Node.parse``.
    """

    def __init__(
        self,
        password: str = "ClueCon",
        *,
        switchname: str = "vm",
        host: str = "127.0.0.1",
        port: int = 0,
        profiles: tuple[str, ...] = ("internal",),
        answer_delay: float = 0.02,
        time_scale: float = 0.01,
        directory: Callable[[str, str], bool] | None = None,
        clock: Callable[[], float] = time.time,
        core_uuid: str | None = None,
        ipv4: str = "192.0.2.2",
        ipv6: str = "fd00::2",
        sequence_start: int = 1000,
        shutdown_linger: float = 0.0,
    ) -> None:
        self.password = password
        self.switchname = switchname
        self.host = host
        self.port = port
        self.profiles = set(profiles)
        self.answer_delay = answer_delay
        self.time_scale = time_scale
        self.directory = directory
        self.clock = clock
        self.core_uuid = core_uuid or str(_uuid.uuid4())
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self._sequence = itertools.count(sequence_start)
        self.shutdown_linger = shutdown_linger

        self.registrations: list[FakeRegistration] = []
        self.channels: dict[str, FakeChannel] = {}
        self.commands: list[str] = []
        self.sent_events: list[tuple[str, dict[str, str]]] = []
        self.directory_cache: set[tuple[str, str]] = set()
        self.behaviours: dict[tuple[str, str], str] = {}
        self.faults: list[Fault] = []
        self.connections: list[FakeConnection] = []
        self.hang_on_connect = False
        #: stop reading from every connection (clients' writes then block once buffers fill)
        self.stall_reads = False
        self.job_event_before_reply = False
        self.accepted = 0
        self.api_handlers: dict[str, Callable[[FakeFreeSwitch, str], str | bytes]] = {
            "status": lambda fake, args: STATUS_BODY,
            "version": lambda fake, args: VERSION_BODY,
            "msleep": FakeFreeSwitch._api_msleep,
            "sofia": FakeFreeSwitch._api_sofia,
            "sofia_contact": FakeFreeSwitch._api_sofia_contact,
            "xml_flush_cache": FakeFreeSwitch._api_xml_flush_cache,
            "uuid_kill": FakeFreeSwitch._api_uuid_kill,
            "hupall": FakeFreeSwitch._api_hupall,
            "originate": FakeFreeSwitch._api_originate,
        }
        self._server: StreamServer | None = None
        self._greenlets: set[gevent.Greenlet] = set()
        self._changed = gevent.event.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def node(self) -> str:
        return f"{self.host}:{self.port}:{self.password}"

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> FakeFreeSwitch:
        """Listen (on the port of the previous start, if any) and serve."""
        if self._server is not None:
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._server = StreamServer(listener, self._accept)
        self._server.start()
        return self

    def refuse_connections(self) -> None:
        """Close the listening socket: new connections are refused, live ones stay."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def accept_connections(self) -> None:
        """Listen again on the same port after ``refuse_connections``."""
        self.start()

    def kill_connections(self) -> None:
        """Cut every live connection without a word (as a killed FreeSWITCH would)."""
        for conn in list(self.connections):
            conn.close()

    def stop(self, notice: bool = True) -> None:
        """Stop: shutdown notice on every connection (unless ``notice=False``), close, join."""
        self.refuse_connections()
        if notice:
            for headers, body in T_SHUTDOWN_EVENTS:
                values: dict[str, str | None] = dict(self._common(self._now()))
                self.fire(dict(headers)["Event-Name"], self._fill(headers, values), body or None)
            for conn in list(self.connections):
                if conn.busy:
                    # It is inside a command (msleep, a hang fault): FreeSWITCH writes the
                    # notice from another thread, so do we, then close.
                    conn.write(disconnect_notice(SHUTDOWN))
                    conn.close()
                else:
                    conn.deliver(disconnect_notice(SHUTDOWN), close=True)
            if self.shutdown_linger:
                gevent.sleep(self.shutdown_linger)
        else:
            self.kill_connections()
        deadline = time.monotonic() + 0.5
        while self.connections and time.monotonic() < deadline:
            gevent.sleep(0.001)
        self.kill_connections()
        deadline = time.monotonic() + 2.0
        while self.connections and time.monotonic() < deadline:
            gevent.sleep(0.001)
        gevent.killall(list(self._greenlets), timeout=2.0)
        self._greenlets.clear()

    def restart(self, down_for: float = 0.0, notice: bool = True) -> None:
        """Stop then start again on the same port (channels and jobs are lost, state stays)."""
        self.stop(notice=notice)
        self.channels.clear()
        if down_for:
            gevent.sleep(down_for)
        self.start()

    def __enter__(self) -> FakeFreeSwitch:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, fn: Callable, *args: object) -> gevent.Greenlet:
        greenlet = gevent.spawn(fn, *args)
        self._greenlets.add(greenlet)
        greenlet.link(self._greenlets.discard)
        return greenlet

    def _accept(self, sock: socket.socket, address: tuple) -> None:
        self.accepted += 1
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = FakeConnection(self, sock, address)
        self.connections.append(conn)
        try:
            conn.serve()
        finally:
            # First forget it: a kill of a busy connection may land anywhere in here.
            if conn in self.connections:
                self.connections.remove(conn)
            conn.close()
            self._changed.set()

    # ------------------------------------------------------------------ inspection

    def received(self, prefix: str = "") -> list[str]:
        """Commands received so far whose text starts with ``prefix``."""
        return [text for text in self.commands if text.startswith(prefix)]

    def wait_for(self, predicate: Callable[[], object] | str, timeout: float = 2.0) -> bool:
        """Wait until ``predicate()`` is true (or a command starting with it was received)."""
        check = (lambda: self.received(predicate)) if isinstance(predicate, str) else predicate
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(0.002)
        return True

    def event_connections(self) -> list[FakeConnection]:
        return [conn for conn in self.connections if conn.subscribed]

    def command_connections(self) -> list[FakeConnection]:
        return [conn for conn in self.connections if conn.authenticated and not conn.subscribed]

    # ------------------------------------------------------------------ behaviours and faults

    def set_behaviour(self, user: str, realm: str, behaviour: str) -> None:
        """``answer`` | ``no_answer`` | ``busy`` | ``hang`` | ``unknown`` for user@realm."""
        assert behaviour in ("answer", "no_answer", "busy", "hang", "unknown"), behaviour
        self.behaviours[(user.lower(), realm.lower())] = behaviour

    def behaviour(self, user: str, realm: str) -> str:
        found = self.behaviours.get((user.lower(), realm.lower()))
        if found:
            return found
        if self.directory is not None and not self.directory(user, realm):
            return "unknown"
        return "answer"

    def slow(self, prefix: str, seconds: float, times: int | None = None) -> None:
        """Answer commands starting with ``prefix`` after ``seconds`` (holding the connection)."""
        self.faults.append(Fault("slow", prefix, seconds, times))

    def hang(self, prefix: str, times: int | None = None) -> None:
        """Never answer commands starting with ``prefix`` (the connection hangs)."""
        self.faults.append(Fault("hang", prefix, 0.0, times))

    def drop_mid_reply(self, prefix: str, times: int | None = None) -> None:
        """Write half of the reply to ``prefix`` commands, then close the connection."""
        self.faults.append(Fault("drop", prefix, 0.0, times))

    def close_on(self, prefix: str, times: int | None = None) -> None:
        """Close the connection instead of answering ``prefix`` commands."""
        self.faults.append(Fault("close", prefix, 0.0, times))

    def clear_faults(self) -> None:
        self.faults.clear()

    def _fault_for(self, first_line: str) -> Fault | None:
        for fault in self.faults:
            if first_line.startswith(fault.prefix):
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                return fault
        return None

    def inject(self, raw: bytes, to: str = "events") -> int:
        """Write raw bytes to the event connections (``to="events"``) or all (``"all"``)."""
        targets = self.event_connections() if to == "events" else [
            c for c in self.connections if c.authenticated]
        for conn in targets:
            conn.deliver(raw)
        return len(targets)

    # ------------------------------------------------------------------ events

    def _now(self) -> float:
        return self.clock()

    def _common(self, when: float) -> dict[str, str]:
        stamp = int(round(when * 1_000_000))
        seconds = stamp // 1_000_000
        # The fake's local time is UTC (the recordings' host ran in UTC too).
        return {
            "Core-UUID": self.core_uuid,
            "FreeSWITCH-Hostname": self.switchname,
            "FreeSWITCH-Switchname": self.switchname,
            "FreeSWITCH-IPv4": self.ipv4,
            "FreeSWITCH-IPv6": self.ipv6,
            "Event-Date-Local": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)),
            "Event-Date-GMT": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(seconds)),
            "Event-Date-Timestamp": str(stamp),
            "Event-Sequence": str(next(self._sequence)),
        }

    @staticmethod
    def _fill(template: list[tuple[str, str]], values: dict[str, str | None],
              inserted: list[tuple[str, str]] | None = None,
              replaced: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """Template headers with values substituted (None drops them), and a block replaced.

        ``inserted`` takes the place of the first ``replaced`` header (or goes last).
        """
        out: list[tuple[str, str]] = []
        done = False
        for name, value in template:
            if name in replaced:
                if not done and inserted is not None:
                    out.extend(inserted)
                    done = True
                continue
            if name in values:
                if values[name] is None:
                    continue
                out.append((name, values[name]))  # type: ignore[arg-type]
            else:
                out.append((name, value))
        if inserted is not None and not done:
            out.extend(inserted)
        return out

    def fire(self, name: str, headers: list[tuple[str, str]], body: str | None = None,
             subclass: str = "") -> bytes:
        """Deliver an event (already built headers) to every subscribed connection."""
        frame = serialize_event(headers, body)
        for conn in list(self.connections):
            if conn.authenticated and conn.wants(name, subclass):
                conn.deliver(frame)
        return frame

    def _registration_values(self, reg: FakeRegistration) -> dict[str, str | None]:
        return {
            "profile-name": reg.profile, "from-user": reg.user, "from-host": reg.realm,
            "contact": reg.contact, "call-id": reg.call_id, "to-user": reg.user,
            "to-host": reg.realm, "network-ip": reg.network_ip,
            "network-port": str(reg.network_port), "username": reg.user, "realm": reg.realm,
            "user-agent": reg.user_agent, "sip_number_alias": reg.user,
            "sip_auth_username": reg.user, "sip_auth_realm": reg.realm,
            "number_alias": reg.user, "user_name": reg.user, "domain_name": reg.realm,
            "user_context": reg.context, "user": reg.user, "host": reg.realm,
        }

    def register_event(self, reg: FakeRegistration, when: float | None = None) -> bytes:
        """The ``sofia::register`` event of a registration (as recorded in esl2/101)."""
        values = {**self._registration_values(reg), **self._common(when or self._now()),
                  "expires": str(reg.expires)}
        headers = self._fill(T_REGISTER[0], values, inserted=list(reg.variables.items()),
                             replaced=_RECORDED_DIRECTORY_VARS)
        return self.fire("CUSTOM", headers, subclass="sofia::register")

    def unregister_event(self, reg: FakeRegistration, when: float | None = None) -> bytes:
        """The ``sofia::unregister`` event of a phone that unregistered (esl2/104)."""
        values = {**self._registration_values(reg), **self._common(when or self._now()),
                  "expires": "0"}
        headers = self._fill(T_UNREGISTER[0], values, inserted=list(reg.variables.items()),
                             replaced=_RECORDED_DIRECTORY_VARS)
        return self.fire("CUSTOM", headers, subclass="sofia::unregister")

    def expire_event(self, reg: FakeRegistration, when: float | None = None) -> bytes:
        """The ``sofia::expire`` event of a flushed or expired registration (esl2/102).

        ``expires`` is absolute: registration time + expires + 60 (as sofia stores it).
        """
        values = {**self._registration_values(reg), **self._common(when or self._now()),
                  "expires": str(int(reg.registered_at) + reg.expires + 60)}
        headers = self._fill(T_EXPIRE[0], values)
        return self.fire("CUSTOM", headers, subclass="sofia::expire")

    def background_job(self, job_uuid: str, command: str, arg: str | None, body: str,
                       when: float | None = None) -> bytes:
        """The ``BACKGROUND_JOB`` of a bgapi (esl2/116): Job-Command-Arg only when there is one."""
        values: dict[str, str | None] = {**self._common(when or self._now()),
                                         "Job-UUID": job_uuid, "Job-Command": command,
                                         "Job-Command-Arg": arg}
        return self.fire("BACKGROUND_JOB", self._fill(T_JOB[0], values), body)

    def channel_event(self, kind: str, channel: FakeChannel, cause: str = "NORMAL_CLEARING",
                      when: float | None = None) -> bytes:
        """CHANNEL_CREATE / CHANNEL_ANSWER / CHANNEL_HANGUP_COMPLETE (esl2/114, 115, 118)."""
        template = {"CHANNEL_CREATE": T_CREATE, "CHANNEL_ANSWER": T_ANSWER,
                    "CHANNEL_HANGUP_COMPLETE": T_HANGUP}[kind][0]
        reg = channel.registration
        when = when or self._now()
        common = self._common(when)
        variables = dict(channel.variables)
        contact = f"{reg.network_ip}:{reg.network_port}"
        channel_name = f"sofia/{reg.profile}/{reg.user}@{contact}"
        auto = variables.get("sip_auto_answer") == "true"
        presence = reg.presence_id or f"{reg.user}@{reg.realm}"
        cid_name = variables.get("origination_caller_id_name", "")
        cid_number = variables.get("origination_caller_id_number", "")
        values: dict[str, str | None] = {
            **common,
            "Unique-ID": channel.uuid, "Channel-Call-UUID": channel.uuid,
            "Caller-Unique-ID": channel.uuid, "variable_uuid": channel.uuid,
            "variable_call_uuid": channel.uuid,
            "Channel-Name": channel_name, "Caller-Channel-Name": channel_name,
            "variable_channel_name": channel_name,
            "Channel-Presence-ID": presence, "variable_presence_id": presence,
            "Caller-Caller-ID-Name": cid_name, "Caller-Orig-Caller-ID-Name": cid_name,
            "Caller-Caller-ID-Number": cid_number, "Caller-Orig-Caller-ID-Number": cid_number,
            "Caller-ANI": cid_number,
            "Caller-Callee-ID-Number": reg.user, "Caller-Destination-Number": reg.user,
            "Caller-Context": channel.context,
            "variable_dialed_user": reg.user, "variable_dialed_domain": reg.realm,
            "variable_sip_invite_domain": reg.realm, "variable_sip_from_host": reg.realm,
            "variable_sip_destination_url": f"sip:{reg.user}@{contact};transport=udp",
            "variable_sip_req_uri": f"{reg.user}@{contact};transport=udp"
                                    + (";intercom=true" if auto else ""),
            "variable_sip_h_Call-Info": None if not auto else "<sip:127.0.0.1>;answer-after=0",
            "variable_sip_invite_params": None if not auto else "intercom=true",
            "variable_sip_profile_name": reg.profile, "variable_sofia_profile_name": reg.profile,
            "variable_recovery_profile_name": reg.profile,
            "Caller-Profile-Created-Time": str(channel.created_us),
            "Caller-Channel-Created-Time": str(channel.created_us),
            "Caller-Channel-Answered-Time": str(channel.answered_us),
            "Caller-Channel-Progress-Time": str(channel.created_us if kind != "CHANNEL_CREATE"
                                                else 0),
            "Hangup-Cause": cause,
            "variable_hangup_cause": cause,
        }
        if kind == "CHANNEL_CREATE":
            values["variable_sip_to_host"] = contact
        else:
            values["variable_sip_network_port"] = str(reg.network_port)
            values["variable_sip_reply_port"] = str(reg.network_port)
            values["variable_sip_to_port"] = str(reg.network_port)
            values["variable_sip_contact_port"] = str(reg.network_port)
            values["variable_sip_to_user"] = reg.user
            values["variable_sip_contact_user"] = reg.user
            values["variable_sip_to_uri"] = f"{reg.user}@{contact}"
            values["variable_sip_contact_uri"] = f"{reg.user}@{contact}"
        if kind == "CHANNEL_HANGUP_COMPLETE":
            values["Caller-Channel-Hangup-Time"] = str(common["Event-Date-Timestamp"])
        inserted = [(f"variable_{name}", value) for name, value in channel.variables]
        headers = self._fill(template, values, inserted=inserted,
                             replaced=_RECORDED_ORIGINATE_VARS)
        return self.fire(kind, headers)

    # ------------------------------------------------------------------ registrations

    def register(
        self,
        user: str,
        realm: str,
        profile: str = "internal",
        *,
        network_ip: str = "127.0.0.1",
        network_port: int | None = None,
        call_id: str | None = None,
        user_agent: str | None = None,
        contact: str | None = None,
        presence_id: str = "",
        expires: int = 3600,
        context: str = "default",
        variables: dict[str, str] | None = None,
        event: bool = True,
        cache: bool = True,
        when: float | None = None,
    ) -> FakeRegistration:
        """Register ``user@realm`` on ``profile`` and fire ``sofia::register`` (unless told not).

        Registering again with the same call-id refreshes the row; another call-id adds one.
        """
        port = network_port or 50000 + (abs(hash((user, realm))) % 10000)
        reg = FakeRegistration(
            user=user, realm=realm, profile=profile, network_ip=network_ip, network_port=port,
            call_id=call_id or f"fake-{_uuid.uuid4().hex[:10]}-1",
            user_agent=user_agent or f"FakePhone-{user}",
            contact=contact or f'"" <sip:{user}@{network_ip}:{port};transport=udp>',
            presence_id=presence_id, expires=expires, context=context,
            variables=dict(variables or {}), registered_at=when or self._now())
        self.profiles.add(profile)
        self.registrations = [r for r in self.registrations
                              if not (r.matches(user, realm) and r.call_id == reg.call_id)]
        self.registrations.append(reg)
        if cache:
            self.directory_cache.add((user.lower(), realm.lower()))
        if event:
            self.register_event(reg, when)
        return reg

    def _remove(self, user: str, realm: str, profile: str | None) -> list[FakeRegistration]:
        gone = [r for r in self.registrations
                if r.matches(user, realm) and (profile is None or r.profile == profile)]
        self.registrations = [r for r in self.registrations if r not in gone]
        return gone

    def unregister(self, user: str, realm: str, profile: str | None = None,
                   event: bool = True) -> list[FakeRegistration]:
        """The phone unregisters itself: rows removed, ``sofia::unregister`` per row."""
        gone = self._remove(user, realm, profile)
        if event:
            for reg in gone:
                self.unregister_event(reg)
        return gone

    def expire(self, user: str, realm: str, profile: str | None = None,
               event: bool = True) -> list[FakeRegistration]:
        """The registration expires (or is flushed): rows removed, ``sofia::expire`` per row."""
        gone = self._remove(user, realm, profile)
        if event:
            for reg in gone:
                self.expire_event(reg)
        return gone

    def registration_for(self, user: str, realm: str) -> FakeRegistration | None:
        for reg in self.registrations:
            if reg.matches(user, realm):
                return reg
        return None

    # ------------------------------------------------------------------ commands

    def _handle_command(self, conn: FakeConnection, text: str, body: bytes) -> None:
        self.commands.append(text)
        conn.commands.append(text)
        self._changed.set()
        first, _, rest = text.partition("\n")
        headers = []
        for line in rest.split("\n") if rest else ():
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        fault = self._fault_for(first)
        if fault is not None:
            if fault.kind == "slow":
                gevent.sleep(fault.seconds)
            elif fault.kind == "hang":
                # Hang until the client goes away (noticed by peeking for its EOF), so that a
                # client that gave up does not leave this connection behind.
                try:
                    if conn.sock.recv(1, socket.MSG_PEEK) == b"":
                        conn.close()
                        return
                except OSError:
                    conn.close()
                    return
                conn.closed.wait()
                return
            elif fault.kind == "close":
                conn.close()
                return
        reply = self._reply(conn, first, headers, body)
        if reply is None:
            return
        data, after = reply
        if fault is not None and fault.kind == "drop":
            conn.write(data[: max(1, len(data) // 2)])
            conn.close()
            if after is not None:
                after()  # as FreeSWITCH: a bgapi's job started before its reply was written
            return
        conn.write(data)
        conn.trace.append(("reply", first))
        if after is not None:
            after()

    def _reply(self, conn: FakeConnection, first: str, headers: list[tuple[str, str]],
               body: bytes) -> tuple[bytes, Callable[[], None] | None] | None:
        verb, _, args = first.partition(" ")
        if not conn.authenticated:
            if verb == "auth":
                if args == self.password:
                    conn.authenticated = True
                    return command_reply("+OK accepted"), None
                return command_reply("-ERR invalid"), lambda: conn.deliver(
                    disconnect_notice(GOODBYE), close=True)
            return command_reply("-ERR command not found"), None
        if verb == "api":
            return api_response(self._api(args)), None
        if verb == "bgapi":
            return self._bgapi(conn, args, headers)
        if verb == "event":
            fmt, _, names = args.partition(" ")
            custom = False
            for name in names.split():
                if custom:
                    conn.subclasses.add(name)
                elif name == "ALL":
                    conn.all_events = True
                elif name == "CUSTOM":
                    custom = True
                    conn.events.add(name)
                else:
                    conn.events.add(name)
            conn.format = fmt
            return command_reply(f"+OK event listener enabled {fmt}"), None
        if verb == "sendevent":
            event_id = str(_uuid.uuid4())
            self.sent_events.append((args.strip(), dict(headers)))
            return command_reply(f"+OK {event_id}"), None
        if verb == "exit":
            return command_reply("+OK bye"), lambda: conn.deliver(
                disconnect_notice(GOODBYE), close=True)
        return command_reply("-ERR command not found"), None

    def _api(self, command: str) -> bytes | str:
        name, _, args = command.strip().partition(" ")
        handler = self.api_handlers.get(name)
        if handler is None:
            return f"-ERR {name} Command not found!\n"
        return handler(self, args)

    def _bgapi(self, conn: FakeConnection, command: str, headers: list[tuple[str, str]]
               ) -> tuple[bytes, Callable[[], None] | None]:
        job_uuid = dict(headers).get("Job-UUID") or str(_uuid.uuid4())
        reply = command_reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)])
        name, _, arg = command.strip().partition(" ")

        def run() -> None:
            if name == "originate":
                body = self._originate(arg, job_uuid)
            else:
                result = self._api(command)
                body = result.decode("utf-8", "replace") if isinstance(result, bytes) else result
            if body is not None:
                self.background_job(job_uuid, name, arg or None, body)

        if self.job_event_before_reply:
            run()
            gevent.sleep(0.02)  # let the event connection write it first
            return reply, None
        return reply, lambda: self._spawn(run)

    # ------------------------------------------------------------------ api commands

    @staticmethod
    def _api_msleep(fake: FakeFreeSwitch, args: str) -> str:
        # As FreeSWITCH: the sleep runs on the connection's own thread, holding it.
        gevent.sleep(int(args.strip() or 0) / 1000.0)
        return "+OK"

    @staticmethod
    def _api_sofia_contact(fake: FakeFreeSwitch, args: str) -> str:
        target = args.strip().split("/")[-1]
        user, _, realm = target.partition("@")
        reg = fake.registration_for(user, realm)
        if reg is None:
            return "error/user_not_registered"
        return f"sofia/{reg.profile}/sip:{reg.user}@{reg.network_ip}:{reg.network_port};transport=udp"

    @staticmethod
    def _api_xml_flush_cache(fake: FakeFreeSwitch, args: str) -> str:
        parts = args.split()
        count = 0
        if len(parts) == 3 and parts[0] == "id":
            key = (parts[1].lower(), parts[2].lower())
            if key in fake.directory_cache:
                fake.directory_cache.discard(key)
                count = 1
        return f"+OK cleared {count} {'entry' if count == 1 else 'entries'}\n"

    @staticmethod
    def _api_uuid_kill(fake: FakeFreeSwitch, args: str) -> str:
        parts = args.split()
        channel = fake.channels.pop(parts[0], None) if parts else None
        if channel is None:
            return "-ERR No such channel!\n"
        fake._kill(channel, parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        return "+OK\n"

    @staticmethod
    def _api_hupall(fake: FakeFreeSwitch, args: str) -> str:
        parts = args.split()
        cause = parts[0] if parts else "NORMAL_CLEARING"
        wanted = tuple(parts[1:3]) if len(parts) >= 3 else None
        for uuid_, channel in list(fake.channels.items()):
            if wanted is None or wanted in channel.variables:
                fake.channels.pop(uuid_, None)
                fake._kill(channel, cause)
        return f"+OK hangup all channels with cause {cause}\n"

    def _kill(self, channel: FakeChannel, cause: str) -> None:
        channel.ended.set(cause)
        self._spawn(self.channel_event, "CHANNEL_HANGUP_COMPLETE", channel, cause)

    def _ring(self, channels: list[FakeChannel], seconds: float) -> str | None:
        """Let the legs ring ``seconds``: the cause when every one was hung up meanwhile."""
        gevent.wait([channel.ended for channel in channels], timeout=seconds)
        if all(channel.ended.ready() for channel in channels):
            return channels[0].ended.get()
        return None

    @staticmethod
    def _api_originate(fake: FakeFreeSwitch, args: str) -> str:
        return fake._originate(args, "") or ""

    def _xml_registrations(self, regs: list[FakeRegistration]) -> str:
        now = self._now()
        parts = ['<?xml version="1.0" encoding="ISO-8859-1"?>\n<profile>\n  <registrations>\n']
        for reg in regs:
            expiry = int(reg.registered_at) + reg.expires + 60
            left = max(0, expiry - int(now))
            status = (f"Registered(UDP)(unknown) exp("
                      f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(expiry))}) "
                      f"expsecs({left})")
            fields = [
                ("call-id", reg.call_id), ("user", f"{reg.user}@{reg.realm}"),
                ("contact", reg.contact), ("agent", reg.user_agent), ("status", status),
                ("ping-status", "Reachable"), ("ping-time", "0.00"), ("host", self.switchname),
                ("network-ip", reg.network_ip), ("network-port", str(reg.network_port)),
                ("sip-auth-user", reg.user), ("sip-auth-realm", reg.realm),
                ("mwi-account", f"{reg.user}@{reg.realm}"),
            ]
            parts.append("    <registration>\n")
            for name, value in fields:
                encode = XMLSTATUS_ENCODING.get(name)
                parts.append(f"        <{name}>{encode(value) if encode else value}</{name}>\n")
            parts.append("    </registration>\n")
        parts.append("  </registrations>\n</profile>\n")
        return "".join(parts)

    @staticmethod
    def _api_sofia(fake: FakeFreeSwitch, args: str) -> str:
        words = args.split()
        if len(words) >= 4 and words[0] == "xmlstatus" and words[1] == "profile":
            profile = words[2]
            if profile not in fake.profiles:
                return "Invalid Profile!\n"
            regs = [r for r in fake.registrations if r.profile == profile]
            if words[3] == "reg":
                return fake._xml_registrations(regs)
            if words[3] == "user" and len(words) >= 5:
                user, _, realm = words[4].partition("@")
                return fake._xml_registrations(
                    [r for r in regs if r.matches(user or None, realm)])
        if len(words) >= 4 and words[0] == "profile" and words[2] == "flush_inbound_reg":
            profile = words[1]
            if profile not in fake.profiles:
                return "Invalid Profile!\n"
            user, _, realm = words[3].partition("@")
            gone = fake._remove(user, realm, profile)
            for reg in gone:
                fake._spawn(fake.expire_event, reg)
            return "+OK flushing all registrations matching specified call_id\n"
        return "-ERR Usage: sofia <command>\n"

    # ------------------------------------------------------------------ originate

    @staticmethod
    def _variable_block(text: str, opening: str, closing: str
                        ) -> tuple[list[tuple[str, str]], str]:
        """A leading ``{a=b,c='d e'}`` (or ``[...]``) → (its variables, the text after it)."""
        if not text.startswith(opening):
            return [], text
        end = text.index(closing)
        variables = []
        for item in text[1:end].split(","):
            name, _, value = item.partition("=")
            if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
                value = value[1:-1]
            variables.append((name, value))
        return variables, text[end + 1:]

    @staticmethod
    def parse_originate(arg: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """``{vars}[leg vars]dial[,[leg vars]dial] exten XML context`` → (the ``{}``
        variables, the legs as written, ``[...]`` included, the words after)."""
        variables, rest = FakeFreeSwitch._variable_block(arg.strip(), "{", "}")
        words = rest.split(" ")
        legs = [leg for leg in words[0].replace("|", ",").split(",") if leg]
        return variables, legs, words[1:]

    def _originate(self, arg: str, job_uuid: str) -> str | None:
        """Run an originate; returns the job body, or None if it never ends (``hang``)."""
        variables, legs, after = self.parse_originate(arg)
        var_map = dict(variables)
        context = after[2] if len(after) >= 3 else "default"
        outcomes = []
        leg_vars: dict[int, list[tuple[str, str]]] = {}
        used_uuids: set[str] = set()
        for index, written in enumerate(legs):
            own, leg = self._variable_block(written, "[", "]")
            leg_vars[index] = variables + own
            kind, _, target = leg.partition("/")
            user, _, realm = target.partition("@")
            # Each leg gets its origination_uuid, from its [] or else from the {} (which every
            # leg shares): a second leg holding a uuid in use fails, as FreeSWITCH logs
            # "Duplicate UUID!" and "Cannot create outgoing channel" (esl3 143), and never rings.
            wanted = dict(leg_vars[index]).get("origination_uuid")
            if wanted and (wanted in used_uuids or wanted in self.channels):
                outcomes.append(("out_of_order", None, user, realm))
                continue
            if wanted:
                used_uuids.add(wanted)
            if kind != "user" or not user or not realm:
                outcomes.append(("absent", None, user, realm))
                continue
            behaviour = self.behaviour(user, realm)
            if behaviour == "unknown":
                outcomes.append(("absent", None, user, realm))
                continue
            self.directory_cache.add((user.lower(), realm.lower()))
            reg = self.registration_for(user, realm)
            if reg is None:
                outcomes.append(("unregistered", None, user, realm))
            else:
                outcomes.append((behaviour, reg, user, realm))
        kinds = [o[0] for o in outcomes]
        ringing = [o for o in outcomes if o[1] is not None]
        if not ringing:
            # FreeSWITCH answers these within milliseconds, without channel events.
            gevent.sleep(0.001)
            return ("-ERR USER_NOT_REGISTERED\n" if "unregistered" in kinds
                    else "-ERR DESTINATION_OUT_OF_ORDER\n" if "out_of_order" in kinds
                    else "-ERR SUBSCRIBER_ABSENT\n")
        answerer = next((o for o in ringing if o[0] == "answer"), None)
        channels = []
        for outcome in ringing:
            own = leg_vars[next(i for i, o in enumerate(outcomes) if o is outcome)]
            leg_uuid = dict(own).get("origination_uuid") or str(_uuid.uuid4())
            channel = FakeChannel(uuid=leg_uuid, user=outcome[2], realm=outcome[3],
                                  registration=outcome[1], variables=own, context=context,
                                  created_us=int(self._now() * 1_000_000), job_uuid=job_uuid)
            channels.append((outcome, channel))
            self.channels[leg_uuid] = channel
            self.channel_event("CHANNEL_CREATE", channel)
        legs_only = [channel for _, channel in channels]
        if answerer is not None:
            killed = self._ring(legs_only, self.answer_delay)
            if killed is not None:
                return f"-ERR {killed}\n"
            result = None
            for outcome, channel in channels:
                if outcome is answerer:
                    channel.answered = True
                    channel.answered_us = int(self._now() * 1_000_000)
                    self.channel_event("CHANNEL_ANSWER", channel)
                    result = f"+OK {channel.uuid}\n"
                else:
                    self.channels.pop(channel.uuid, None)
                    self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, "LOSE_RACE")
            return result
        if "no_answer" in kinds:
            timeout = int(var_map.get("originate_timeout", "60") or 60)
            killed = self._ring(legs_only, timeout * self.time_scale)
            if killed is not None:
                return f"-ERR {killed}\n"
            cause = "NO_ANSWER"
        elif "busy" in kinds:
            gevent.sleep(min(self.answer_delay, 0.01))
            cause = "USER_BUSY"
        else:  # hang: rings until the fake stops
            gevent.sleep(1e9)
            return None
        for _, channel in channels:
            self.channels.pop(channel.uuid, None)
            self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, cause)
        return f"-ERR {cause}\n"

    def hangup(self, call_uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """The far end hangs up a live call: CHANNEL_HANGUP_COMPLETE."""
        channel = self.channels.pop(call_uuid, None)
        if channel is None:
            return False
        self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, cause)
        return True


def _epoch(text: str) -> float:
    """``2026-11-25 18:54:17`` (UTC) → Unix time, for tests pinning the clock."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


def main() -> None:
    """Serve a fake FreeSWITCH until killed; print ``host:port:password`` on stdout.

    ``--workers N`` forks N processes that accept on the one listening socket, so that each
    connection is served by one of them: a model of FreeSWITCH's thread per connection, whose
    connections run on separate cores (each worker keeps its own state, so it is only fit for
    stateless commands such as the benchmark's ``api status`` and ``api msleep``). The first
    line names the workers' process ids after the node: ``host:port:password pid pid ...``.
    """
    import os
    import signal

    from gevent import monkey

    monkey.patch_all()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes accepting on the one socket (default 1)")
    options = parser.parse_args()
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    fake = FakeFreeSwitch(options.password, host=options.host, port=options.port).start()
    children = []
    for _ in range(options.workers - 1):
        pid = os.fork()  # gevent's fork: the child's loop is re-initialised, the server kept
        if pid == 0:
            children = []
            break
        children.append(pid)
    else:
        print(" ".join([fake.node, str(os.getpid()), *map(str, children)]),  # noqa: T201
              flush=True)  # the one line a parent process reads

    def end(*_: object) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
                os.waitpid(child, 0)  # gone (and reaped) before the parent says it is
            except (ProcessLookupError, ChildProcessError):
                pass
        os._exit(0)

    # The handler runs in the event loop, where waitpid may not block: end in a greenlet.
    gevent.signal_handler(signal.SIGTERM, gevent.spawn, end)
    try:
        gevent.event.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
        end()


__all__ = ["FakeChannel", "FakeFreeSwitch", "FakeRegistration", "fs_url_encode",
           "serialize_event"]

if __name__ == "__main__":
    main()
