"""`PUT /user_auth`, `PUT /api_auth` and `GET /user_auth/{token}`: tokens from credentials or
an API key, and what a token is (SPEC §1, §3; Kazoo's `cb_user_auth` and `cb_api_auth`)."""
from __future__ import annotations

import hmac
import re

from flask import Blueprint, Response, g

from models import account as accounts
from models import user as users
from models.documents import Document
from models.errors import InvalidCredentials, ValidationFailed
from models.token import API_KEY_RE, issue_api_token, issue_user_token
from models.validation import Errors, add_error
from web import login_throttle
from web.auth import current_identity
from web.envelope import body_data, success
from web.errors import Unauthorized
from web.resource import public

_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}\Z")
_SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}\Z")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/user_auth", view_func=user_auth, methods=["PUT"])
    bp.add_url_rule("/user_auth/<token>", view_func=token_info, methods=["GET"])
    bp.add_url_rule("/api_auth", view_func=api_auth, methods=["PUT"])


def _login_account_fields(data: dict, errors: Errors) -> tuple[object, object]:
    """`account_name`, and the realm from `account_realm` or `realm` (Kazoo takes the first
    defined); 400 naming each that is given but not a string, or when none is."""
    name = data.get("account_name")
    realm = data.get("account_realm")
    if realm is None:
        realm = data.get("realm")
    for field, value in (("account_name", name), ("account_realm", realm)):
        if value is not None and not isinstance(value, str):
            add_error(errors, field, "type", "Value is not of type string", target="string")
    if name is None and realm is None:
        add_error(errors, "account_name", "required", "account_name or account_realm is required")
    return name, realm


@public
def user_auth() -> Response:
    """A token for a user: md5 (or sha1 with `"method": "sha"`) of `username:password`, in the
    account named by its realm (`account_realm` or `realm`) or its name, which is compared as
    Kazoo's `cb_user_auth:maybe_authenticate_user` does (lower case, letters and digits)."""
    data = body_data()
    errors: Errors = {}
    method = data.get("method", "md5")
    if method not in ("md5", "sha"):
        add_error(errors, "method", "enum", "Value not found in enumerated list of values", target=["md5", "sha"])
    creds = data.get("credentials")
    pattern = _SHA1_RE if method == "sha" else _MD5_RE
    if not isinstance(creds, str):
        add_error(errors, "credentials", "required", "Field is required but missing")
    elif not pattern.match(creds):
        add_error(errors, "credentials", "pattern", "credentials must be the hex hash of username:password")
    name, realm = _login_account_fields(data, errors)
    if errors:
        raise ValidationFailed(errors)

    def login() -> tuple[Document, Document] | None:
        # Kazoo's maybe_auth_accounts: the first candidate account holding these credentials.
        for account in accounts.login_accounts(name=name, realm=realm):
            user = users.user_by_credentials(account.id, creds, method)
            if user is not None and user.doc.get("enabled") is not False:
                return account, user
        return None

    account, user = login_throttle.limited(
        # What was tried, cut short: the log is no place for a megabyte of someone's text.
        "user_auth", login, f"no enabled user with these credentials (account_name={name!r:.80}, "
        f"account_realm={realm!r:.80})")
    token = issue_user_token(account.id, user.id)
    if token is None:  # disabled or deleted since its credentials were checked
        raise InvalidCredentials()
    g.auth_token = token
    return success({"account_id": account.id, "owner_id": user.id, "account_name": account.doc["name"],
                    "method": method}, status=201, token=token)


@public
def api_auth() -> Response:
    """A token for an account from its 64-character API key."""
    data = body_data()
    key = data.get("api_key")
    if not isinstance(key, str):
        raise ValidationFailed.single("api_key", "required", "Field is required but missing")
    if not API_KEY_RE.match(key):
        raise ValidationFailed.single("api_key", "pattern", "api_key must be 64 hexadecimal characters")
    account = login_throttle.limited("api_auth", lambda: accounts.account_by_api_key(key),
                                     "unknown API key")
    token = issue_api_token(account.id, key)
    if token is None:  # rotated since it was checked
        raise InvalidCredentials()
    g.auth_token = token
    return success({"account_id": account.id, "account_name": account.doc["name"]}, status=201, token=token)


def token_info(token: str) -> Response:
    """The request's own token: its account, user and expiry (Kazoo 4's `cb_user_auth`
    `maybe_get_auth_token`: a token other than the one the request carries is 401)."""
    identity = current_identity()
    own = g.get("auth_token") or ""
    if not hmac.compare_digest(token.encode(), own.encode()):
        raise Unauthorized()
    account = accounts.get_account(identity.account_id)
    data = {"account_id": identity.account_id, "account_name": account.doc["name"],
            "method": identity.method}
    if identity.user_id is not None:
        data["owner_id"] = identity.user_id
    if identity.expires is not None:
        data["exp"] = int(identity.expires)
    return success(data)
