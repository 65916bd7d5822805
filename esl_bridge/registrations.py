"""Where phones are registered: which node and which sofia profile hold user@realm.

Two sources, both exact (SPEC 6.4): ``sofia xmlstatus profile <p> user ...`` answers on demand
and is current before the register event arrives; the ``sofia::register``, ``sofia::unregister``
and ``sofia::expire`` events keep a cache current between queries (they carry ``profile-name``
and ``FreeSWITCH-Switchname``; the node is the connection they arrived on). The cache is refreshed
in full per node and profile (``sofia xmlstatus profile <p> reg``) when the node's event
connection comes up and periodically. ``show registrations`` is never used: it lags the events,
mixes realms and keeps rows after a flush.
"""
from __future__ import annotations

import html
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

import gevent.event

from . import commands
from .errors import CommandError, EslError
from .frames import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registration:
    """One registration of ``user@realm`` on a node's sofia profile.

    ``node`` is the pool's node name (``host:port``: where commands for it must go), ``host``
    FreeSWITCH's own name for itself (xmlstatus ``<host>``, the event's ``FreeSWITCH-Switchname``).
    ``source`` says whether it came from ``xmlstatus`` or an ``event``.
    """

    user: str
    realm: str
    node: str
    profile: str
    contact: str = ""
    call_id: str = ""
    agent: str = ""
    status: str = ""
    network_ip: str = ""
    network_port: str = ""
    host: str = ""
    source: str = "xmlstatus"
    updated: float = field(default=0.0, compare=False)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.profile, self.user.lower(), self.realm.lower(), self.call_id)


#: One field line of a registration: ``<name>value</name>``, the value running to the closing
#: tag that ends the line (so a value holding ``</name>`` or other tags stays whole).
_FIELD_LINE = re.compile(r"\s*<([a-z-]+)>(.*)</\1>\s*")
#: How mod_sofia's ``show_reg_callback_xml`` encodes a field: ``contact`` and ``agent`` with
#: ``switch_amp_encode``, ``sip-auth-user`` with ``switch_url_encode``; every other field,
#: ``call-id`` and ``user`` included, is written as it is.
_FIELD_DECODING: dict[str, Callable[[str], str]] = {
    "contact": html.unescape, "agent": html.unescape, "sip-auth-user": unquote}


def _registration_blocks(text: str) -> Iterable[dict[str, str]]:
    """The fields of each ``<registration>`` of an xmlstatus answer, read line by line.

    mod_sofia writes each registration as a ``<registration>`` line, one line per field and a
    ``</registration>`` line, and leaves ``call-id``, ``user`` and ``host`` unescaped: a phone's
    Call-ID may hold ``<``, ``>`` and ``/`` (RFC 3261 allows them). Reading by line, with the
    first and last tag of a line naming its field, such a value can neither close its block nor
    forge another field. Lines cannot be forged: SIP header values never hold a line break.
    """
    block: dict[str, str] | None = None
    for line in text.split("\n"):  # mod_sofia ends lines with LF; other breaks are values
        stripped = line.strip()
        if stripped == "<registration>":
            block = {}
        elif stripped == "</registration>":
            if block is not None:
                yield block
            block = None
        elif block is not None:
            match = _FIELD_LINE.fullmatch(line)
            if match and match.group(1) not in block:
                name, value = match.groups()
                block[name] = _FIELD_DECODING.get(name, str)(value.strip())


def parse_xmlstatus(text: str, node: str, profile: str) -> list[Registration]:
    """Read a ``sofia xmlstatus profile <p> user|reg`` answer into registrations.

    The answer declares ISO-8859-1 but carries whatever bytes phones sent, and FreeSWITCH
    escapes only some fields, so a tolerant line-by-line reader is used (``_registration_blocks``)
    rather than an XML parser that would reject the whole listing for one odd value. Raises
    ``CommandError`` for ``Invalid Profile!`` or any answer that is not a registrations document.
    """
    stripped = text.strip()
    if "<profile>" not in stripped or "<registrations" not in stripped:
        raise CommandError(f"not a registrations document: {stripped[:80]!r}", node, stripped)
    found = []
    for fields in _registration_blocks(text):
        user_at = fields.get("user", "")
        user, at, realm = user_at.rpartition("@")
        if not at:
            user, realm = fields.get("sip-auth-user", user_at), fields.get("sip-auth-realm", "")
        if not user or not realm:
            log.warning("ESL %s: registration without user@realm skipped: %r", node, fields)
            continue
        found.append(Registration(
            user=user, realm=realm, node=node, profile=profile,
            contact=fields.get("contact", ""), call_id=fields.get("call-id", ""),
            agent=fields.get("agent", ""), status=fields.get("status", ""),
            network_ip=fields.get("network-ip", ""), network_port=fields.get("network-port", ""),
            host=fields.get("host", ""), source="xmlstatus", updated=time.monotonic(),
        ))
    return found


def registration_from_event(node: str, event: Event) -> Registration | None:
    """Build the registration a ``sofia::register|unregister|expire`` event talks about."""
    user = event.get("username") or event.get("from-user") or event.get("user") or ""
    realm = event.get("realm") or event.get("from-host") or event.get("host") or ""
    profile = event.get("profile-name") or ""
    if not (user and realm and profile):
        log.warning("ESL %s: %s event without username, realm or profile-name", node,
                    event.subclass)
        return None
    return Registration(
        user=user, realm=realm, node=node, profile=profile,
        contact=event.get("contact") or "", call_id=event.get("call-id") or "",
        agent=event.get("user-agent") or "", status=event.get("status") or "",
        network_ip=event.get("network-ip") or "", network_port=event.get("network-port") or "",
        host=event.get("FreeSWITCH-Switchname") or event.get("FreeSWITCH-Hostname") or "",
        source="event", updated=time.monotonic(),
    )


class RegistrationCache:
    """Registrations by node, kept current from events and refreshed from xmlstatus.

    Reading it costs no round trip but may be a little stale; the actions ask FreeSWITCH
    (xmlstatus) when they must be exact, and use the cache for the profiles each node has shown.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_node: dict[str, dict[tuple[str, str, str, str], Registration]] = {}
        # (node, key) -> when an unregister/expire removed it; keeps a refresh that was already
        # in flight from bringing a registration back.
        self._removed: dict[tuple[str, tuple[str, str, str, str]], float] = {}
        self._profiles: dict[str, set[str]] = {}
        self.events = 0

    def apply_event(self, node: str, event: Event) -> Registration | None:
        """Apply one sofia register/unregister/expire event from ``node``."""
        kind = event.subclass
        if kind not in ("sofia::register", "sofia::unregister", "sofia::expire"):
            return None
        reg = registration_from_event(node, event)
        if reg is None:
            return None
        self.events += 1
        with self._lock:
            self._profiles.setdefault(node, set()).add(reg.profile)
            regs = self._by_node.setdefault(node, {})
            if kind == "sofia::register":
                regs[reg.key] = reg
                self._removed.pop((node, reg.key), None)
            else:
                now = time.monotonic()
                gone = [key for key in regs
                        if key[:3] == reg.key[:3] and (not reg.call_id or key[3] == reg.call_id)]
                for key in gone:
                    del regs[key]
                    self._removed[(node, key)] = now
                self._removed[(node, reg.key)] = now
        log.debug("ESL %s: %s %s@%s on %s", node, kind, reg.user, reg.realm, reg.profile)
        return reg

    def replace(self, node: str, profile: str, found: list[Registration], started: float,
                user: str | None = None, realm: str | None = None) -> None:
        """Replace what is known of ``node``/``profile`` (optionally one realm or user@realm).

        ``started`` is when the query was sent: entries an event touched after it are newer
        than the answer and are kept (or kept removed).
        """
        def covered(key: tuple[str, str, str, str]) -> bool:
            if key[0] != profile:
                return False
            if realm is not None and key[2] != realm.lower():
                return False
            return user is None or key[1] == user.lower()

        with self._lock:
            self._profiles.setdefault(node, set()).add(profile)
            regs = self._by_node.setdefault(node, {})
            for key in [k for k, r in regs.items() if covered(k) and r.updated < started]:
                del regs[key]
            for reg in found:
                removed_at = self._removed.get((node, reg.key))
                if removed_at is not None and removed_at >= started:
                    continue
                current = regs.get(reg.key)
                if current is None or current.updated < started:
                    regs[reg.key] = reg
            horizon = time.monotonic() - 600
            for gone in [k for k, t in self._removed.items() if t < horizon]:
                del self._removed[gone]

    def refresh(self, node: str, profiles: Iterable[str], api: Callable[..., str],
                stopping: gevent.event.Event) -> None:
        """Refresh ``node`` in full, profile by profile (``sofia xmlstatus profile <p> reg``).

        ``api(command, node=node)`` asks the node (the pool's ``api``). A profile FreeSWITCH
        refuses is skipped; any other failure ends this refresh (the next one tries again), and
        so does ``stopping`` being set.
        """
        for profile in profiles:
            if stopping.is_set():
                return
            started = time.monotonic()
            try:
                text = api(commands.xmlstatus_profile(profile), node=node)
                found = parse_xmlstatus(text, node, profile)
            except CommandError as exc:
                log.debug("ESL %s: profile %s not refreshed: %s", node, profile, exc)
                continue
            except EslError as exc:
                log.info("ESL %s: registration refresh failed: %s", node, exc)
                return
            self.replace(node, profile, found, started)

    def forget(self, node: str, profile: str, user: str, realm: str) -> None:
        """Drop user@realm on node/profile (after we flushed it ourselves)."""
        now = time.monotonic()
        with self._lock:
            regs = self._by_node.get(node, {})
            for key in [k for k in regs if k[:3] == (profile, user.lower(), realm.lower())]:
                del regs[key]
                self._removed[(node, key)] = now

    def lookup(self, user: str, realm: str) -> list[Registration]:
        """Cached registrations of user@realm on every node."""
        u, r = user.lower(), realm.lower()
        with self._lock:
            return [reg for regs in self._by_node.values() for key, reg in regs.items()
                    if key[1] == u and key[2] == r]

    def realm(self, realm: str) -> list[Registration]:
        """Cached registrations of a realm on every node."""
        r = realm.lower()
        with self._lock:
            return [reg for regs in self._by_node.values() for key, reg in regs.items()
                    if key[2] == r]

    def profiles(self, node: str) -> set[str]:
        """Sofia profiles seen holding registrations on ``node``."""
        with self._lock:
            return set(self._profiles.get(node, ()))

    def all(self) -> list[Registration]:
        with self._lock:
            return [reg for regs in self._by_node.values() for reg in regs.values()]


__all__ = ["Registration", "RegistrationCache", "parse_xmlstatus", "registration_from_event"]
