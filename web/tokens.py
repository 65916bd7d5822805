"""`PUT /user_auth` and `PUT /api_auth`: tokens from credentials or an API key (SPEC §1, §3)."""
from __future__ import annotations

import re

from flask import Blueprint, Response, g

from models import account as accounts
from models import user as users
from models.errors import InvalidCredentials, ValidationFailed
from models.token import API_KEY_RE, issue_token
from models.validation import Errors, add_error
from web.envelope import body_data, success
from web.resource import public

_MD5_RE = re.compile(r"^[0-9a-fA-F]{32}\Z")
_SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}\Z")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/user_auth", view_func=user_auth, methods=["PUT"])
    bp.add_url_rule("/api_auth", view_func=api_auth, methods=["PUT"])


@public
def user_auth() -> Response:
    """A token for a user: md5 (or sha1 with `"method": "sha"`) of `username:password`."""
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
    name, realm = data.get("account_name"), data.get("account_realm")
    if not isinstance(name, str) and not isinstance(realm, str):
        add_error(errors, "account_name", "required", "account_name or account_realm is required")
    if errors:
        raise ValidationFailed(errors)
    account = accounts.find_account(name=name) if isinstance(name, str) else accounts.find_account(realm=realm)
    user = users.user_by_credentials(account.id, creds, method) if account else None
    if account is None or user is None or user.doc.get("enabled") is False:
        raise InvalidCredentials()
    token = issue_token(account.id, user.id, "user_auth")
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
    account = accounts.account_by_api_key(key)
    if account is None:
        raise InvalidCredentials()
    token = issue_token(account.id, None, "api_auth")
    g.auth_token = token
    return success({"account_id": account.id, "account_name": account.doc["name"]}, status=201, token=token)
