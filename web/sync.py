"""Check-sync over HTTP (SPEC §6.2): the NOTIFY that makes a phone reload its configuration."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from esl_bridge import actions as fs
from models import device as devices
from models.errors import ValidationFailed
from models.query_params import read_query
from models.validation import Errors
from web.envelope import success
from web.privileges import own_device
from web.resource import freeswitch_pool, route
from web.side_effects import check_sync_event, refuse_foreign_sip_realm, sip_identity

log = logging.getLogger(__name__)


def register(bp: Blueprint) -> None:
    route(bp, "@/devices/<device_id>/sync", ["POST"])(device_sync)


@own_device
def device_sync(account_id: str, device_id: str) -> Response:
    """Send the device's check-sync NOTIFY where it is registered."""
    device = devices.get_device(account_id, device_id)
    errors: Errors = {}
    reboot = read_query("sync", dict(request.args.items()), errors).get("reboot")
    if errors:
        raise ValidationFailed(errors)
    refuse_foreign_sip_realm(device)
    sip = sip_identity(device)
    if sip is None:
        log.info("sync of device %s: no SIP credentials, nothing to send", device.id)
    else:
        sent = fs.check_sync(freeswitch_pool(), sip.user, sip.realm, check_sync_event(device, reboot))
        log.info("sync of device %s (%s@%s): sent to %s", device.id, sip.user, sip.realm,
                 ", ".join(sent) or "no node (not registered)")
    return success("sync request sent")
