"""Listing rows: what `GET /devices` and `GET /users` show of each document (SPEC §4).

Pure functions of the id and the document. The store keeps each row encoded beside its
document (`DocumentTable.listing_row`, written by `documents.insert_document` and
`update_document` in the same statement as the document), so that a listing page is copied out
of the database rather than decoded and encoded again row by row.
"""
from __future__ import annotations

from typing import Any

USER_LISTING_KEYS = ("first_name", "last_name", "username", "email", "priv_level", "enabled",
                     "presence_id")


def device_row(ident: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A device's listing row: `id, name, username, mac_address, owner_id, enabled, device_type`,
    as the `devices/crossbar_listing` view emits it: a key without a value is left out (no
    `null`), `mac_address` is `""` when there is none."""
    sip = doc.get("sip")
    row = {
        "id": ident,
        "name": doc.get("name"),
        "username": sip.get("username") if isinstance(sip, dict) else None,
        "mac_address": doc.get("mac_address", ""),
        "owner_id": doc.get("owner_id"),
        "enabled": doc.get("enabled", True),
        "device_type": doc.get("device_type", "sip_device"),
    }
    return {key: value for key, value in row.items() if value is not None}


def user_row(ident: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A user's listing row: the id and those of the listing keys the user has."""
    return {"id": ident, **{k: doc[k] for k in USER_LISTING_KEYS if k in doc}}
