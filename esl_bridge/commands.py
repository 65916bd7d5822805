"""The exact text of every command esl-bridge sends, and the one gate values pass through.

Every builder here is a pure function: plain values in, the command text out (without the blank
line that ends an ESL frame). Every value that could come from a user (SIP user, realm, number,
caller id, presence id, event string, variables) passes through ``safe()``, which validates it
for the *slot* it is going into and returns the text to insert, single-quoted where a space must
be kept inside an originate ``{}`` block. ``safe()`` raises ``UnsafeValue`` (a ``ValueError``)
naming the field and the rule, before anything reaches a socket.

What makes a value dangerous (``freeswitch/README.md``): a newline ends the command and starts
another (``api``/``bgapi`` injection); in ``originate``, arguments split on spaces, ``'`` groups,
backslash escapes, ``{}``/``[]``/``<>`` blocks end at the first closing bracket and split on ``,``
(or a ``^^X`` separator), ``|`` and ``,`` separate legs, ``${...}`` expands variables when
``origination_nested_vars=true`` appears anywhere, ``&app(...)`` runs an application; in
``sendevent``, a header line ``content-length`` reads a body and a newline adds headers. So the
gate refuses, in every slot: control characters (CR, LF, NUL, TAB...), Unicode format and
line-separator characters, backslash, both quotes and the backquote, ``{}[]<>``, ``,``, ``|``,
``^``, ``$``, ``%``, ``:`` (hence ``:_:``) and ``&``; then each slot allows only its own
characters (for example a realm is hostname characters, a number ``+?[0-9*#]``).
"""
from __future__ import annotations

import re
import unicodedata
import uuid as _uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import UnsafeValue

#: The one subscription of an event connection (CUSTOM must come last: every word after it is
#: a subclass). FreeSWITCH answers ``+OK event listener enabled plain``.
EVENT_SUBSCRIPTION = (
    "event plain BACKGROUND_JOB CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE "
    "CUSTOM sofia::register sofia::unregister sofia::expire"
)

#: Namespace of the stable presence dialog ids of ``presence_set`` (uuid5 of the presence id).
PRESENCE_NAMESPACE = _uuid.UUID("5b0c2f57-6a3f-4b8e-9d1e-3c1f0e2a7d44")

PRESENCE_STATES = ("early", "confirmed", "terminated")

# Characters refused in every slot, with the reason a reader of the error needs.
_FORBIDDEN = {
    "\\": "a backslash, which FreeSWITCH treats as an escape",
    "'": "a single quote, which would end a quoted value",
    '"': "a double quote",
    "`": "a backquote",
    "{": "'{', which opens a variable block",
    "}": "'}', which ends a variable block",
    "[": "'[', which opens a per-leg variable block",
    "]": "']', which ends a per-leg variable block",
    "<": "'<', which opens a variable block",
    ">": "'>', which ends a variable block",
    ",": "a comma, which separates variables and call legs",
    "|": "'|', which separates call legs",
    "^": "'^', which can redefine the variable separator (^^)",
    "$": "'$', which can expand a variable (${...})",
    "%": "'%', which FreeSWITCH may URL-decode into anything",
    ":": "':', which can form the ':_:' separator and header syntax",
    "&": "'&', which starts an application (&app(...))",
}

_CONTROL_NAMES = {
    "\r": "a carriage return (CR)",
    "\n": "a line feed (LF), which would end the command and start another",
    "\0": "a NUL byte",
    "\t": "a tab",
}

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"


@dataclass(frozen=True)
class Slot:
    """What one kind of value may contain: a pattern, a length range, and quoting."""

    pattern: re.Pattern[str] | None
    min_length: int
    max_length: int
    description: str
    #: wrap in single quotes when the value holds a space (only inside an originate {} block)
    quote_spaces: bool = False


SLOTS: dict[str, Slot] = {
    "user": Slot(re.compile(r"[A-Za-z0-9._+-]+"), 1, 64,
                 "letters, digits and ._+-"),
    "realm": Slot(re.compile(_HOST), 1, 253,
                  "hostname characters (letters, digits, '.', '-')"),
    "profile": Slot(re.compile(r"[A-Za-z0-9._-]+"), 1, 64, "letters, digits and ._-"),
    "context": Slot(re.compile(r"[A-Za-z0-9._-]+"), 1, 64, "letters, digits and ._-"),
    "number": Slot(re.compile(r"\+?[0-9*#]+"), 1, 33,
                   "digits, '*' and '#', with an optional leading '+'"),
    "cid_number": Slot(re.compile(r"\+?[0-9]+"), 1, 35,
                       "digits with an optional leading '+'"),
    "cid_name": Slot(None, 1, 35,
                     "letters, digits, spaces and .-_()+, no leading or trailing space",
                     quote_spaces=True),
    "presence_id": Slot(re.compile(r"[A-Za-z0-9._+*#-]{1,128}@" + _HOST), 3, 253,
                        "<id>@<realm>, the id of letters, digits and ._+*#-"),
    "event_string": Slot(
        re.compile(r"[A-Za-z0-9._-]+(?:;[A-Za-z0-9._-]+(?:=[A-Za-z0-9._-]+)?)*"), 1, 128,
        "a token with optional ;name=value parameters (letters, digits, ._-)"),
    "uuid": Slot(re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                            r"[0-9a-fA-F]{12}"), 36, 36, "a UUID"),
    "variable_name": Slot(re.compile(r"esl_bridge_[a-z0-9_]+"), 12, 64,
                          "esl_bridge_ followed by lower-case letters, digits and _"),
    "variable_value": Slot(re.compile(r"[A-Za-z0-9._@+-]+"), 1, 128,
                           "letters, digits and ._@+-"),
    "hangup_cause": Slot(re.compile(r"[A-Z_]+"), 1, 64, "upper-case letters and _"),
}

_CID_NAME_EXTRA = frozenset(" .-_()+")


def _describe(char: str) -> str:
    if char in _CONTROL_NAMES:
        return _CONTROL_NAMES[char]
    if char in _FORBIDDEN:
        return _FORBIDDEN[char]
    name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}{' ' + name if name else ''}"


def _forbidden(char: str) -> bool:
    if char in _FORBIDDEN:
        return True
    if char.isascii():
        return not char.isprintable()
    # Controls, format characters (zero-width, bidi overrides), line and paragraph separators,
    # surrogates, private use and unassigned code points: invisible or line-breaking.
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def safe(value: object, kind: str, field: str | None = None) -> str:
    """The validation-and-quoting gate: return ``value`` as it may appear in slot ``kind``.

    ``kind`` is a key of ``SLOTS`` (``user``, ``realm``, ``cid_name``...), or ``timeout`` (an int
    of seconds, 1..3600) or ``presence_state``. ``field`` names the value in the error (default
    ``kind``). Raises ``UnsafeValue`` with rule ``type``, ``minLength``, ``maxLength``,
    ``forbidden``, ``pattern`` or ``enum``.
    """
    field = field or kind
    if kind == "timeout":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnsafeValue(field, "type", "must be a whole number of seconds")
        if not 1 <= value <= 3600:
            raise UnsafeValue(field, "pattern", "must be between 1 and 3600 seconds")
        return str(value)
    if kind == "presence_state":
        if value not in PRESENCE_STATES:
            raise UnsafeValue(field, "enum", f"must be one of {', '.join(PRESENCE_STATES)}")
        return str(value)
    slot = SLOTS.get(kind)
    if slot is None:
        raise KeyError(f"no such slot: {kind}")
    if not isinstance(value, str):
        raise UnsafeValue(field, "type", "must be a string")
    if len(value) < slot.min_length:
        raise UnsafeValue(field, "minLength",
                          "must not be empty" if not value else
                          f"must be at least {slot.min_length} characters")
    for char in value:
        if _forbidden(char):
            raise UnsafeValue(field, "forbidden", f"contains {_describe(char)}")
    if len(value) > slot.max_length:
        raise UnsafeValue(field, "maxLength", f"must be at most {slot.max_length} characters")
    if slot.pattern is not None:
        if not slot.pattern.fullmatch(value):
            raise UnsafeValue(field, "pattern", f"may only contain {slot.description}")
    elif kind == "cid_name":
        for char in value:
            if not (char in _CID_NAME_EXTRA or ("0" <= char <= "9")
                    or unicodedata.category(char).startswith("L")):
                raise UnsafeValue(field, "pattern",
                                  f"contains {_describe(char)}; may only contain "
                                  f"{slot.description}")
        if value != value.strip(" "):
            raise UnsafeValue(field, "pattern", "must not start or end with a space")
    if slot.quote_spaces and " " in value:
        # Inside an originate {} block a single quote pair keeps spaces; nothing in the value can
        # close it early since quotes were refused above.
        return f"'{value}'"
    return value


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


# ---------------------------------------------------------------------- frames


def api(command: str) -> str:
    """``api <command>``: runs on the connection's own thread in FreeSWITCH."""
    return f"api {command}"


def bgapi(command: str, job_uuid: str) -> str:
    """``bgapi <command>`` with our own ``Job-UUID:`` header line (FreeSWITCH honours it)."""
    return f"bgapi {command}\nJob-UUID: {safe(job_uuid, 'uuid', 'job_uuid')}"


# ---------------------------------------------------------------------- SPEC 6.1 QuickCall


def originate(
    *,
    call_id: str,
    endpoints: Iterable[tuple[str, str]],
    number: str,
    context: str,
    cid_name: str,
    cid_number: str,
    timeout: int = 30,
    auto_answer: bool = True,
    ignore_early_media: bool = True,
    bypass_media: bool = False,
    variables: Mapping[str, str] | None = None,
    origination_cid_name: str = "Device QuickCall",
) -> str:
    """The ``originate`` of a QuickCall (SPEC 6.1), without ``bgapi``.

    ``originate {origination_uuid=<call_id>,origination_caller_id_name='Device QuickCall',
    origination_caller_id_number=<number>,effective_caller_id_name=<cid_name>,
    effective_caller_id_number=<cid_number>,originate_timeout=<timeout>,
    ignore_early_media=true|false[,bypass_media=true][,sip_auto_answer=true][,<variables>]}
    user/<user>@<realm>[,user/...] <number> XML <context>``

    The phone shows ``origination_caller_id_*`` (the number it will call); ``number`` sees
    ``effective_caller_id_*``. ``sip_auto_answer`` is left out unless ``auto_answer`` and exactly
    one endpoint rings. ``variables`` must be named ``esl_bridge_*`` (so that no caller can set
    ``execute_on_answer``, ``api_hangup_hook`` or ``origination_nested_vars``); they come last, in
    the mapping's order.
    """
    legs = []
    seen = set()
    for index, endpoint in enumerate(endpoints):
        if not isinstance(endpoint, tuple | list) or len(endpoint) != 2:
            raise UnsafeValue(f"endpoints.{index}", "type", "must be a (user, realm) pair")
        user = safe(endpoint[0], "user", f"endpoints.{index}.user")
        realm = safe(endpoint[1], "realm", f"endpoints.{index}.realm")
        key = (user.lower(), realm.lower())
        if key not in seen:
            seen.add(key)
            legs.append(f"user/{user}@{realm}")
    if not legs:
        raise UnsafeValue("endpoints", "minLength", "at least one endpoint is required")
    if len(legs) > 32:
        raise UnsafeValue("endpoints", "maxLength", "at most 32 endpoints")
    number_text = safe(number, "number")
    pairs = [
        ("origination_uuid", safe(call_id, "uuid", "call_id")),
        ("origination_caller_id_name",
         safe(origination_cid_name, "cid_name", "origination_cid_name")),
        ("origination_caller_id_number", number_text),
        ("effective_caller_id_name", safe(cid_name, "cid_name")),
        ("effective_caller_id_number", safe(cid_number, "cid_number")),
        ("originate_timeout", safe(timeout, "timeout")),
        ("ignore_early_media", _bool(ignore_early_media)),
    ]
    if bypass_media:
        pairs.append(("bypass_media", "true"))
    if auto_answer and len(legs) == 1:
        pairs.append(("sip_auto_answer", "true"))
    for name, value in (variables or {}).items():
        pairs.append((safe(name, "variable_name", "variables"),
                      safe(value, "variable_value", f"variables.{name}")))
    block = ",".join(f"{name}={value}" for name, value in pairs)
    return (f"originate {{{block}}}{','.join(legs)} {number_text} XML "
            f"{safe(context, 'context')}")


def uuid_kill(call_id: str, cause: str | None = None) -> str:
    """``uuid_kill <uuid> [<cause>]``: hang a call up."""
    text = f"uuid_kill {safe(call_id, 'uuid', 'call_id')}"
    if cause is not None:
        text += f" {safe(cause, 'hangup_cause', 'cause')}"
    return text


# ---------------------------------------------------------------------- SPEC 6.2 check-sync


def check_sync_notify(*, profile: str, user: str, realm: str, event_string: str) -> str:
    """``sendevent NOTIFY`` that makes a phone re-read its configuration (SPEC 6.2).

    All five headers are required: FreeSWITCH silently sends nothing when one is missing, and
    answers ``+OK`` anyway.
    """
    return (
        "sendevent NOTIFY\n"
        f"profile: {safe(profile, 'profile')}\n"
        f"event-string: {safe(event_string, 'event_string')}\n"
        f"user: {safe(user, 'user')}\n"
        f"host: {safe(realm, 'realm')}\n"
        "content-type: application/simple-message-summary"
    )


# ---------------------------------------------------------------------- SPEC 6.3 presence


def presence_reset(presence_id: str) -> str:
    """``sendevent PRESENCE_IN`` that clears a BLF (SPEC 6.3), with no ``unique-id``.

    Every watcher then receives an empty full dialog-info document, as for an idle line.
    """
    pid = safe(presence_id, "presence_id")
    return (
        "sendevent PRESENCE_IN\n"
        "proto: sip\n"
        f"from: {pid}\n"
        f"login: {pid}\n"
        "rpid: unknown\n"
        "status: Idle\n"
        "event_type: presence\n"
        "alt_event_type: dialog\n"
        "event_count: 1\n"
        "channel-state: CS_HANGUP\n"
        "answer-state: terminated\n"
        "presence-call-direction: outbound"
    )


def presence_dialog_id(presence_id: str) -> str:
    """The stable ``unique-id`` of ``presence_set`` for a presence id (uuid5, case-insensitive).

    Derived, not random, so that ``set early`` then ``set terminated`` talk about the same dialog;
    a uuid5 never names a live channel (FreeSWITCH's are uuid4), which would divert the event.
    """
    return str(_uuid.uuid5(PRESENCE_NAMESPACE, safe(presence_id, "presence_id").lower()))


# answer-state -> (status, channel-state). With a unique-id, sofia takes the dialog state from
# answer-state; CS_HANGUP would also mark the pidf view terminated, so it is kept for terminated.
_PRESENCE_SET = {
    "early": ("Ring", "CS_ROUTING"),
    "confirmed": ("Talk", "CS_EXCHANGE_MEDIA"),
    "terminated": ("Idle", "CS_HANGUP"),
}


def presence_set(presence_id: str, state: str) -> str:
    """``sendevent PRESENCE_IN`` that sets a BLF to early, confirmed or terminated (SPEC 6.3).

    The reset event plus a stable ``unique-id`` (``presence_dialog_id``) placed before
    ``channel-state`` (as FreeSWITCH's own presence events order them), with ``answer-state``
    set to the state.
    """
    pid = safe(presence_id, "presence_id")
    status, channel_state = _PRESENCE_SET[safe(state, "presence_state", "state")]
    return (
        "sendevent PRESENCE_IN\n"
        "proto: sip\n"
        f"from: {pid}\n"
        f"login: {pid}\n"
        "rpid: unknown\n"
        f"status: {status}\n"
        "event_type: presence\n"
        "alt_event_type: dialog\n"
        "event_count: 1\n"
        f"unique-id: {presence_dialog_id(pid)}\n"
        f"channel-state: {channel_state}\n"
        f"answer-state: {state}\n"
        "presence-call-direction: outbound"
    )


# ---------------------------------------------------------------------- SPEC 6.4, 6.5


def xmlstatus_realm(profile: str, realm: str) -> str:
    """``sofia xmlstatus profile <p> user @<realm>``: exactly the realm's registrations."""
    return f"sofia xmlstatus profile {safe(profile, 'profile')} user @{safe(realm, 'realm')}"


def xmlstatus_user(profile: str, user: str, realm: str) -> str:
    """``sofia xmlstatus profile <p> user <user>@<realm>``: one user's registrations."""
    return (f"sofia xmlstatus profile {safe(profile, 'profile')} user "
            f"{safe(user, 'user')}@{safe(realm, 'realm')}")


def xmlstatus_profile(profile: str) -> str:
    """``sofia xmlstatus profile <p> reg``: every registration of a profile (full refresh)."""
    return f"sofia xmlstatus profile {safe(profile, 'profile')} reg"


def xml_flush_cache(user: str, realm: str) -> str:
    """``xml_flush_cache id <user> <realm>``: forget a cached directory entry (per node)."""
    return f"xml_flush_cache id {safe(user, 'user')} {safe(realm, 'realm')}"


def flush_inbound_reg(profile: str, user: str, realm: str) -> str:
    """``sofia profile <p> flush_inbound_reg <user>@<realm>``: forget a registration.

    Never with ``reboot``: it makes FreeSWITCH send a User-Agent-chosen reboot NOTIFY, and placed
    wrongly it flushes every phone of the profile.
    """
    return (f"sofia profile {safe(profile, 'profile')} flush_inbound_reg "
            f"{safe(user, 'user')}@{safe(realm, 'realm')}")


__all__ = [
    "EVENT_SUBSCRIPTION",
    "PRESENCE_STATES",
    "SLOTS",
    "api",
    "bgapi",
    "check_sync_notify",
    "flush_inbound_reg",
    "originate",
    "presence_dialog_id",
    "presence_reset",
    "presence_set",
    "safe",
    "uuid_kill",
    "xml_flush_cache",
    "xmlstatus_profile",
    "xmlstatus_realm",
    "xmlstatus_user",
]
