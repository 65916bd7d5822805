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
        if verb == "exit":  # before auth too (esl3/211)
            return command_reply("+OK bye"), lambda: conn.deliver(
                disconnect_notice(GOODBYE), close=True)
        if not conn.authenticated:
            if verb == "auth":
                if args == self.password:
                    conn.authenticated = True
                    return command_reply("+OK accepted"), None
                return command_reply("-ERR invalid"), lambda: conn.deliver(
                    disconnect_notice(GOODBYE), close=True)
            # Any other command is refused, and the connection stays usable (esl3/206-212).
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
        return command_reply("-ERR command not found"), None

    def _api(self, command: str) -> bytes | str:
        """Run an api command as switch_api_execute does, then mod_event_socket's api_exec: an
        API event once it ran, and ``-ERR no reply`` for an empty output (esl3/172)."""
        name, _, args = command.strip().partition(" ")
        handler = self.api_handlers.get(name)
        if handler is None:
            return f"-ERR {name} Command not found!\n"
        output = handler(self, args)
        self.api_event(name, args.strip())
        return output or "-ERR no reply\n"

    def _bgapi(self, conn: FakeConnection, command: str, headers: list[tuple[str, str]]
               ) -> tuple[bytes, Callable[[], None] | None]:
        job_uuid = dict(headers).get("Job-UUID") or str(_uuid.uuid4())
        reply = command_reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)])
        name, _, arg = command.strip().partition(" ")

        def run() -> None:
            # The job runs whether or not its sender is still there to read the reply: its
            # BACKGROUND_JOB reaches every connection subscribed to it (esl3/213-217).
            if name == "originate":
                body = self._originate(arg, job_uuid)
                self.api_event(name, arg.strip())
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
