"""Registrations of the test FreeSWITCH and the sofia commands that read or flush them."""
from __future__ import annotations

import json
import time
import uuid as _uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from .state import FakeRegistration
from .wire import amp_encode, fs_url_encode

if TYPE_CHECKING:
    from .server import FakeFreeSwitch

#: How mod_sofia's ``show_reg_callback_xml`` writes each xmlstatus field: ``contact`` and
#: ``agent`` amp-encoded, ``sip-auth-user`` URL-encoded, every other one as it is (a phone's
#: Call-ID may hold ``<``, ``>`` and ``/``).
XMLSTATUS_ENCODING: dict[str, Callable[[str], str]] = {
    "contact": amp_encode, "agent": amp_encode, "sip-auth-user": fs_url_encode}


class Registrations:
    """Registrations and the sofia api commands; mixed into ``FakeFreeSwitch``."""

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

    # The sofia api commands read these registrations.

    @staticmethod
    def _api_sofia_contact(fake: FakeFreeSwitch, args: str) -> str:
        target = args.strip().split("/")[-1]
        user, _, realm = target.partition("@")
        reg = fake.registration_for(user, realm)
        if reg is None:
            return "error/user_not_registered"
        return f"sofia/{reg.profile}/sip:{reg.user}@{reg.network_ip}:{reg.network_port};transport=udp"

    def _expiry(self, reg: FakeRegistration) -> tuple[str, int]:
        """The registration's expiry as sofia prints it, and the seconds left."""
        expiry = int(reg.registered_at) + reg.expires + 60
        left = max(0, expiry - int(self._now()))
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(expiry)), left

    def _xml_registrations(self, regs: list[FakeRegistration]) -> str:
        parts = ['<?xml version="1.0" encoding="ISO-8859-1"?>\n<profile>\n  <registrations>\n']
        for reg in regs:
            expiry, left = self._expiry(reg)
            status = f"Registered(UDP)(unknown) exp({expiry}) expsecs({left})"
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

    def _text_registrations(self, regs: list[FakeRegistration]) -> str:
        """``sofia status profile <p> reg|user <u>``: every field as it is (esl/12, esl3/219)."""
        parts = ["\nRegistrations:\n", SEPARATOR]
        for reg in regs:
            expiry, left = self._expiry(reg)
            parts.append(
                f"Call-ID:    \t{reg.call_id}\nUser:       \t{reg.user}@{reg.realm}\n"
                f"Contact:    \t{reg.contact}\nAgent:      \t{reg.user_agent}\n"
                f"Status:     \tRegistered(UDP)(unknown) EXP({expiry}) EXPSECS({left})\n"
                f"Ping-Status:\tReachable\nPing-Time:\t0.00\nHost:       \t{self.switchname}\n"
                f"IP:         \t{reg.network_ip}\nPort:       \t{reg.network_port}\n"
                f"Auth-User:  \t{reg.user}\nAuth-Realm: \t{reg.realm}\n"
                f"MWI-Account:\t{reg.user}@{reg.realm}\n\n")
        parts.append(f"Total items returned: {len(regs)}\n")
        parts.append(SEPARATOR)
        return "".join(parts)

    def show_registrations_json(self) -> str:
        """``show registrations as json``: the core's table (esl/14, 14b). A real FreeSWITCH
        fills it a little after the register event; this one at once."""
        if not self.registrations:
            return '{"row_count": 0}\n'
        rows = [{"reg_user": r.user, "realm": r.realm, "token": r.call_id,
                 "url": f"sofia/{r.profile}/sip:{r.user}@{r.network_ip}:{r.network_port};"
                        "transport=udp",
                 "expires": str(int(r.registered_at) + r.expires + 60),
                 "network_ip": r.network_ip, "network_port": str(r.network_port),
                 "network_proto": "udp", "hostname": self.switchname, "metadata": ""}
                for r in self.registrations]
        return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"))

    @staticmethod
    def _api_sofia(fake: FakeFreeSwitch, args: str) -> str:
        words = args.split()
        if len(words) >= 4 and words[0] in ("xmlstatus", "status") and words[1] == "profile":
            profile = words[2]
            if profile not in fake.profiles:
                return "Invalid Profile!\n"
            render = fake._xml_registrations if words[0] == "xmlstatus" \
                else fake._text_registrations
            regs = [r for r in fake.registrations if r.profile == profile]
            if words[3] == "reg":
                return render(regs)
            if words[3] == "user" and len(words) >= 5:
                user, _, realm = words[4].partition("@")
                return render([r for r in regs if r.matches(user or None, realm)])
        if len(words) >= 3 and words[0] == "profile":
            profile = words[1]
            if profile not in fake.profiles:
                return "Invalid Profile!\n"
            if words[2] == "flush_inbound_reg" and len(words) >= 4:
                user, _, realm = words[3].partition("@")
                gone = fake._remove(user, realm, profile)
                for reg in gone:
                    fake.expire_event(reg)
                return "+OK flushing all registrations matching specified call_id\n"
            if words[2] == "check_sync":
                if len(words) == 3:
                    # Without an argument it forgets every registration of the profile and
                    # tells no phone (esl/09 and the README of the recordings).
                    fake.registrations = [r for r in fake.registrations if r.profile != profile]
                    return "+OK syncing all registrations\n"
                return "+OK syncing all registrations matching specified call_id\n"
        return "-ERR Usage: sofia <command>\n"


SEPARATOR = "=" * 97 + "\n"
