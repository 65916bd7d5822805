"""Refused logins limited per source address (`api_auth`, `user_auth`), across processes.

Kazoo limits its auth endpoints with token buckets per client (`cb_api_auth:consume_tokens`,
`cb_user_auth:consume_tokens`: `too_many_requests`, 429); here refused logins (401) are counted
per source in the database (`models.lockout`, the counts every worker and host shares). A
source with `count` failures within `window` seconds, for any of `LIMITS`, gets 429
`too_many_requests` with `Retry-After`, whatever its credentials (else the limit would tell a
guesser when it guessed right), until enough of those failures are older than the window. A
success clears nothing: one valid account must not buy guesses at the others. Malformed
requests (400) are not failures.

The source is the connection's address (a proxy in front is then the source: no forwarded
header is believed), an IPv6 address by its /64, which one host usually holds whole.
"""
from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Callable
from typing import TypeVar

from flask import request

from models import lockout
from models.errors import InvalidCredentials
from web.errors import TooManyRequests

log = logging.getLogger(__name__)

#: (failures, seconds): a burst, and a patient guesser pacing under it.
LIMITS = ((10, 60.0), (50, 3600.0))

T = TypeVar("T")


def source() -> str:
    """The request's source address as the limits count it."""
    address = request.environ.get("REMOTE_ADDR") or "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:50]
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        return str(mapped)
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def limited(where: str, login: Callable[[], T | None], detail: str) -> T:
    """Run `login` (None when the credentials are refused) under the caller's limits: 429
    while its address is locked, else its result; a refusal is counted, logged (never the
    credentials: `detail` says what was tried) and answered 401."""
    src = source()
    key = f"login:{src}"
    locked_for: float | None = None
    result = None
    # The check, the login and the failure it counts in one transaction holding the source's
    # row: attempts at the same moment through other workers are counted one after the other.
    with lockout.guard(key, limits=LIMITS) as attempts:
        if attempts.locked(key):
            locked_for = attempts.unlocks_in(key)
        else:
            result = login()
            if result is None:
                attempts.failed(key)
    if locked_for is not None:
        wait = max(1, math.ceil(locked_for))
        log.warning("%s from %s refused for %d s: too many failed logins", where, src, wait)
        raise TooManyRequests(wait)
    if result is None:
        log.warning("%s refused from %s: %s", where, src, detail)
        raise InvalidCredentials()
    return result
