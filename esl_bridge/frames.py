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

The other way, ``check_frame_text`` refuses command text that would not be exactly one frame.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from .errors import ProtocolError, UnsafeValue

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
    #: a reply on a command connection: seconds from when FreeSWITCH could start on its command
    #: (written, and the reply before it out) to this reply
    service: float = 0.0

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    def text(self) -> str:
        """The body as text (UTF-8, bad bytes replaced and noted)."""
        try:
            return self.body.decode("utf-8")
        except UnicodeDecodeError:
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


#: The usual heads of the two reply shapes, as FreeSWITCH writes them (header order included).
_API_HEAD = b"Content-Type: api/response\nContent-Length: "
_REPLY_HEAD = b"Content-Type: command/reply\nReply-Text: "


def parse_head(head: bytes, notes: list[str]) -> dict[str, str]:
    """Split a frame's header block (without its ending blank line) into headers.

    Line by line, each split at the first ``": "``; outer headers are not URL-encoded. A line
    without ``": "`` is skipped and noted. The two shapes of almost every reply (an
    ``api/response`` head of exactly two lines, a ``command/reply`` head of exactly two lines)
    take a shortcut that gives the very same dict.
    """
    if head.startswith(_API_HEAD):
        length = head[len(_API_HEAD):]
        if length.isdigit():  # ASCII digits only: no third line, nothing else
            return {"Content-Type": "api/response", "Content-Length": length.decode("ascii")}
    elif head.startswith(_REPLY_HEAD):
        text = head[len(_REPLY_HEAD):]
        if b"\n" not in text:
            try:
                return {"Content-Type": "command/reply", "Reply-Text": text.decode("utf-8")}
            except UnicodeDecodeError:
                pass  # the general path notes it
    headers: dict[str, str] = {}
    for line in head.split(b"\n"):
        name, sep, value = line.partition(b": ")
        if not sep:
            notes.append(f"malformed header line skipped: {line[:80]!r}")
            continue
        headers[_text(name, notes, "header name")] = _text(value, notes, "header value")
    return headers


class FrameBuffer:
    """Frames cut out of bytes as they arrive, for a reader that owns its socket.

    ``feed(data)`` appends what ``recv`` returned; ``next_frame()`` returns the next complete
    frame or ``None`` until enough bytes are in. The frames are exactly those ``read_frame``
    gives for the same bytes (same header split, same notes, same ``ProtocolError`` cases, body
    by ``Content-Length``), however the bytes are chunked. ``pending`` is true while bytes that
    belong to no returned frame are held.
    """

    __slots__ = ("_data", "_parts", "_have", "_head", "max_line", "max_body")

    def __init__(self, max_line: int = MAX_LINE, max_body: int = MAX_BODY) -> None:
        self._data = b""
        # While a long body comes in: its chunks, their total size, and the parsed head.
        self._parts: list[bytes] = []
        self._have = 0
        self._head: tuple[dict[str, str], list[str], int] | None = None
        self.max_line = max_line
        self.max_body = max_body

    @property
    def pending(self) -> bool:
        return bool(self._data) or self._head is not None

    def feed(self, data: bytes) -> None:
        if self._head is not None:
            self._parts.append(data)
            self._have += len(data)
        elif self._data:
            self._data += data
        else:
            self._data = data

    def next_frame(self) -> Frame | None:
        """The next complete frame, or ``None``; ``ProtocolError`` if the stream is out of step."""
        if self._head is not None:
            return self._finish_body()
        data = self._data
        if data[:1] == b"\n":
            # Stray blank lines between frames carry nothing (as read_frame skips them).
            data = self._data = data.lstrip(b"\n")
        end = data.find(b"\n\n")
        if end < 0:
            newline = data.rfind(b"\n")
            if len(data) - newline - 1 > self.max_line:
                raise ProtocolError(f"header line longer than {self.max_line} bytes")
            if len(data) > self.max_body:
                raise ProtocolError(f"header block longer than {self.max_body} bytes")
            return None
        head = data[:end]
        if end > self.max_line and any(len(line) > self.max_line
                                       for line in head.split(b"\n")):
            raise ProtocolError(f"header line longer than {self.max_line} bytes")
        notes: list[str] = []
        headers = parse_head(head, notes)
        start = end + 2
        length = headers.get("Content-Length")
        if length is None:
            self._data = data[start:]
            return Frame(headers, b"", notes)
        if not length.isdigit():
            raise ProtocolError(f"Content-Length is not a number: {length[:40]!r}")
        size = int(length)
        if size > self.max_body:
            raise ProtocolError(f"Content-Length {size} exceeds {self.max_body}")
        stop = start + size
        if len(data) >= stop:
            self._data = data[stop:]
            return Frame(headers, data[start:stop], notes)
        # A body longer than what is in: collect chunks rather than re-join on every recv.
        self._head = (headers, notes, size)
        self._parts = [data[start:]]
        self._have = len(data) - start
        self._data = b""
        return None

    def _finish_body(self) -> Frame | None:
        headers, notes, size = self._head  # type: ignore[misc]
        if self._have < size:
            return None
        joined = b"".join(self._parts)
        self._head = None
        self._parts = []
        self._have = 0
        self._data = joined[size:]
        return Frame(headers, joined[:size], notes)


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
    started = False
    while True:
        line = readline(max_line + 1)
        if not line:
            if started:
                raise ProtocolError("the stream ended in the middle of a frame's headers")
            return None
        if line[-1:] != b"\n":
            if len(line) > max_line:
                raise ProtocolError(f"header line longer than {max_line} bytes")
            raise ProtocolError("the stream ended in the middle of a header line")
        if line == b"\n":
            if not started:
                # A stray blank line between frames carries nothing; FreeSWITCH does not send
                # one, but skipping it costs nothing and keeps us in step.
                continue
            break
        started = True
        name, sep, value = line[:-1].partition(b": ")
        if not sep:
            notes.append(f"malformed header line skipped: {line[:-1][:80]!r}")
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


def check_frame_text(text: str) -> None:
    """Refuse command text that would not be exactly one client-to-server frame.

    A second line of defence behind the quoting gate of ``esl_bridge.commands``: FreeSWITCH ends a
    frame at the first blank line, so a blank line, CR or NUL inside the text would end this
    command and start another.
    """
    if not isinstance(text, str) or not text:
        raise UnsafeValue("command", "type", "a command must be a non-empty string")
    if "\n\n" in text or "\r" in text or "\0" in text or text.endswith("\n") or text.startswith("\n"):
        raise UnsafeValue(
            "command", "forbidden",
            "a command may not contain a blank line, CR or NUL: it would start another command",
        )


__all__ = ["Event", "Frame", "FrameBuffer", "MAX_BODY", "MAX_LINE", "check_frame_text",
           "parse_event", "parse_head", "read_frame", "url_decode"]
