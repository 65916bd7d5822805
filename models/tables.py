"""The tables. Each document row keeps the full public document as JSON beside the indexed
columns that every lookup of the API or of FreeSWITCH uses."""
from __future__ import annotations

from typing import Any, ClassVar

import peewee

from models import listing as listing_rows
from models.db import database


class BaseTable(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False


class DocumentTable(BaseTable):
    """A stored document: id, revision and the public JSON document.

    Times are epoch seconds in DoubleField: peewee's FloatField is PostgreSQL's 4-byte `real`,
    which rounds today's epoch to 128 seconds.
    """

    id = peewee.FixedCharField(max_length=32, primary_key=True)
    doc = peewee.TextField()
    rev_n = peewee.IntegerField(default=1)
    rev_hash = peewee.FixedCharField(max_length=32)
    created = peewee.DoubleField()
    modified = peewee.DoubleField()

    # Tables with a listing endpoint keep each document's listing row, JSON-encoded, in a
    # `listing` column; this builds the row from (id, document). `documents.insert_document`
    # and `update_document` write it with every write of `doc`, so it cannot fall behind.
    listing_row: ClassVar[staticmethod[[str, dict[str, Any]], dict[str, Any]] | None] = None
    # Whether `documents.read` may answer from a process's document cache (PostgreSQL,
    # `models.document_cache`), so that every write of the table must tell the caches.
    cached_reads: ClassVar[bool] = False

    @property
    def revision(self) -> str:
        return f"{self.rev_n}-{self.rev_hash}"


#: Room for `str.lower()`, which can lengthen a text: "İ" (U+0130) lower-cases to two characters.
LOWERED = 2


class AccountRow(DocumentTable):
    name_lc = peewee.CharField(max_length=128 * LOWERED, unique=True)
    # The name as Kazoo's user_auth compares it (`account.name_key`: lower case, letters and
    # digits only); several accounts may share one ("Acme Corp" and "acme-corp").
    name_key = peewee.CharField(max_length=128, null=True, index=True)
    realm = peewee.CharField(max_length=253, unique=True)
    parent_id = peewee.FixedCharField(max_length=32, null=True, index=True)
    # Ancestor ids, root first, as JSON: authorization checks "is A below B" without recursion.
    tree = peewee.TextField(default="[]")
    api_key = peewee.FixedCharField(max_length=64, unique=True)

    class Meta:
        table_name = "account"


class UserRow(DocumentTable):
    listing_row = staticmethod(listing_rows.user_row)
    cached_reads = True

    account_id = peewee.FixedCharField(max_length=32)
    username_lc = peewee.CharField(max_length=256 * LOWERED, null=True)
    hotdesk_id = peewee.CharField(max_length=15, null=True)
    md5_creds = peewee.FixedCharField(max_length=32, null=True)
    sha1_creds = peewee.FixedCharField(max_length=40, null=True)
    listing = peewee.TextField()

    class Meta:
        table_name = "user"
        indexes = (
            (("account_id", "id"), False),
            (("account_id", "username_lc"), True),
            (("account_id", "hotdesk_id"), True),
            # PUT /user_auth: by credentials within the account, not credential by credential
            # through the account's rows.
            (("account_id", "md5_creds"), False),
            (("account_id", "sha1_creds"), False),
        )


class DeviceRow(DocumentTable):
    listing_row = staticmethod(listing_rows.device_row)
    cached_reads = True

    account_id = peewee.FixedCharField(max_length=32)
    realm = peewee.CharField(max_length=253)
    sip_username_lc = peewee.CharField(max_length=32, null=True)
    mac_address = peewee.FixedCharField(max_length=12, null=True)
    owner_id = peewee.FixedCharField(max_length=32, null=True, index=True)
    sip_ip = peewee.CharField(max_length=15, null=True)
    # The call-forward number as matched (models.device.forward_key): the dialplan's presence
    # lookup for calls to a cellphone device's number.
    forward_number = peewee.CharField(max_length=35, null=True)
    listing = peewee.TextField()

    class Meta:
        table_name = "device"
        indexes = (
            (("account_id", "id"), False),
            (("realm", "sip_username_lc"), True),
            (("account_id", "mac_address"), True),
            (("account_id", "forward_number"), False),
            # Which accounts' devices register in a realm (`account.realm_of_another_account`).
            (("realm", "account_id"), False),
            # Unique within the account only: across accounts the answer would tell one tenant
            # which addresses another uses (nothing here authenticates by address).
            (("account_id", "sip_ip"), True),
        )


class HotdeskRow(BaseTable):
    """Membership: user U is hotdesked into device D (mirror of the device's hotdesk.users)."""

    device_id = peewee.FixedCharField(max_length=32)
    user_id = peewee.FixedCharField(max_length=32)
    account_id = peewee.FixedCharField(max_length=32)

    class Meta:
        table_name = "hotdesk"
        # The key serves "users of device D" in user order; the indexes "devices of user U"
        # and "the account's hotdesks", each in device order.
        primary_key = peewee.CompositeKey("device_id", "user_id")
        indexes = (
            (("user_id", "device_id"), False),
            (("account_id", "device_id", "user_id"), False),
        )


class TokenRow(BaseTable):
    token = peewee.CharField(max_length=64, primary_key=True)
    account_id = peewee.FixedCharField(max_length=32, index=True)
    # Disabling or deleting a user revokes their tokens.
    user_id = peewee.FixedCharField(max_length=32, null=True, index=True)
    method = peewee.CharField(max_length=16)
    created = peewee.DoubleField()
    last_used = peewee.DoubleField()
    # A user token's `priv_level`, kept equal to the user's in the transaction that changes it,
    # so that no request reads the user to know it. None for API-key tokens.
    priv_level = peewee.CharField(max_length=16, null=True)

    class Meta:
        table_name = "auth_token"


class LockoutRow(BaseTable):
    """Recent failures of one key (hotdesk `user:<id>` or `device:<id>`, `login:<source address>`),
    see `models.lockout`."""

    key = peewee.CharField(max_length=64, primary_key=True)
    failures = peewee.TextField(default="[]")  # epoch seconds, JSON
    last_failure = peewee.DoubleField(default=0.0, index=True)

    class Meta:
        table_name = "hotdesk_lockout"


class IdempotencyRow(BaseTable):
    """The first answer to a create sent with an `Idempotency-Key`, kept for a day."""

    # Who sent it (account and user of the credential) and the key they chose.
    scope = peewee.CharField(max_length=80)
    key = peewee.CharField(max_length=255)
    # sha256 of the method, path and body: the same key with another request is refused.
    fingerprint = peewee.FixedCharField(max_length=64)
    status = peewee.IntegerField()
    response = peewee.TextField()
    location = peewee.CharField(max_length=255, null=True)
    created = peewee.DoubleField(index=True)

    class Meta:
        table_name = "idempotency_key"
        primary_key = peewee.CompositeKey("scope", "key")


ALL_TABLES = (AccountRow, UserRow, DeviceRow, HotdeskRow, TokenRow, LockoutRow, IdempotencyRow)

