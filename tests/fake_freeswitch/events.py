"""Events of the test FreeSWITCH, built from recorded ones with the fake's values put in."""
from __future__ import annotations

import calendar
import time
from typing import TYPE_CHECKING

from .templates import (
    _RECORDED_DIRECTORY_VARS,
    _RECORDED_ORIGINATE_VARS,
    T_ANSWER,
    T_CREATE,
    T_EXPIRE,
    T_HANGUP,
    T_JOB,
    T_REGISTER,
    T_UNREGISTER,
)
from .wire import serialize_event

if TYPE_CHECKING:
    from .state import FakeChannel, FakeRegistration


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



def _epoch(text: str) -> float:
    """``2026-11-25 18:54:17`` (UTC) → Unix time, for tests pinning the clock."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))
