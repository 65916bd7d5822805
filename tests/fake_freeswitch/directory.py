"""The directory as the test FreeSWITCH sees it: mod_xml_curl's lookups, or its own stand-in.

With ``directory_url`` set, every lookup is the HTTP request a real FreeSWITCH 1.10 makes to its
``mod_xml_curl`` directory binding (``tests/data/xml_curl*/``): a form POST with HTTP basic auth,
whose first five fields (``hostname``, ``section``, ``tag_name``, ``key_name``, ``key_value``) are
written raw and the rest ``switch_url_encode``d: the REQUEST_PARAMS event headers, then what the
caller adds. The caller decides the rest:

- ``user_exists`` and the dialplan's ``${user_exists()}``: ``key=id&user=&domain=`` (xml_curl3/175);
- ``user_data``: ``type=var|param&key=id&user=&domain=`` (xml_curl3/160, 162);
- a ``user/`` leg of an originate: ``as_channel=true&action=user_call``, the originate's variables,
  then ``key``, ``user``, ``domain`` (xml_curl3/155).

The answer's ``<user>`` gives params and variables; ``cacheable="<ms>"`` keeps it that long, and
until then no request is made (xml_curl3/179, one request for two lookups). The not-found document,
another status or no answer make the user unknown (and nothing is cached).

Without ``directory_url``, a user exists unless the test says otherwise (``set_behaviour(...,
"unknown")`` or the ``directory`` callable), with the vanilla dial-string, ``user_context`` and the
variables of its registration.
"""
from __future__ import annotations

import base64
import logging
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import requests

from .curl import bare_session
from .wire import fs_url_encode

if TYPE_CHECKING:
    from .server import FakeFreeSwitch

log = logging.getLogger("fake_freeswitch")

VANILLA_DIAL_STRING = ("{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@"
                       "${dialed_domain}}${sofia_contact(*/${dialed_user}@${dialed_domain})}")

#: Event-Calling-File, -Function and -Line-Number of each lookup, as recorded
CALLERS = {
    "user_exists": ("switch_xml.c", "switch_xml_locate_user", "2258"),
    "user_data": ("mod_commands.c", "user_data_function", "1328"),
    "user_call": ("mod_dptools.c", "user_outgoing_channel", "4368"),
}


@dataclass
class DirectoryUser:
    """A ``<user>`` of a directory answer."""

    params: dict[str, str] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)
    cacheable_ms: int = 0


def parse_user(document: str, user: str) -> DirectoryUser | None:
    """The user of a directory document, or None for the not-found document (or garbage)."""
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return None
    for found in root.iter("user"):
        if found.get("id", "").lower() != user.lower():
            continue
        return DirectoryUser(
            params={p.get("name", ""): p.get("value", "") for p in found.iter("param")},
            variables={v.get("name", ""): v.get("value", "") for v in found.iter("variable")},
            cacheable_ms=int(found.get("cacheable") or 0) if (found.get("cacheable") or "0")
            .isdigit() else 0)
    return None


class Directory:
    """Directory lookups; mixed into ``FakeFreeSwitch`` (see the module docstring)."""

    def lookup_form(self: FakeFreeSwitch, caller: str, user: str, domain: str,
                    extra: Iterable[tuple[str, str]] = ()) -> str:
        """The form body mod_xml_curl posts for one lookup."""
        calling_file, calling_function, line = CALLERS[caller]
        event = {**self._common(self._now()), "Event-Calling-File": calling_file,
                 "Event-Calling-Function": calling_function, "Event-Calling-Line-Number": line}
        order = ("Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
                 "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp",
                 "Event-Calling-File", "Event-Calling-Function", "Event-Calling-Line-Number",
                 "Event-Sequence")
        raw = [("hostname", self.switchname), ("section", "directory"), ("tag_name", "domain"),
               ("key_name", "name"), ("key_value", domain)]
        encoded = [("Event-Name", "REQUEST_PARAMS"), *((name, event[name]) for name in order),
                   *extra, ("key", "id"), ("user", user), ("domain", domain)]
        return "&".join([f"{name}={value}" for name, value in raw]
                        + [f"{name}={fs_url_encode(value)}" for name, value in encoded])

    def directory_user(self: FakeFreeSwitch, caller: str, user: str, domain: str,
                       extra: Iterable[tuple[str, str]] = ()) -> DirectoryUser | None:
        """The user as ``caller`` finds it: from the cache, the binding, or the stand-in."""
        key = (user.lower(), domain.lower())
        cached = self._cached_users.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        if self.directory_url is None:
            if self.behaviour(user, domain) == "unknown":
                return None
            reg = self.registration_for(user, domain)
            variables = {"user_context": reg.context if reg else "default",
                         **(reg.variables if reg else {})}
            return DirectoryUser({"dial-string": VANILLA_DIAL_STRING}, variables)
        form = self.lookup_form(caller, user, domain, extra)
        self.directory_requests.append(form)
        headers = {}
        if self.directory_auth:
            token = base64.b64encode(":".join(self.directory_auth).encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        # The headers libcurl sends, in its order (xml_curl3/175).
        headers.update({"User-Agent": "freeswitch-xml/1.0", "Accept": "*/*",
                        "Content-Length": "", "Content-Type": "application/x-www-form-urlencoded"})
        try:
            answer = bare_session().post(self.directory_url, data=form.encode(),
                                         headers=headers, timeout=5)
        except requests.RequestException as exc:
            log.info("fake FreeSWITCH: directory binding failed: %s", exc)
            return None
        found = parse_user(answer.text, user) if answer.status_code == 200 else None
        if found is not None and found.cacheable_ms:
            self._cached_users[key] = (time.monotonic() + found.cacheable_ms / 1000, found)
            self.directory_cache.add(key)
        return found

    def flush_directory_cache(self: FakeFreeSwitch, user: str, domain: str) -> int:
        """``xml_flush_cache id <user> <domain>``: how many entries it cleared."""
        key = (user.lower(), domain.lower())
        self._cached_users.pop(key, None)
        if key in self.directory_cache:
            self.directory_cache.discard(key)
            return 1
        return 0
