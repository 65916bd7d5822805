"""FreeSWITCH actions over HTTP (SPEC §6): QuickCall, check-sync, presence reset and
registration status. Each turns documents into the plain values `esl_bridge.actions` takes;
nothing reaches FreeSWITCH before the request is authorized and fully validated."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, g, request

from esl_bridge import actions as fs
from esl_bridge import commands
from esl_bridge.errors import FreeSwitchUnavailable, JobTimeout, UnsafeValue
from models import account as accounts
from models import device as devices
from models import user as users
from models.documents import Document
from models.errors import NotFound, ValidationFailed
from models.validation import Errors, add_error
from web.auth import current_identity, request_token
from web.envelope import request_id, success
from web.errors import Disabled, QuickcallFailed, Unauthorized
from web.resource import public, route, runtime
from web.side_effects import check_sync_event, sip_identity

log = logging.getLogger(__name__)

QUICKCALL_DEFAULT_TIMEOUT = 30
QUICKCALL_MAX_TIMEOUT = 120
NUMBER_FILTER = str.maketrans("", "", " ,.-()")
PRESENCE_STATES = ("early", "confirmed", "terminated")


def register(bp: Blueprint) -> None:
    route(bp, "@/devices/<device_id>/quickcall/<number>", ["GET", "POST"])(device_quickcall)
    route(bp, "@/users/<user_id>/quickcall/<number>", ["GET", "POST"])(user_quickcall)
    route(bp, "@/devices/<device_id>/sync", ["POST"])(device_sync)
    route(bp, "@/devices/<device_id>/presence", ["POST"])(device_presence)
    route(bp, "@/users/<user_id>/presence", ["POST"])(user_presence)
    route(bp, "@/devices/status", ["GET"])(device_status)


def pool() -> Any:
    """The running ESL pool; 503 when esl-bridge was started without FreeSWITCH."""
    found = runtime().pool
    if found is None:
        raise FreeSwitchUnavailable("no FreeSWITCH node is configured")
    return found


# ---------------------------------------------------------------------------------------------
# QuickCall (SPEC §6.1)

@dataclass
class QuickcallParams:
    number: str
    cid_name: str | None
    cid_number: str | None
    auto_answer: bool
    timeout: int
    ignore_early_media: bool
    bypass_media: bool


def _flag(args: Any, name: str, default: bool, errors: Errors) -> bool:
    raw = args.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    add_error(errors, name, "enum", "Value not found in enumerated list of values", target=["true", "false"])
    return default


def _gate(value: str, kind: str, field: str, errors: Errors) -> str | None:
    """Check a value with the ESL quoting gate itself, reporting a refusal as `field`."""
    try:
        commands.safe(value, kind, field)
        return value
    except UnsafeValue as exc:
        rule = "pattern" if exc.rule == "forbidden" else exc.rule
        add_error(errors, field, rule, exc.message)
        return None


def quickcall_params(number: str) -> QuickcallParams:
    """Parse and validate NUMBER and the query parameters; 400 naming each bad one."""
    args = request.args
    errors: Errors = {}
    if _flag(args, "number_filter", True, errors):
        number = number.translate(NUMBER_FILTER)
    if not commands.SLOTS["number"].pattern.fullmatch(number) or len(number.lstrip("+")) > 32:
        add_error(errors, "number", "pattern", "NUMBER must be digits, * and # (1 to 32), with an optional +")
    cid_name = args.get("cid-name")
    cid_number = args.get("cid-number")
    if cid_name is not None:
        cid_name = _gate(cid_name, "cid_name", "cid-name", errors)
    if cid_number is not None:
        cid_number = _gate(cid_number, "cid_number", "cid-number", errors)
    timeout = QUICKCALL_DEFAULT_TIMEOUT
    if "timeout" in args:
        raw = args["timeout"]
        # str.isdigit() alone also accepts '²' and other scripts' digits (int() then fails or
        # reads them), and int() refuses more than 4300 digits: both were a 500.
        if not (raw.isascii() and raw.isdigit()):
            add_error(errors, "timeout", "type", "timeout must be a whole number of seconds", target="integer")
        elif len(raw.lstrip("0")) > 3 or int(raw) > QUICKCALL_MAX_TIMEOUT:
            add_error(errors, "timeout", "maximum", f"timeout must be at most {QUICKCALL_MAX_TIMEOUT}",
                      target=QUICKCALL_MAX_TIMEOUT)
        elif int(raw) > 3:
            timeout = int(raw)
    media = args.get("media", "process")
    if media not in ("process", "bypass"):
        add_error(errors, "media", "enum", "Value not found in enumerated list of values", target=["process", "bypass"])
    params = QuickcallParams(
        number=number, cid_name=cid_name, cid_number=cid_number,
        auto_answer=_flag(args, "auto_answer", True, errors), timeout=timeout,
        ignore_early_media=_flag(args, "ignore-early-media", True, errors),
        bypass_media=media == "bypass")
    if errors:
        raise ValidationFailed(errors)
    return params


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
    identity = current_identity(required=False)
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
        pool(), endpoints=endpoints, number=params.number,
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
    except JobTimeout as exc:
        raise FreeSwitchUnavailable(f"no outcome for call {call.call_id} in time: {exc}", call.node) from exc
    if not outcome.ok:
        raise QuickcallFailed(outcome.cause or outcome.body.strip() or "unknown", data)
    answered = call.answered_by(outcome)  # phones on several nodes: the one that answered
    # The leg that answered (``+OK <uuid>``): with several phones, not always the first leg,
    # which alone carries the originate's own uuid.
    return success({**data, "call_id": outcome.value or answered.call_id, "job_id": answered.job_id,
                    "node": answered.node, "status": "answered"})


@public
def device_quickcall(account_id: str, device_id: str, number: str) -> Response:
    """Ring the device; once it answers, FreeSWITCH calls NUMBER as if the phone dialled it."""
    account, device = _quickcall_target(account_id, devices.get_device, device_id)
    params = quickcall_params(number)
    if not _callable(device):
        raise Disabled("device", "the device is disabled or in do-not-disturb")
    sip = sip_identity(device)
    if sip is None:
        raise ValidationFailed.single("sip.username", "required", "the device has no SIP credentials to ring")
    return _run_quickcall(account, [(sip.user, sip.realm)], params, [device.doc], sip.user,
                          {"esl_bridge_device_id": device.id})


@public
def user_quickcall(account_id: str, user_id: str, number: str) -> Response:
    """Ring every enabled device the user owns or is hotdesked into, at once."""
    account, user = _quickcall_target(account_id, users.get_user, user_id)
    params = quickcall_params(number)
    ringing = [d for d in devices.user_devices(account_id, user_id) if _callable(d) and sip_identity(d)]
    if not ringing:
        raise Disabled("devices", "the user has no enabled device to ring")
    endpoints = [(s.user, s.realm) for s in (sip_identity(d) for d in ringing) if s is not None]
    return _run_quickcall(account, endpoints, params, [user.doc] + [d.doc for d in ringing],
                          endpoints[0][0], {"esl_bridge_user_id": user.id})


# ---------------------------------------------------------------------------------------------
# Sync (SPEC §6.2)

def device_sync(account_id: str, device_id: str) -> Response:
    """Send the device's check-sync NOTIFY where it is registered."""
    device = devices.get_device(account_id, device_id)
    reboot_arg = request.args.get("reboot")
    reboot = None
    if reboot_arg is not None:
        if reboot_arg.lower() not in ("true", "false"):
            raise ValidationFailed.single("reboot", "enum", "Value not found in enumerated list of values",
                                          target=["true", "false"])
        reboot = reboot_arg.lower() == "true"
    sip = sip_identity(device)
    if sip is None:
        log.info("sync of device %s: no SIP credentials, nothing to send", device.id)
    else:
        sent = fs.check_sync(pool(), sip.user, sip.realm, check_sync_event(device, reboot))
        log.info("sync of device %s (%s@%s): sent to %s", device.id, sip.user, sip.realm,
                 ", ".join(sent) or "no node (not registered)")
    return success("sync request sent")


# ---------------------------------------------------------------------------------------------
# Presence (SPEC §6.3)

def _presence_request() -> str | None:
    """The asked state: None for a reset, else early/confirmed/terminated; 400 otherwise."""
    body = g.get("body")
    # No body, or one carrying only the token (SPEC §3 allows it there): a reset.
    if body is None or set(body) <= {"auth_token"} or ("data" in body and body["data"] in (None, {})):
        return None
    data = body.get("data")
    if isinstance(data, dict):
        # `is True`: a dict comparison would also take {"reset": 1} (1 == True in Python).
        if (set(data) == {"reset"} and data["reset"] is True) or data == {"action": "reset"}:
            return None
        if data.get("action") == "set" and set(data) == {"action", "state"}:
            if data["state"] in PRESENCE_STATES:
                return data["state"]
            raise ValidationFailed.single("state", "enum", "Value not found in enumerated list of values",
                                          target=list(PRESENCE_STATES))
    raise ValidationFailed.single("data", "invalid",
                                  'expected no body, {"reset": true}, {"action": "reset"} or '
                                  '{"action": "set", "state": "early|confirmed|terminated"}')


def _send_presence(presence_ids: list[str], state: str | None) -> Response:
    errors: Errors = {}
    for pid in presence_ids:
        _gate(pid, "presence_id", "presence_id", errors)
    if errors:
        raise ValidationFailed(errors)
    fs.presence_many(pool(), presence_ids, state)
    return success("reset commands sent" if state is None else "presence state sent")


def device_presence(account_id: str, device_id: str) -> Response:
    state = _presence_request()
    device = devices.get_device(account_id, device_id)
    account = accounts.get_account(account_id)
    pid = devices.presence_id(device.doc, account.doc["realm"])
    if pid is None:
        raise ValidationFailed.single("presence_id", "required", "the device has no presence id or SIP username")
    return _send_presence([pid], state)


def user_presence(account_id: str, user_id: str) -> Response:
    state = _presence_request()
    user = users.get_user(account_id, user_id)
    realm = accounts.get_account(account_id).doc["realm"]
    static = devices.static_presence_id(user.doc, realm)
    if static:
        ids = [static]
    else:
        found = (devices.presence_id(d.doc, realm) for d in devices.user_devices(account_id, user_id))
        ids = list(dict.fromkeys(pid for pid in found if pid))
    if not ids:
        raise ValidationFailed.single("presence_id", "required", "the user has no presence id and no device")
    return _send_presence(ids, state)


# ---------------------------------------------------------------------------------------------
# Registration status (SPEC §6.4)

def device_status(account_id: str) -> Response:
    """The account's registered devices, from every node, by realm and SIP username."""
    rows: dict[str, dict[str, Any]] = {}
    for realm in devices.device_realms(account_id):
        registered = fs.registrations(pool(), realm)
        by_user = devices.devices_by_sip(realm, list({reg.user for reg in registered}))
        for reg in registered:
            device = by_user.get(reg.user.lower())
            if device is not None and device.account_id == account_id:
                rows[device.id] = {"device_id": device.id, "registered": True}
    return success(sorted(rows.values(), key=lambda row: row["device_id"]))
