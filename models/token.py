"""Auth tokens: random, stored so that several API processes share them, expiring when idle."""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass

from models.prepared import Prepared
from models.tables import AccountRow, TokenRow

IDLE_SECONDS = 3600
# Writing `last_used` on every request would make every read a write; a minute of slack on a
# one-hour idle expiry costs nothing.
REFRESH_AFTER_SECONDS = 60
#: An account API key: 64 lower-case hex characters (`secrets.token_hex(32)`, models.account).
API_KEY_RE = re.compile(r"^[0-9a-f]{64}\Z")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}\Z")


@dataclass(frozen=True)
class Identity:
    """Who a request acts as: an account, and the user when the token came from user_auth."""

    account_id: str
    user_id: str | None
    method: str


def issue_token(account_id: str, user_id: str | None, method: str) -> str:
    """A new token (256 random bits) for the account (and user)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    TokenRow.create(token=token, account_id=account_id, user_id=user_id, method=method,
                    created=now, last_used=now)
    return token


# Every API request looks its token up: prepared, not rebuilt by peewee each time.
_BY_TOKEN = Prepared(lambda token: TokenRow.select(
    TokenRow.account_id, TokenRow.user_id, TokenRow.method, TokenRow.last_used)
    .where(TokenRow.token == token).limit(1))
_ACCOUNT_BY_KEY = Prepared(
    lambda key: AccountRow.select(AccountRow.id).where(AccountRow.api_key == key).limit(1))


def identify(token: str, now: float | None = None) -> Identity | None:
    """The identity behind a token or an account API key (Kazoo's QuickCall accepts either)."""
    now = time.time() if now is None else now
    if _TOKEN_RE.match(token):
        row = next(_BY_TOKEN.tuples(token), None)
        if row is not None:
            account_id, user_id, method, last_used = row
            if now - last_used > IDLE_SECONDS:
                TokenRow.delete().where(TokenRow.token == token).execute()
                return None
            if now - last_used > REFRESH_AFTER_SECONDS:
                TokenRow.update(last_used=now).where(TokenRow.token == token).execute()
            return Identity(account_id, user_id, method)
    if API_KEY_RE.match(token):
        account = next(_ACCOUNT_BY_KEY.tuples(token), None)
        if account is not None:
            return Identity(account[0], None, "api_key")
    return None


def purge_expired(now: float | None = None) -> int:
    """Delete tokens idle for longer than the expiry; returns how many."""
    now = time.time() if now is None else now
    return TokenRow.delete().where(TokenRow.last_used < now - IDLE_SECONDS).execute()


def revoke_user_tokens(user_id: str) -> int:
    """Delete every token issued to a user (deleted or disabled); returns how many."""
    return TokenRow.delete().where(TokenRow.user_id == user_id).execute()
