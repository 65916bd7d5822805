"""Endpoints FreeSWITCH itself calls (SPEC §7)."""
from __future__ import annotations

from flask import Blueprint


def blueprint() -> Blueprint:
    return Blueprint("freeswitch", __name__, url_prefix="/freeswitch")
