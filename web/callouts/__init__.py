"""Endpoints FreeSWITCH itself calls (SPEC §7), under ``/freeswitch/``.

- ``guard``: who gets in (allowed source addresses, the shared secret) and how the form is read.
- ``directory``: the ``mod_xml_curl`` directory (``directory_xml`` builds its documents).
- ``hotdesk``: the hotdesk feature codes' callouts (login, logout, toggle).
- ``presence``: the static presence id the dialplan applies to a device's calls.

Only allowed source addresses holding the shared secret get in; every refusal is logged.
"""
from __future__ import annotations

from flask import Blueprint

from web.callouts import directory, hotdesk, presence
from web.callouts.guard import PREFIX


def blueprint() -> Blueprint:
    # The guard (web.callouts.guard.require_freeswitch) runs from the app's before_request
    # hook, ahead of routing errors: unknown paths and wrong methods here are refused too.
    bp = Blueprint("freeswitch", __name__, url_prefix=PREFIX)
    bp.add_url_rule("/directory", view_func=directory.directory, methods=["POST"])
    bp.add_url_rule("/hotdesk/<action>", view_func=hotdesk.hotdesk_action, methods=["POST"])
    bp.add_url_rule("/presence", view_func=presence.presence_lookup, methods=["POST"])
    return bp
