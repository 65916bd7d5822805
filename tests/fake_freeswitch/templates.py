"""Recorded frames of a real FreeSWITCH, read once and used as templates for the fake's own.

The recordings live in ``tests/data/freeswitch/esl*/`` (copied from ``../shared/freeswitch/``).
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

DATA = Path(__file__).resolve().parent.parent / "data" / "freeswitch"


def _read_recording(relative: str) -> bytes:
    return (DATA / relative).read_bytes()


def _api_body(relative: str) -> bytes:
    raw = _read_recording(relative)
    return raw.partition(b"\n\n")[2]


def _template_text(raw: str) -> tuple[list[tuple[str, str]], str]:
    """Plain event text (headers, blank line, body) as ``[(name, decoded value)]`` and body."""
    head, _, rest = raw.partition("\n\n")
    headers = []
    body = ""
    for line in head.rstrip("\n").split("\n"):
        name, _, value = line.partition(": ")
        if name == "Content-Length":
            body = rest[: int(value)]
            continue
        headers.append((name, unquote(value)))
    return headers, body


def _template(relative: str) -> tuple[list[tuple[str, str]], str]:
    """A recorded plain event as ``[(name, decoded value)]`` and its body (no Content-Length)."""
    return _template_text(_read_recording(relative).decode("utf-8").partition("\n\n")[2])


def _event_templates(relative: str) -> list[tuple[list[tuple[str, str]], str]]:
    """Every plain event of a recording holding several frames, as ``_template`` reads one."""
    raw = _read_recording(relative).decode("utf-8")
    events = []
    while raw:
        head, _, rest = raw.partition("\n\n")
        outer = dict(line.split(": ", 1) for line in head.split("\n"))
        size = int(outer["Content-Length"])
        inner, raw = rest[:size], rest[size:]
        if outer.get("Content-Type") != "text/event-plain":
            continue
        headers = [(name, unquote(value)) for name, _, value in
                   (line.partition(": ") for line in inner.rstrip("\n").split("\n"))]
        events.append((headers, ""))
    return events


STATUS_BODY = _api_body("esl/04_api_status.txt")
VERSION_BODY = _api_body("esl/08_api_version.txt")
T_REGISTER = _template("esl2/101_event_CUSTOM_sofia_register_2001_plain.txt")
T_EXPIRE = _template("esl2/102_event_CUSTOM_sofia_expire_flush_inbound_reg_2001_plain.txt")
T_UNREGISTER = _template("esl2/104_event_CUSTOM_sofia_unregister_2002_plain.txt")
T_CREATE = _template("esl2/114_event_CHANNEL_CREATE_quickcall_plain.txt")
T_ANSWER = _template("esl2/115_event_CHANNEL_ANSWER_quickcall_plain.txt")
#: the hang-up of an answered leg, and of one hung up while it rang (hupall, uuid_kill)
T_HANGUP = _template("esl2/118_event_CHANNEL_HANGUP_COMPLETE_quickcall_plain.txt")
T_HANGUP_RINGING = _template("esl3/129_i1_event_CHANNEL_HANGUP_COMPLETE_after_hupall_LOSE_RACE.txt")
T_JOB = _template("esl2/116_event_BACKGROUND_JOB_quickcall_ok_plain.txt")
#: ``uuid_dump`` of an answered QuickCall leg: a CHANNEL_DATA event as the api answer
T_DUMP = _template_text(_api_body("esl3/187_i8_api_uuid_dump_quickcall_a_leg.txt").decode())

_SHUTDOWN = _event_templates("esl3/221_i15_shutdown_event_plain_ALL_full_rx.txt")
#: the API event every ``api`` command fires (switch_api_execute), as ``api shutdown`` did
T_API = _SHUTDOWN[0]
#: What a connection subscribed to them gets as FreeSWITCH shuts down, before the notice:
#: SHUTDOWN, a MODULE_UNLOAD per interface of the modules loaded, sofia's UNPUBLISH
#: (esl3/221; ``SHUTDOWN_EVENTS_ESL`` is the first lab's, esl/81, with fewer modules).
SHUTDOWN_EVENTS = _SHUTDOWN[1:]
SHUTDOWN_EVENTS_ESL = _event_templates("esl/81_shutdown_client_event_plain_ALL.txt")[1:]

# The directory variables at the end of the recorded register event, and the originate's
# {variables} in the recorded channel events: replaced by this fake's own.
_RECORDED_DIRECTORY_VARS = ("user_context", "esl_bridge_device_id", "esl_bridge_account_id")
_RECORDED_ORIGINATE_VARS = tuple(
    f"variable_{name}" for name in (
        "origination_uuid", "origination_caller_id_name", "origination_caller_id_number",
        "effective_caller_id_name", "effective_caller_id_number", "originate_timeout",
        "ignore_early_media", "sip_auto_answer", "esl_bridge_account_id",
        "esl_bridge_device_id"))
_COMMON = ("Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
           "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp",
           "Event-Sequence")


