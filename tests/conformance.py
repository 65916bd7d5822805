"""Comparing what the test FreeSWITCH wrote with what a real one wrote, frame by frame.

Two byte streams agree when they hold the same frames, each with the same outer headers, the same
event headers in the same order, the same bodies, and the same values everywhere except:

- uuids (any ``8-4-4-4-12`` hex), which every call and job draws anew;
- clock values: the event dates, ``Event-Sequence``, the ``*-Time`` caller-profile stamps and the
  ``*_epoch``/``*_stamp``/duration variables, dates and ``expsecs`` in text bodies. A clock value
  recorded as ``0`` (not answered, not hung up yet) must be ``0`` on both sides;
- values a real FreeSWITCH or the phone draws per call (SIP tags and Call-ID, CSeq, Via branch,
  the media port and SDP, the session counter, the phone's RTP figures): ``PER_CALL``;
- the values a scenario names as its own choice (``allowed``), e.g. the lab's codec list.

``Content-Length`` is not compared (a uuid or a sequence number of another length changes it):
each side's own lengths must hold instead, which ``frames`` checks as it splits the stream.
"""
from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
DATE_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d|[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                     r"\d\d:\d\d:\d\d GMT")
EPOCH_RE = re.compile(r"\b1[6-9]\d{8}(\d{6})?\b")
ADDRESS_RE = re.compile(r"table: 0x[0-9a-f]+")
EXPSECS_RE = re.compile(r"(expsecs|EXPSECS)\(\d+\)")

CLOCK_NAMES = {"Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp", "Event-Sequence"}
CLOCK_NAME_RE = re.compile(
    r"^Caller-(Profile|Channel)-[A-Za-z-]+-Time$|^variable_\w*_(epoch|uepoch|stamp)$"
    r"|^variable_(u|m)?duration$|^variable_\w*(sec|msec|usec)$|^variable_hold_accum_\w+$"
    r"|^variable_transfer_(history|source)$")

#: Values FreeSWITCH or the phone draws anew for every call.
PER_CALL = {
    "variable_session_id", "variable_sip_call_id", "variable_sip_from_tag", "variable_sip_to_tag",
    "variable_sip_full_from", "variable_sip_full_to", "variable_sip_full_via",
    "variable_sip_recover_via", "variable_sip_cseq", "variable_local_media_port",
    "variable_rtp_local_sdp_str", "variable_switch_r_sdp", "variable_rtp_use_ssrc",
    "variable_remote_media_port", "variable_sip_via_rport", "variable_sip_via_port",
}
PER_CALL_RE = re.compile(r"^variable_rtp_audio_(in|out|rtcp)_\w+$")


class Mismatch(AssertionError):
    """The streams differ in something the comparison does not allow."""


@dataclass
class Frame:
    outer: list[tuple[str, str]]
    body: bytes

    @property
    def content_type(self) -> str:
        return dict(self.outer).get("Content-Type", "")


def frames(data: bytes) -> list[Frame]:
    """The ESL frames of a stream, each body read by its Content-Length (which must hold)."""
    found = []
    while data:
        head, sep, data = data.partition(b"\n\n")
        if not sep:
            raise Mismatch(f"a frame without its blank line: {head[:80]!r}")
        outer = [tuple(line.split(": ", 1)) for line in head.decode().split("\n")]
        size = int(dict(outer).get("Content-Length", 0))
        if len(data) < size:
            raise Mismatch(f"Content-Length {size} but {len(data)} bytes follow")
        found.append(Frame([(n, v) for n, v in outer if n != "Content-Length"], data[:size]))
        data = data[size:]
    return found


def _event(body: bytes) -> tuple[list[tuple[str, str]], str]:
    head, _, rest = body.decode().partition("\n\n")
    headers = []
    inner = ""
    for line in head.split("\n"):
        name, _, value = line.partition(": ")
        if name == "Content-Length":
            inner = rest[: int(value)]
            if len(rest) != int(value):
                raise Mismatch(f"event body of {len(rest)} bytes, Content-Length {value}")
            continue
        headers.append((name, value))  # as written: the encoding is compared too
    return headers, inner


def _json_event(body: bytes) -> tuple[list[tuple[str, str]], str]:
    document = json.loads(body)
    inner = document.pop("_body", "")
    if inner and document.pop("Content-Length") != str(len(inner.encode())):
        raise Mismatch("json event Content-Length does not hold")
    return list(document.items()), inner


def mask_text(text: str) -> str:
    text = UUID_RE.sub("<uuid>", text)
    text = ADDRESS_RE.sub("table: <address>", text)  # where a Lua table lives in memory
    text = DATE_RE.sub("<date>", text)
    text = EXPSECS_RE.sub(r"\1(<n>)", text)
    return EPOCH_RE.sub("<epoch>", text)


def _value(name: str, value: str, allowed: set[str]) -> str:
    if name in allowed or name in PER_CALL or PER_CALL_RE.match(name):
        return "<any>"
    if name in CLOCK_NAMES or CLOCK_NAME_RE.match(name):
        return value if value == "0" else "<clock>"
    return mask_text(value)


def _compare_headers(where: str, want: list[tuple[str, str]], got: list[tuple[str, str]],
                     allowed: set[str]) -> None:
    want_names, got_names = [n for n, _ in want], [n for n, _ in got]
    if want_names != got_names:
        missing = [n for n in want_names if n not in got_names]
        extra = [n for n in got_names if n not in want_names]
        raise Mismatch(f"{where}: headers differ: missing {missing}, extra {extra}"
                       + ("" if missing or extra else ", order differs"))
    for (name, expected), (_, actual) in zip(want, got, strict=True):
        if _value(name, expected, allowed) != _value(name, actual, allowed):
            raise Mismatch(f"{where}: {name}: recorded {expected!r}, got {actual!r}")


def compare(recorded: bytes, got: bytes, allowed: set[str] | frozenset[str] = frozenset(),
            where: str = "") -> None:
    """Raise ``Mismatch`` unless ``got`` agrees with ``recorded`` (see the module docstring)."""
    allowed = set(allowed)
    want_frames, got_frames = frames(recorded), frames(got)
    if len(want_frames) != len(got_frames):
        raise Mismatch(f"{where}: {len(want_frames)} frames recorded, {len(got_frames)} written: "
                       f"{[f.content_type for f in got_frames]}")
    for index, (want, have) in enumerate(zip(want_frames, got_frames, strict=True)):
        at = f"{where} frame {index} ({want.content_type})"
        _compare_headers(at, want.outer, have.outer, allowed)
        reader = None
        if want.content_type == "text/event-plain" or want.body.startswith(b"Event-Name: "):
            reader = _event  # an event, or an api answer holding one (uuid_dump)
        elif want.content_type == "text/event-json" or want.body.startswith(b'{"Event-Name"'):
            reader = _json_event
        if reader is not None:
            want_headers, want_body = reader(want.body)
            got_headers, got_body = reader(have.body)
            _compare_headers(at, want_headers, got_headers, allowed)
            want.body, have.body = want_body.encode(), got_body.encode()
        if mask_text(want.body.decode("utf-8", "replace")) != \
                mask_text(have.body.decode("utf-8", "replace")):
            raise Mismatch(f"{at}: body differs:\n--- recorded\n{want.body[:2000]!r}\n"
                           f"--- written\n{have.body[:2000]!r}")


# ---------------------------------------------------------------------------- the recordings

DATA = Path(__file__).resolve().parent / "data" / "freeswitch"
FOLDERS = ("esl", "esl2", "esl3")


def recordings() -> list[str]:
    """The name of every recording of what a real FreeSWITCH sent (``.sent`` files excluded)."""
    return sorted(p.name for folder in FOLDERS for p in (DATA / folder).glob("*.txt")
                  if not p.name.endswith(".sent.txt"))


def path_of(name: str) -> Path:
    for folder in FOLDERS:
        if (DATA / folder / name).exists():
            return DATA / folder / name
    raise FileNotFoundError(name)


def rec(name: str) -> bytes:
    """The bytes of a recording, by its file name."""
    return path_of(name).read_bytes()


def sent(name: str) -> str:
    """What the client sent for the recording ``name`` (its ``.sent.txt``), without the blank
    line that ends it."""
    for folder in FOLDERS:
        path = DATA / folder / (name.removesuffix(".txt") + ".sent.txt")
        if path.exists():
            return path.read_text().removesuffix("\n\n")
    raise FileNotFoundError(name)


class Client:
    """A bare ESL client over a blocking socket: raw bytes in, raw frames out."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def frame(self) -> bytes:
        raw = b""
        length = 0
        while True:
            line = self.file.readline()
            if not line:
                raise Mismatch(f"EOF after {raw!r}")
            raw += line
            if line == b"\n":
                break
            if line.startswith(b"Content-Length: "):
                length = int(line.split(b": ")[1])
        if length:
            raw += self.file.read(length)
        return raw

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode() + b"\n\n")

    def ask(self, text: str) -> bytes:
        self.send(text)
        return self.frame()

    def login(self, password: str = "ClueCon") -> Client:
        if self.frame() != b"Content-Type: auth/request\n\n" or \
                self.ask(f"auth {password}") != b"Content-Type: command/reply\n" \
                                                 b"Reply-Text: +OK accepted\n\n":
            raise Mismatch("login failed")
        return self

    def event(self, name: str) -> bytes:
        """The next event frame called ``name`` (other frames are skipped)."""
        while True:
            frame = self.frame()
            if f"Event-Name: {name}\n".encode() in frame or f'"Event-Name":"{name}"'.encode() \
                    in frame:
                return frame

    def at_eof(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# ---------------------------------------------------------------------------- HTTP, as recorded

XML_CURL3 = Path(__file__).resolve().parent / "data" / "xml_curl3"
FORM_CLOCK = {"Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp", "Event-Sequence"}


def recorded_answer(name: str) -> bytes:
    """The body the capture server answered to a recorded request (from its ``.decoded``)."""
    text = (XML_CURL3 / name.replace(".txt", ".decoded.txt")).read_text()
    return text[text.index("\n", text.index("# answered")) + 1:].encode().rstrip(b"\n")


def _request(raw: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    return lines[0], headers, body


def compare_request(recorded: bytes, got: bytes, allowed: set[str] = frozenset()) -> None:
    """The same request line, headers (parsed: name and value, in order) and form fields
    (in order; clock values, uuids and the ``allowed`` header values may differ)."""
    want_line, want_headers, want_body = _request(recorded)
    got_line, got_headers, got_body = _request(got)
    if want_line != got_line:
        raise Mismatch(f"request line: recorded {want_line!r}, got {got_line!r}")
    loose = {"Host", "Content-Length", *allowed}
    _compare_headers("request headers", [(n, "" if n in loose else v) for n, v in want_headers],
                     [(n, "" if n in loose else v) for n, v in got_headers], set())
    want_fields = [part.partition("=") for part in want_body.decode().split("&")]
    got_fields = [part.partition("=") for part in got_body.decode().split("&")]
    _compare_headers("form", [(n, "" if n in FORM_CLOCK else mask_text(v))
                              for n, _, v in want_fields],
                     [(n, "" if n in FORM_CLOCK else mask_text(v)) for n, _, v in got_fields],
                     set())
