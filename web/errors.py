"""Every error a request can meet becomes an envelope here, and only here (SPEC §2)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from werkzeug.exceptions import HTTPException

from esl_bridge import errors as esl_errors
from models import errors as store_errors

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of the web layer's own errors."""


class Malformed(ApiError):
    """The body is not valid JSON (validation error on key `json`)."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class Unauthorized(ApiError):
    """No token, or a token that names nobody."""


class Forbidden(ApiError):
    """The token's account is neither the target account nor one of its ancestors, or its
    user's `priv_level` does not allow the request (`cause` names a refused field)."""

    def __init__(self, cause: str | None = None):
        super().__init__(cause or "forbidden")
        self.cause = cause


class TooManyRequests(ApiError):
    """Too many refused logins from the caller's address; `retry_after` seconds to wait."""

    def __init__(self, retry_after: int):
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class IdempotencyKeyReused(ApiError):
    """An `Idempotency-Key` already answered another request (method, path or body differ)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


class QuickcallFailed(ApiError):
    """FreeSWITCH answered the originate with a failure cause (SPEC §6.1, POST)."""

    def __init__(self, cause: str, call: dict[str, Any]):
        super().__init__(cause)
        self.cause = cause
        self.call = call


class Disabled(ApiError):
    """The device cannot take a quickcall: disabled or in do-not-disturb."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class ErrorReply:
    status: int
    message: str
    data: Any
    revision: str | None = None
    headers: dict[str, str] | None = None


VALIDATION_MESSAGE = "invalid request"


def validation_reply(errors: dict[str, Any]) -> ErrorReply:
    return ErrorReply(400, VALIDATION_MESSAGE, errors)


def to_reply(exc: BaseException) -> ErrorReply:
    """The envelope fields for any exception a request raised."""
    match exc:
        case store_errors.ValidationFailed():
            return validation_reply(exc.errors)
        case Malformed():
            return validation_reply({"json": {"invalid": {"message": f"invalid JSON: {exc.detail}"}}})
        case Unauthorized() | store_errors.InvalidCredentials():
            return ErrorReply(401, "invalid_credentials", {"message": "invalid credentials"})
        case Forbidden():
            data = {"message": "forbidden"}
            if exc.cause:
                data["cause"] = exc.cause
            return ErrorReply(403, "forbidden", data)
        case TooManyRequests():
            # Kazoo's `too_many_requests` system error, with when to come back.
            return ErrorReply(429, "too_many_requests", {"message": "too many requests"},
                              headers={"Retry-After": str(exc.retry_after)})
        case IdempotencyKeyReused():
            return ErrorReply(422, "idempotency_key_reused", {
                "message": "this Idempotency-Key was sent with another request", "cause": exc.key})
        case store_errors.NotFound():
            return ErrorReply(404, "bad_identifier", {"message": "bad identifier", "cause": exc.ident})
        case store_errors.IdInUse():
            return ErrorReply(409, "conflict", {"message": "id already in use", "cause": exc.ident})
        case store_errors.Conflict():
            log.info("write conflict: %s", exc)
            return ErrorReply(409, "datastore_conflict", {"message": "conflicting documents"})
        case store_errors.StaleRevision():
            return ErrorReply(412, "precondition_failed",
                              {"message": "revision does not match", "cause": exc.current})
        case Disabled():
            return validation_reply({exc.field: {"disabled": {"message": exc.message}}})
        case esl_errors.UnsafeValue():
            # The quoting gate is the last line: validation should have refused this already.
            log.warning("quoting gate refused %s: %s", exc.field, exc)
            rule = "pattern" if exc.rule == "forbidden" else exc.rule
            return validation_reply({exc.field: {rule: {"message": exc.message}}})
        case QuickcallFailed():
            return ErrorReply(500, "quickcall initiation failed",
                              {**exc.call, "error_message": exc.cause})
        case esl_errors.FreeSwitchUnavailable():
            return ErrorReply(503, "freeswitch_unavailable",
                              {"message": str(exc), "node": getattr(exc, "node", None) or "all"})
        case HTTPException():
            return _http_reply(exc)
    log.exception("unexpected error", exc_info=exc)
    return ErrorReply(500, "unspecified_fault", {"message": "unspecified fault"})


def _http_reply(exc: HTTPException) -> ErrorReply:
    code = exc.code or 500
    if code == 405:
        return ErrorReply(405, "invalid_method", {"message": "method not allowed"})
    if code == 404:
        return ErrorReply(404, "not_found", {"message": "not found"})
    if code == 413:
        return ErrorReply(413, "request_too_large", {"message": "request body larger than 1 MiB"})
    if code == 400:
        return validation_reply({"json": {"invalid": {"message": "malformed request"}}})
    if code >= 500:
        log.error("HTTP %s: %s", code, exc)
        return ErrorReply(500, "unspecified_fault", {"message": "unspecified fault"})
    return ErrorReply(code, exc.name.lower().replace(" ", "_"), {"message": exc.description or exc.name})
