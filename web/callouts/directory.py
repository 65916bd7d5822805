"""The ``mod_xml_curl`` directory (SPEC §7): the user XML for an enabled device, else the
explicit not-found document. FreeSWITCH calls it on every registration: one indexed lookup."""
from __future__ import annotations

import hashlib
import hmac
import logging
import re

from flask import Response

from models import device as devices
from models import presence
from models.account import realm_of_another_account
from models.device import DirectoryEntry
from web.callouts.directory_xml import NOT_FOUND, dial_string, forward_dial_string, user_document
from web.callouts.guard import REALM_RE, SIP_USER_RE, FormFields, Refused, form_fields
from web.resource import runtime

log = logging.getLogger(__name__)

# A call-forward number as dialled through loopback: what the schema allows, punctuation dropped.
DIALABLE_JUNK_RE = re.compile(r"[() .-]")
DIALABLE_RE = re.compile(r"^\+?[0-9*#]{1,32}\Z")
CONTEXT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")

# mod_xml_curl actions answered with a user; everything else gets the not-found document.
USER_ACTIONS = {"sip_auth", "user_call", None}


def _xml(text: str) -> Response:
    return Response(text, content_type="text/xml; charset=utf-8")  # as mimetype="text/xml" gives


def directory() -> Response:
    """Answer one `mod_xml_curl` directory lookup with the user XML or the not-found document."""
    try:
        fields = form_fields()
        entry = _directory_lookup(fields)
    except Refused as exc:
        log.warning("directory lookup refused: %s", exc)
        return _xml(NOT_FOUND)
    if entry is None:
        return _xml(NOT_FOUND)
    user, realm = fields["user"], fields["domain"]
    presence_id = _directory_presence_id(entry, user, realm)
    forward = _forward(entry)
    if forward is None:
        dial = dial_string(presence_id)
    else:
        number, ring_phone = forward
        dial = forward_dial_string(presence_id, number, _context(entry), ring_phone)
    return _xml(user_document(
        realm=realm,
        user=user,
        a1_hash=_a1_hash(entry, user, realm),
        dial=dial,
        variables=_directory_variables(entry, presence_id),
    ))


def _password(entry: DirectoryEntry) -> str | None:
    """The device's SIP password when it authenticates with one."""
    sip = entry.device.doc.get("sip") or {}
    if sip.get("method", "password") != "password":
        return None
    return sip.get("password") or None


def _a1_hash(entry: DirectoryEntry, user: str, realm: str) -> str:
    """md5 of `user:realm:password`. A forwarded device without a password gets one nobody
    knows (derived from the shared secret and its id): FreeSWITCH can dial it, nothing can
    register as it, and the credential is never empty (an empty one lets any password in)."""
    password = _password(entry)
    if password is None:
        secret = (runtime().settings.freeswitch_secret or "").encode()
        password = hmac.new(secret, entry.device.id.encode(), hashlib.sha256).hexdigest()
    return hashlib.md5(f"{user}:{realm}:{password}".encode()).hexdigest()


def _context(entry: DirectoryEntry) -> str:
    return entry.account.doc.get("dialplan_context", "default")


def _forward(entry: DirectoryEntry) -> tuple[str, bool] | None:
    """`(number, ring the phone too)` when the device's calls go to its call-forward number
    (Kazoo's `call_forward`: `substitute`, default true, replaces the phone); else None."""
    forward = entry.device.doc.get("call_forward") or {}
    if not forward.get("enabled") or not isinstance(forward.get("number"), str):
        return None
    number = DIALABLE_JUNK_RE.sub("", forward["number"])
    if not DIALABLE_RE.match(number) or not CONTEXT_RE.match(_context(entry)):
        log.warning("device %s: call-forward number %r or context not dialable; not forwarded",
                    entry.device.id, forward["number"])
        return None
    ring_phone = forward.get("substitute") is False and _password(entry) is not None
    return number, ring_phone


def _directory_lookup(fields: FormFields) -> DirectoryEntry | None:
    if fields.get("section") != "directory" or "purpose" in fields:
        return None
    action = fields.get("action")
    if action not in USER_ACTIONS:
        return None
    user, domain = fields.get("user"), fields.get("domain")
    if not user or not domain:
        return None
    if fields.get("key", "id") != "id":
        return None
    # FreeSWITCH does not URL-encode key_value, and it is the realm the phone wrote into its
    # digest: the three realms must agree or someone is smuggling fields.
    realms = {fields[k].lower() for k in ("key_value", "domain", "sip_auth_realm") if k in fields}
    if len(realms) != 1:
        raise Refused(f"realms disagree: {sorted(realms)}")
    if "sip_auth_username" in fields and fields["sip_auth_username"].lower() != user.lower():
        raise Refused("sip_auth_username and user disagree")
    if not SIP_USER_RE.match(user) or not REALM_RE.match(domain):
        raise Refused(f"unsafe user or domain {user!r}@{domain!r}")
    entry = devices.directory_entry(domain, user)
    if entry is None or not entry.device.doc.get("enabled", True):
        return None
    if domain.lower() != entry.account.doc["realm"].lower() and \
            realm_of_another_account(entry.device.account_id, domain):
        # Stored before the rule that refuses it: answering would hand this account another
        # account's registrations (and its phone's calls).
        raise Refused(f"device {entry.device.id}: realm {domain} belongs to another account")
    if _password(entry) is None and _forward(entry) is None:
        # Nothing to dial and nothing to authenticate with (see _a1_hash for forwarded ones).
        return None
    return entry


def _directory_presence_id(entry: DirectoryEntry, user: str, realm: str) -> str:
    # A presence id of another realm (stored before the rule) is ignored: never another
    # account's lamp in the dial-string.
    return presence.static_presence_id(entry.device.doc, entry.account.doc["realm"]) or f"{user}@{realm}"


def _caller_id(entry: DirectoryEntry, kind: str) -> dict[str, str]:
    """The device's caller id of `kind`, else its owner's (Kazoo's order)."""
    for doc in (entry.device.doc, entry.owner.doc if entry.owner else {}):
        value = (doc.get("caller_id") or {}).get(kind) or {}
        if value.get("name") or value.get("number"):
            return {k: v for k, v in value.items() if k in ("name", "number") and isinstance(v, str)}
    return {}


def _directory_variables(entry: DirectoryEntry, presence_id: str) -> list[tuple[str, str]]:
    variables = [("user_context", entry.account.doc.get("dialplan_context", "default")),
                 ("presence_id", presence_id)]
    internal, external = _caller_id(entry, "internal"), _caller_id(entry, "external")
    for prefix, cid in (("effective", internal), ("outbound", external)):
        for part in ("name", "number"):
            if cid.get(part):
                variables.append((f"{prefix}_caller_id_{part}", cid[part]))
    variables.append(("esl_bridge_account_id", entry.account.id))
    variables.append(("esl_bridge_device_id", entry.device.id))
    if entry.owner is not None:
        variables.append(("esl_bridge_owner_id", entry.owner.id))
    return variables
