"""QuickCall over HTTP (SPEC §6.1): ring a device, or all of a user's devices, then send the
call to a number. Turns documents into the plain values `esl_bridge.actions.quickcall` takes;
nothing reaches FreeSWITCH before the request is authorized and fully validated."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

from flask import Blueprint, Response, request

from esl_bridge import actions as fs
from esl_bridge import commands
from esl_bridge.errors import FreeSwitchUnavailable, JobTimeout
from models import account as accounts
from models import device as devices
from models import user as users
from models.documents import Document
from models.errors import NotFound, ValidationFailed
from models.query_params import read_query
from models.validation import Errors, add_error
from web.auth import api_key_in_query, current_identity, request_token
from web.envelope import request_id, success
from web.errors import Disabled, QuickcallFailed, Unauthorized
from web.privileges import own_device, own_user
from web.resource import acts, freeswitch_pool, gate, public, route
from web.side_effects import foreign_sip_realm, refuse_foreign_sip_realm, sip_identity

QUICKCALL_DEFAULT_TIMEOUT = 30
NUMBER_FILTER = str.maketrans("", "", " ,.-()")
# What a number may hold is the quoting gate's rule for the slot it goes into.
_NUMBER_RE = cast(re.Pattern[str], commands.SLOTS["number"].pattern)


def register(bp: Blueprint) -> None:
    route(bp, "@/devices/<device_id>/quickcall/<number>", ["GET", "POST"])(device_quickcall)
    route(bp, "@/users/<user_id>/quickcall/<number>", ["GET", "POST"])(user_quickcall)


@dataclass
class QuickcallParams:
    number: str
    cid_name: str | None
    cid_number: str | None
    auto_answer: bool
    timeout: int
    ignore_early_media: bool
    bypass_media: bool


def quickcall_params(number: str) -> QuickcallParams:
    """Parse and validate NUMBER and the query parameters; 400 naming each bad one."""
    args = request.args
    errors: Errors = {}
    values = read_query("quickcall", dict(args.items()), errors)
    if values.get("number_filter", True):
        number = number.translate(NUMBER_FILTER)
    if not _NUMBER_RE.fullmatch(number) or len(number.lstrip("+")) > 32:
        add_error(errors, "number", "pattern", "NUMBER must be digits, * and # (1 to 32), with an optional +")
    cid_name = args.get("cid-name")
    cid_number = args.get("cid-number")
    if cid_name is not None:
        cid_name = gate(cid_name, "cid_name", "cid-name", errors)
    if cid_number is not None:
        cid_number = gate(cid_number, "cid_number", "cid-number", errors)
    if errors:
        raise ValidationFailed(errors)
    timeout = values.get("timeout", 0)
    return QuickcallParams(
        number=number, cid_name=cid_name, cid_number=cid_number,
        auto_answer=values.get("auto_answer", True),
        # SPEC §6.1: a timeout of 3 seconds or less rings for the default instead.
        timeout=timeout if timeout > 3 else QUICKCALL_DEFAULT_TIMEOUT,
        ignore_early_media=values.get("ignore-early-media", True),
        bypass_media=values.get("media") == "bypass")


def _default_caller_id(docs_in_order: list[dict[str, Any]], fallback_user: str | None) -> tuple[str, str]:
    """The caller id NUMBER sees when none is asked for: external, then internal, of each
    document in turn; else the SIP username (as both, when it is digits)."""
    name = number = None
    for doc in docs_in_order:
        for kind in ("external", "internal"):
            cid = (doc.get("caller_id") or {}).get(kind) or {}
            name = name or cid.get("name")
            number = number or cid.get("number")
    fallback = fallback_user or "QuickCall"
    name = name or fallback
    number = number or (fallback if fallback.isdigit() else "0")
    return name, number


def _anonymous_allowed(account: Document, target: Document) -> bool:
    return bool(target.doc.get("allow_anonymous_quickcalls") or account.doc.get("allow_anonymous_quickcalls"))


def _quickcall_target(account_id: str, loader: Any, target_id: str) -> tuple[Document, Document]:
    """Account and target document, authenticated: a token (checked before the view) or, with
    no token, only when anonymous quickcalls are allowed (else 401, revealing nothing)."""
    identity = current_identity(required=False, api_key_in_query=True)
    if identity is None and request_token():
        raise Unauthorized()  # a token was given and is not valid: never taken as anonymous
    try:
        account = accounts.get_account(account_id)
        target = loader(account_id, target_id)
    except NotFound:
        if identity is None:
            raise Unauthorized() from None
        raise
    if identity is None and not _anonymous_allowed(account, target):
        raise Unauthorized()
    return account, target


def _callable(device: Document) -> bool:
    return device.doc.get("enabled", True) and not (device.doc.get("do_not_disturb") or {}).get("enabled")


def _run_quickcall(account: Document, endpoints: list[tuple[str, str]], params: QuickcallParams,
                   cid_docs: list[dict[str, Any]], fallback_user: str | None,
                   ids: dict[str, str]) -> Response:
    default_name, default_number = _default_caller_id(cid_docs, fallback_user)
    variables = {"esl_bridge_account_id": account.id, **ids, "esl_bridge_request_id": request_id()}
    call = fs.quickcall(
        freeswitch_pool(), endpoints=endpoints, number=params.number,
        context=account.doc.get("dialplan_context", "default"),
        cid_name=params.cid_name or default_name, cid_number=params.cid_number or default_number,
        timeout=params.timeout, auto_answer=params.auto_answer,
        ignore_early_media=params.ignore_early_media, bypass_media=params.bypass_media,
        variables=variables)
    data = call.to_dict()
    if request.method == "GET":
        return success(data)
    try:
        outcome = call.wait()
    except FreeSwitchUnavailable as exc:
        # No outcome in time, or none can arrive (the node's event connection dropped): the
        # caller is told it failed, so it must not ring on, nor dial the number once answered.
        call.cancel(freeswitch_pool())
        if isinstance(exc, JobTimeout):
            raise FreeSwitchUnavailable(f"no outcome for call {call.call_id} in time: {exc}", call.node) from exc
        raise
    if not outcome.ok:
        raise QuickcallFailed(outcome.cause or outcome.body.strip() or "unknown", data)
    answered = call.answered_by(outcome)  # phones on several nodes: the one that answered
    # The leg that answered (``+OK <uuid>``): with several phones, not always the first leg,
    # which alone carries the originate's own uuid.
    return success({**data, "call_id": outcome.value or answered.call_id, "job_id": answered.job_id,
                    "node": answered.node, "status": "answered"})


@public
@api_key_in_query
@acts
@own_device
def device_quickcall(account_id: str, device_id: str, number: str) -> Response:
    """Ring the device; once it answers, FreeSWITCH calls NUMBER as if the phone dialled it."""
    account, device = _quickcall_target(account_id, devices.get_device, device_id)
    params = quickcall_params(number)
    if not _callable(device):
        raise Disabled("device", "the device is disabled or in do-not-disturb")
    refuse_foreign_sip_realm(device)
    sip = sip_identity(device)
    if sip is None:
        raise ValidationFailed.single("sip.username", "required", "the device has no SIP credentials to ring")
    return _run_quickcall(account, [(sip.user, sip.realm)], params, [device.doc], sip.user,
                          {"esl_bridge_device_id": device.id})


@public
@api_key_in_query
@acts
@own_user
def user_quickcall(account_id: str, user_id: str, number: str) -> Response:
    """Ring every enabled device the user owns or is hotdesked into, at once."""
    account, user = _quickcall_target(account_id, users.get_user, user_id)
    params = quickcall_params(number)
    # A device whose SIP realm is another account's (stored before the rule) is left out (logged).
    ringing = [d for d in devices.user_devices(account_id, user_id)
               if _callable(d) and sip_identity(d) and foreign_sip_realm(d) is None]
    if not ringing:
        raise Disabled("devices", "the user has no enabled device to ring")
    endpoints = [(s.user, s.realm) for s in (sip_identity(d) for d in ringing) if s is not None]
    return _run_quickcall(account, endpoints, params, [user.doc] + [d.doc for d in ringing],
                          endpoints[0][0], {"esl_bridge_user_id": user.id})
