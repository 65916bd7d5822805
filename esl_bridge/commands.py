"""The exact text of every command esl-bridge sends.

Every builder here is a pure function: plain values in, the command text out (without the blank
line that ends an ESL frame). Every value that could come from a user (SIP user, realm, number,
caller id, presence id, event string, variables) passes through ``safe()``, the gate of
``esl_bridge.quoting`` (re-exported here), which validates it for the *slot* it is going into
and returns the text to insert, or raises ``UnsafeValue`` naming the field and the rule, before
anything reaches a socket. That module says what makes a value dangerous and what each slot
allows.
"""
from __future__ import annotations

import uuid as _uuid
from collections.abc import Iterable, Mapping

from .errors import UnsafeValue
from .quoting import PRESENCE_STATES, SLOTS, Slot, safe

#: The one subscription of an event connection (CUSTOM must come last: every word after it is
#: a subclass). FreeSWITCH answers ``+OK event listener enabled plain``.
EVENT_SUBSCRIPTION = (
    "event plain BACKGROUND_JOB CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_HANGUP_COMPLETE "
    "CUSTOM sofia::register sofia::unregister sofia::expire"
)

#: Namespace of the stable presence dialog ids of ``presence_set`` (uuid5 of the presence id).
PRESENCE_NAMESPACE = _uuid.UUID("5b0c2f57-6a3f-4b8e-9d1e-3c1f0e2a7d44")


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
    user/<user>@<realm> <number> XML <context>``

    With several legs ``origination_uuid`` moves to the first leg's ``[...]``
    (``{...}[origination_uuid=<call_id>]user/...,user/...``): in ``{}`` FreeSWITCH gives it to
    every leg, and each leg after the first fails with ``Duplicate UUID`` and never rings while
    the ``bgapi`` still answers ``+OK``. The other legs then get uuids of FreeSWITCH's own; a
    variable in ``{}`` (``esl_bridge_call_id``) reaches every leg. Each form is the one recorded
    on a real FreeSWITCH (one leg: esl2 120a; several: esl3 144).

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
    call_uuid = ("origination_uuid", safe(call_id, "uuid", "call_id"))
    pairs = [] if len(legs) > 1 else [call_uuid]
    pairs += [
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
    first_leg = f"[{'='.join(call_uuid)}]" if len(legs) > 1 else ""
    return (f"originate {{{block}}}{first_leg}{','.join(legs)} {number_text} XML "
            f"{safe(context, 'context')}")


def uuid_kill(call_id: str, cause: str | None = None) -> str:
    """``uuid_kill <uuid> [<cause>]``: hang a call up."""
    text = f"uuid_kill {safe(call_id, 'uuid', 'call_id')}"
    if cause is not None:
        text += f" {safe(cause, 'hangup_cause', 'cause')}"
    return text


def hupall(cause: str, variable: str, value: str) -> str:
    """``hupall <cause> <variable> <value>``: hang up every channel where ``variable`` is
    ``value`` (every leg of one originate, given a variable of its own in its ``{}``)."""
    return (f"hupall {safe(cause, 'hangup_cause', 'cause')} "
            f"{safe(variable, 'variable_name', 'variable')} {safe(value, 'uuid', 'value')}")


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
    "Slot",
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
