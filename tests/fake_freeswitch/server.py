"""The test FreeSWITCH itself: its settings, state, lifecycle, faults and inspection."""
from __future__ import annotations

import itertools
import os
import time
import uuid as _uuid
from collections.abc import Callable

import gevent
import gevent.event
from gevent import socket
from gevent.server import StreamServer

from .api import API_COMMANDS
from .channel_events import ChannelEvents
from .commands import Commands
from .connection import FakeConnection
from .curl import CurlCall
from .directory import Directory, DirectoryUser
from .events import Events
from .originate import CALL_COMMANDS, Originate
from .registrations import Registrations
from .state import FakeChannel, FakeRegistration, Fault
from .templates import SHUTDOWN_EVENTS
from .wire import SHUTDOWN, disconnect_notice


class FakeFreeSwitch(Commands, Events, ChannelEvents, Originate, Registrations, Directory):
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
        directory_url: str | None = None,
        directory_auth: tuple[str, str] | None = None,
        shutdown_events: list[tuple[list[tuple[str, str]], str]] = SHUTDOWN_EVENTS,
        codec_prefs: str = "PCMU,PCMA",
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
        #: a mod_xml_curl directory binding (and its basic-auth user and password) to ask
        self.directory_url = directory_url
        self.directory_auth = directory_auth
        #: the events an ``ALL`` subscriber gets at shutdown, module by module
        self.shutdown_events = shutdown_events
        #: the sofia profile's codec preferences, as a leg's rtp_use_codec_string shows them
        self.codec_prefs = codec_prefs

        self.registrations: list[FakeRegistration] = []
        self.channels: dict[str, FakeChannel] = {}
        self.commands: list[str] = []
        self.sent_events: list[tuple[str, dict[str, str]]] = []
        self.directory_cache: set[tuple[str, str]] = set()
        #: the form of every request made to ``directory_url``
        self.directory_requests: list[str] = []
        self._cached_users: dict[tuple[str, str], tuple[float, DirectoryUser]] = {}
        #: every ``api curl`` run, as mod_curl understood it
        self.curl_calls: list[CurlCall] = []
        #: seconds: a shorter wait than the ``timeout`` a curl command asks for (tests)
        self.curl_timeout_cap: float | None = None
        self.behaviours: dict[tuple[str, str], str] = {}
        self.faults: list[Fault] = []
        self.connections: list[FakeConnection] = []
        self.hang_on_connect = False
        #: stop reading from every connection (clients' writes then block once buffers fill)
        self.stall_reads = False
        self.job_event_before_reply = False
        self.accepted = 0
        self.api_handlers: dict[str, Callable[[FakeFreeSwitch, str], str | bytes]] = {
            **API_COMMANDS, **CALL_COMMANDS,
            "sofia": FakeFreeSwitch._api_sofia,
            "sofia_contact": FakeFreeSwitch._api_sofia_contact,
        }
        self._server: StreamServer | None = None
        self._greenlets: set[gevent.Greenlet] = set()
        #: descriptors holding open the sockets of connections ``vanish`` forgot
        self._vanished: list[int] = []
        self._changed = gevent.event.Event()

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

    def vanish(self) -> None:
        """The host goes away without a word and is back at once (power lost and restored, a
        failover to another host): every connection is forgotten, its channels too, and new
        connections are served. A forgotten connection is neither closed nor answered: the
        client sees no FIN and no RST, only silence (its socket is closed at ``stop()``)."""
        for conn in list(self.connections):
            self.connections.remove(conn)
            self._vanished.append(conn.vanish())
        self.channels.clear()

    def stop(self, notice: bool = True) -> None:
        """Stop: shutdown notice on every connection (unless ``notice=False``), close, join."""
        self.refuse_connections()
        while self._vanished:
            os.close(self._vanished.pop())
        if notice:
            for headers, body in self.shutdown_events:
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

    # inspection

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

    # behaviours and faults

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

