"""FreeSWITCH actions over HTTP (SPEC §6): quickcall, sync, presence and status."""
from __future__ import annotations

from flask import Blueprint


def register(bp: Blueprint) -> None:
    """Routes of the actions (added with the ESL bridge)."""
