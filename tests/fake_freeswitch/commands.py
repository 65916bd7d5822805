"""How the test FreeSWITCH runs a command: faults, auth, api, bgapi, event, sendevent, exit."""
from __future__ import annotations

import uuid as _uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent
from gevent import socket

from .wire import GOODBYE, api_response, command_reply, disconnect_notice

if TYPE_CHECKING:
    from .connection import FakeConnection
    from .server import FakeFreeSwitch


class Commands:
    """Command dispatch and the api commands that are not sofia's or originate; mixed into
    ``FakeFreeSwitch``."""

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

    @staticmethod
    def _api_msleep(fake: FakeFreeSwitch, args: str) -> str:
        # As FreeSWITCH: the sleep runs on the connection's own thread, holding it.
        gevent.sleep(int(args.strip() or 0) / 1000.0)
        return "+OK"

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

