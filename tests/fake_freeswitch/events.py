"""Events of the test FreeSWITCH, built from recorded ones with the fake's values put in."""
from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING

from .templates import _RECORDED_DIRECTORY_VARS, T_API, T_EXPIRE, T_JOB, T_REGISTER, T_UNREGISTER
from .wire import serialize_event, serialize_event_json

if TYPE_CHECKING:
    from .state import FakeRegistration


class Events:
    """Building and firing events; mixed into ``FakeFreeSwitch``."""

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
        """Deliver an event (already built headers) to every subscribed connection, in the
        format each asked for (``event plain`` or ``event json``); returns the plain frame."""
        frame = serialize_event(headers, body)
        json_frame = None
        for conn in list(self.connections):
            if conn.authenticated and conn.wants(name, subclass):
                if conn.format == "json":
                    json_frame = json_frame or serialize_event_json(headers, body)
                    conn.deliver(json_frame)
                else:
                    conn.deliver(frame)
        return frame

    def api_event(self, command: str, args: str, when: float | None = None) -> bytes:
        """The API event switch_api_execute fires for every api command it runs (esl3/221)."""
        values: dict[str, str | None] = {**self._common(when or self._now()),
                                         "API-Command": None}
        headers = [*self._fill(T_API[0], values), ("API-Command", command)]
        if args:
            headers.append(("API-Command-Argument", args))
        return self.fire("API", headers)

    def _registration_values(self, reg: FakeRegistration) -> dict[str, str | None]:
        return {
            "profile-name": reg.profile, "from-user": reg.user, "from-host": reg.realm,
            "contact": reg.contact, "call-id": reg.call_id, "to-user": reg.user,
            "to-host": reg.realm, "network-ip": reg.network_ip,
            "network-port": str(reg.network_port), "username": reg.user, "realm": reg.realm,
            "user-agent": reg.user_agent, "sip_number_alias": reg.user,
            "sip_auth_username": reg.user, "sip_auth_realm": reg.realm,
            "number_alias": reg.user, "user_name": reg.user, "domain_name": reg.realm,
            "user": reg.user, "host": reg.realm,
        }

    def register_event(self, reg: FakeRegistration, when: float | None = None) -> bytes:
        """The ``sofia::register`` event of a registration (as recorded in esl2/101)."""
        values = {**self._registration_values(reg), **self._common(when or self._now()),
                  "expires": str(reg.expires)}
        headers = self._fill(T_REGISTER[0], values, inserted=reg.directory_variables(),
                             replaced=_RECORDED_DIRECTORY_VARS)
        return self.fire("CUSTOM", headers, subclass="sofia::register")

    def unregister_event(self, reg: FakeRegistration, when: float | None = None) -> bytes:
        """The ``sofia::unregister`` event of a phone that unregistered (esl2/104)."""
        values = {**self._registration_values(reg), **self._common(when or self._now()),
                  "expires": "0"}
        headers = self._fill(T_UNREGISTER[0], values, inserted=reg.directory_variables(),
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


def _epoch(text: str) -> float:
    """``2026-11-25 18:54:17`` (UTC) → Unix time, for tests pinning the clock."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))
