"""The event socket's framing and encodings, as a real FreeSWITCH 1.10 writes them."""
from __future__ import annotations

import json

_URL_UNSAFE = set(b'\r\n "#%&+:;<=>?@[\\]^`{|}')
_UPPER_HEX = set(b"0123456789ABCDEF")


def fs_url_encode(value: str) -> str:
    """``switch_url_encode`` (``double_encode`` false), on the UTF-8 bytes of ``value``."""
    data = value.encode("utf-8")
    out = []
    size = len(data)
    for i, byte in enumerate(data):
        if (byte == 0x25 and i + 2 < size and data[i + 1] in _UPPER_HEX
                and data[i + 2] in _UPPER_HEX):
            out.append("%")  # an existing %XX escape is passed through
        elif byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def event_lines(headers: list[tuple[str, str]]) -> str:
    """The header lines of ``switch_event_serialize``: values URL-encoded, empty ones ``_undef_``."""
    return "".join(f"{name}: {fs_url_encode(value) if value != '' else '_undef_'}\n"
                   for name, value in headers)


def serialize_event(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """A ``text/event-plain`` frame as ``switch_event_serialize`` + mod_event_socket write it."""
    lines = event_lines(headers)
    if body:
        payload = (lines + f"Content-Length: {len(body.encode('utf-8'))}\n\n" + body).encode()
    else:
        payload = (lines + "\n").encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(payload) + payload


def serialize_event_json(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """The same event as ``text/event-json``: one object, the headers in order and unencoded,
    the body under ``_body`` after its ``Content-Length`` (esl/34)."""
    document = dict(headers)
    if body:
        document["Content-Length"] = str(len(body.encode("utf-8")))
        document["_body"] = body
    payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(payload) + payload


def api_response(body: bytes | str) -> bytes:
    if isinstance(body, str):
        body = body.encode("utf-8")
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body


def command_reply(text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    head = f"Content-Type: command/reply\nReply-Text: {text}\n"
    for name, value in extra or ():
        head += f"{name}: {value}\n"
    return (head + "\n").encode("utf-8")


def disconnect_notice(body: str) -> bytes:
    data = body.encode("utf-8")
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(data) + data


#: mod_event_socket's read_packet ends a command at 10 MiB (max_len)
MAX_COMMAND = 10485760
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
SHUTDOWN = "The system is being shut down.\n"
AUTH_REQUEST = b"Content-Type: auth/request\n\n"

def xml_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def amp_encode(text: str) -> str:
    """``switch_amp_encode``: what xmlstatus does to ``contact`` and ``agent``."""
    return xml_escape(text).replace("'", "&apos;")

