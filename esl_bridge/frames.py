"""ESL frames and events, parsed header by header from bytes.

FreeSWITCH sends frames as ``Name: value`` lines, a blank line, then ``Content-Length`` bytes of
body. Outer headers (``Content-Type``, ``Reply-Text``...) are plain text. The body of a
``text/event-plain`` frame is itself a header block whose *values* are URL-encoded
(``switch_url_encode``), optionally followed by an inner ``Content-Length`` and a body.

Unlike greenswitch, which URL-decodes a whole frame before splitting it into lines, this module
splits first and decodes each value on its own: a value holding ``%0A`` decodes to a value with a
newline in it, never to a second (forged) header, and an event body is read by its length, so a
body line that looks like ``Name: value`` stays body. Bytes that are not UTF-8 are decoded with
replacement characters and reported in ``notes`` so that the caller can log them; they never raise.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from .errors import ProtocolError

log = logging.getLogger(__name__)

#: Longest header line accepted; FreeSWITCH's longest (an SDP in a channel variable) is ~1 KiB.
MAX_LINE = 256 * 1024
#: Largest body accepted: xmlstatus for thousands of registrations is a few MiB at most.
MAX_BODY = 64 * 1024 * 1024


def _text(raw: bytes, notes: list[str], what: str) -> str:
    """Decode UTF-8, replacing bad bytes and noting it (never raises)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        notes.append(f"non-UTF-8 bytes in {what}: {raw[:80]!r}")
        return raw.decode("utf-8", "replace")


def url_decode(raw: bytes, notes: list[str] | None = None, what: str = "value") -> str:
    """Percent-decode one header value (as ``switch_url_decode`` does: no ``+`` rule)."""
    if notes is None:
        notes = []
    if b"%" in raw:
        raw = unquote_to_bytes(raw)
    return _text(raw, notes, what)


@dataclass
class Frame:
    """One frame as received: outer headers (not URL-decoded) and the raw body bytes."""

    headers: dict[str, str]
    body: bytes = b""
    #: problems met while parsing (malformed lines, non-UTF-8 bytes), for the caller to log
    notes: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    def text(self) -> str:
        """The body as text (UTF-8, bad bytes replaced and noted)."""
        return _text(self.body, self.notes, f"{self.content_type or 'frame'} body")


@dataclass
class Event:
    """A parsed ``text/event-plain`` event: decoded headers, and the body read by its length."""

    headers: dict[str, str]
    body: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def __getitem__(self, name: str) -> str:
        return self.headers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.headers


def read_frame(stream: BinaryIO, max_line: int = MAX_LINE, max_body: int = MAX_BODY) -> Frame | None:
    """Read one frame from a binary stream; ``None`` at a clean end of stream.

    Raises ``ProtocolError`` when the stream cannot be trusted any more (it ended in the middle of
    a frame, a line is absurdly long, ``Content-Length`` is not a number): the caller must drop
    the connection, since the next frame boundary is unknown. A header line without ``: `` is
    skipped and noted, the frame survives.
    """
    headers: dict[str, str] = {}
    notes: list[str] = []
    readline = stream.readline
    while True:
        line = readline(max_line + 1)
        if not line:
            if headers:
                raise ProtocolError("the stream ended in the middle of a frame's headers")
            return None
        if line[-1:] != b"\n":
            if len(line) > max_line:
                raise ProtocolError(f"header line longer than {max_line} bytes")
            raise ProtocolError("the stream ended in the middle of a header line")
        if line == b"\n":
            if not headers:
                # A stray blank line between frames carries nothing; FreeSWITCH does not send
                # one, but skipping it costs nothing and keeps us in step.
                continue
            break
        name, sep, value = line[:-1].partition(b": ")
        if not sep:
            notes.append(f"malformed header line skipped: {line[:80]!r}")
            continue
        headers[_text(name, notes, "header name")] = _text(value, notes, "header value")
    length = headers.get("Content-Length")
    body = b""
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"Content-Length is not a number: {length[:40]!r}")
        size = int(length)
        if size > max_body:
            raise ProtocolError(f"Content-Length {size} exceeds {max_body}")
        if size:
            body = stream.read(size)
            if len(body) < size:
                raise ProtocolError("the stream ended in the middle of a frame body")
    return Frame(headers, body, notes)


def parse_event(data: bytes) -> Event:
    """Parse the body of a ``text/event-plain`` frame, header by header.

    Lines are split first, then each value is URL-decoded on its own. The event body, if any, is
    exactly the inner ``Content-Length`` bytes after the blank line. Never raises: problems are
    recorded in ``Event.notes``.
    """
    notes: list[str] = []
    head, _, rest = data.partition(b"\n\n")
    headers: dict[str, str] = {}
    for raw in head.split(b"\n"):
        if not raw:
            continue
        name, sep, value = raw.partition(b": ")
        if not sep:
            notes.append(f"malformed event header line skipped: {raw[:80]!r}")
            continue
        key = _text(name, notes, "event header name")
        headers[key] = url_decode(value, notes, f"event header {key}")
    body = ""
    length = headers.get("Content-Length")
    if length is not None:
        if length.isdigit():
            size = int(length)
            if len(rest) < size:
                notes.append(f"event body shorter than its Content-Length ({len(rest)} < {size})")
            body = _text(rest[:size], notes, "event body")
        else:
            notes.append(f"event Content-Length is not a number: {length[:40]!r}")
            body = _text(rest, notes, "event body")
    elif rest.strip():
        notes.append("bytes after an event's headers without a Content-Length")
    return Event(headers, body, notes)


__all__ = ["Event", "Frame", "MAX_BODY", "MAX_LINE", "parse_event", "read_frame", "url_decode"]
