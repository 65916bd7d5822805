"""Auth tokens: random, stored so that several API processes share them, expiring when idle."""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass

import peewee

from models.db import database
from models.prepared import Prepared
from models.tables import AccountRow, TokenRow, UserRow
from models.token_cache import (
    EVERYTHING,
    TokenCache,
    TokenRowValues,
    for_account,
    for_token,
    for_user,
    notify,
)

IDLE_SECONDS = 3600
# Writing `last_used` on every request would make every read a write; a minute of slack on a
# one-hour idle expiry costs nothing.
REFRESH_AFTER_SECONDS = 60
#: An account API key: 64 lower-case hex characters (`secrets.token_hex(32)`, models.account).
API_KEY_RE = re.compile(r"^[0-9a-f]{64}\Z")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}\Z")


@dataclass(frozen=True)
class Identity:
    """Who a request acts as: an account, and the user when the token came from user_auth.

    `method` is `user_auth` or `api_auth` (the token's origin) or `api_key` (the key itself,
    where it is accepted); `priv_level` is the user's (Kazoo's `admin` or `user`), None without
    a user. `expires` is when the token dies if it is not used again (epoch seconds).
    """

    account_id: str
    user_id: str | None
    method: str
    priv_level: str | None = None
    expires: float | None = None

    @property
    def admin(self) -> bool:
        """Acts on the whole account tree: an API key, a token from one, or an admin user."""
        return self.user_id is None or self.priv_level == "admin"


def issue_token(account_id: str, user_id: str | None, method: str,
                priv_level: str | None = None) -> str:
    """A new token (256 random bits) for the account (and user, with their `priv_level`)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    TokenRow.create(token=token, account_id=account_id, user_id=user_id, method=method,
                    created=now, last_used=now, priv_level=priv_level)
    return token


def _held(query: peewee.ModelSelect) -> peewee.ModelSelect:
    """`query` holding the rows it reads until the transaction ends (PostgreSQL: FOR SHARE).

    A write to one of them (a demotion, a rotation) then waits for the transaction, or the
    transaction for it, and reads the row as that write left it. SQLite needs nothing: its
    writers take turns, and one whose reads another has since overwritten gets a Conflict.
    """
    return query.for_update("FOR SHARE") if getattr(database.obj, "for_update", False) else query


def issue_user_token(account_id: str, user_id: str) -> str | None:
    """A new token for the user as it is when the token is stored, not as the credentials check
    read it (another process may have demoted, disabled or deleted it in between, and changed
    only the tokens that existed then); None when it is disabled or gone."""
    with database.atomic():
        row = _held(UserRow.select(UserRow.doc).where(
            (UserRow.id == user_id) & (UserRow.account_id == account_id))).first()
        doc = json.loads(row.doc) if row is not None else None
        if doc is None or doc.get("enabled") is False:
            return None
        return issue_token(account_id, user_id, "user_auth", doc.get("priv_level", "user"))


def issue_api_token(account_id: str, api_key: str) -> str | None:
    """A new token for the account while `api_key` is still its key (a rotation since the key
    was checked revoked only the tokens that existed then); None when it is no longer."""
    with database.atomic():
        if _held(AccountRow.select(AccountRow.id).where(
                (AccountRow.id == account_id) & (AccountRow.api_key == api_key))).first() is None:
            return None
        return issue_token(account_id, None, "api_auth")


# Every API request looks its token up: prepared, not rebuilt by peewee each time.
_BY_TOKEN = Prepared(lambda token: TokenRow.select(
    TokenRow.account_id, TokenRow.user_id, TokenRow.method, TokenRow.last_used,
    TokenRow.priv_level).where(TokenRow.token == token).limit(1))
_ACCOUNT_BY_KEY = Prepared(
    lambda key: AccountRow.select(AccountRow.id).where(AccountRow.api_key == key).limit(1))


def identify(token: str, now: float | None = None, cache: TokenCache | None = None
             ) -> Identity | None:
    """The identity behind a token, or None (an API key is not a token: `identify_api_key`).

    With a `cache` (PostgreSQL, `models.token_cache`), a token found there and used within the
    last `REFRESH_AFTER_SECONDS` is not read again; any other is read, refreshed and expired
    as without one.
    """
    if not _TOKEN_RE.match(token):
        return None
    now = time.time() if now is None else now
    generation = 0
    if cache is not None:
        if cache.listening:
            cached = cache.get(token)
            if cached is not None and now - cached.last_used <= REFRESH_AFTER_SECONDS:
                return _identity(cached)
        generation = cache.generation  # before the read: see `TokenCache.store`
    row = next(_BY_TOKEN.tuples(token), None)
    if row is None:
        return None
    found = TokenRowValues(*row)
    if now - found.last_used > IDLE_SECONDS:
        with database.atomic():
            TokenRow.delete().where(TokenRow.token == token).execute()
            notify(for_token(token))
        return None
    if now - found.last_used > REFRESH_AFTER_SECONDS:
        # No notification: another process's copy of the row is only older, so it refreshes
        # sooner; it never outlives the token.
        TokenRow.update(last_used=now).where(TokenRow.token == token).execute()
        found = found._replace(last_used=now)
    if cache is not None:
        cache.store(token, found, generation)
    return _identity(found)


def _identity(row: TokenRowValues) -> Identity:
    return Identity(row.account_id, row.user_id, row.method,
                    row.priv_level if row.user_id else None, row.last_used + IDLE_SECONDS)


def identify_api_key(key: str) -> Identity | None:
    """The account whose API key this is, or None. Only the QuickCall URL takes a key in
    place of a token (the seed document says so); everywhere else a key mints tokens."""
    if not API_KEY_RE.match(key):
        return None
    account = next(_ACCOUNT_BY_KEY.tuples(key), None)
    return Identity(account[0], None, "api_key") if account is not None else None


def purge_expired(now: float | None = None) -> int:
    """Delete tokens idle for longer than the expiry; returns how many."""
    now = time.time() if now is None else now
    with database.atomic():
        purged = TokenRow.delete().where(TokenRow.last_used < now - IDLE_SECONDS).execute()
        if purged:
            notify(EVERYTHING)
        return purged


def revoke_user_tokens(user_id: str) -> int:
    """Delete every token issued to a user (deleted or disabled); returns how many."""
    revoked = TokenRow.delete().where(TokenRow.user_id == user_id).execute()
    notify(for_user(user_id))
    return revoked


def revoke_api_key_tokens(account_id: str) -> int:
    """Delete every token minted from the account's API key (it was rotated); returns how many."""
    revoked = TokenRow.delete().where(
        (TokenRow.account_id == account_id) & (TokenRow.method == "api_auth")).execute()
    notify(for_account(account_id))
    return revoked


def set_user_priv_level(user_id: str, priv_level: str) -> int:
    """Give the user's live tokens their new `priv_level` (inside the transaction that changes
    it, so no request acts with the old one after the commit); returns how many."""
    changed = TokenRow.update(priv_level=priv_level).where(TokenRow.user_id == user_id).execute()
    notify(for_user(user_id))
    return changed
