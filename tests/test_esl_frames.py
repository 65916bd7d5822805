"""Frame and event parsing (esl_bridge.frames): split first, then decode each value."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from greenswitch.esl import ESLEvent

from esl_bridge.errors import ProtocolError
from esl_bridge.frames import FrameBuffer, parse_event, parse_head, read_frame, url_decode

DATA = Path(__file__).resolve().parent / "data" / "freeswitch"


def stream(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(io.BytesIO(data))


def test_api_response_body_is_read_by_length():
    frame = read_frame(stream((DATA / "esl/04_api_status.txt").read_bytes()))
    assert frame.content_type == "api/response"
    assert frame.text().startswith("UP 0 years") and frame.text().endswith("240K/8192K\n")
    assert len(frame.body) == 333


def test_background_job_keeps_its_body_apart_from_its_headers():
    raw = (DATA / "esl2/116_event_BACKGROUND_JOB_quickcall_ok_plain.txt").read_bytes()
    frame = read_frame(stream(raw))
    event = parse_event(frame.body)
    assert event.name == "BACKGROUND_JOB"
    assert event["Job-UUID"] == "a9061ffb-bfdd-4924-8ee7-a8c5ddb85f44"
    assert event["Content-Length"] == "41"
    assert event.body == "+OK 931a5c0a-60a9-4023-96c3-4731911344e2\n"
    assert event["Job-Command-Arg"].startswith(
        "{origination_uuid=931a5c0a-60a9-4023-96c3-4731911344e2,origination_caller_id_name="
        "'Device QuickCall',")
    assert event["Event-Date-GMT"] == "Wed, 25 Nov 2026 18:54:19 GMT"
    assert not event.notes
    # greenswitch glues the body onto the last header: the flaw this module exists for
    glued = ESLEvent(frame.body.decode())
    assert glued.headers["Content-Length"] != "41"


def test_a_percent_0a_value_cannot_forge_a_header():
    body = (b"Event-Subclass: sofia%3A%3Aregister\nEvent-Name: CUSTOM\n"
            b"user-agent: evil%0AEvent-Name%3A%20BACKGROUND_JOB%0AJob-UUID%3A%20x\n"
            b"username: 2001\n\n")
    event = parse_event(body)
    assert event.name == "CUSTOM"
    assert "Job-UUID" not in event
    assert event["user-agent"] == "evil\nEvent-Name: BACKGROUND_JOB\nJob-UUID: x"
    assert event["username"] == "2001"
    # greenswitch URL-decodes before splitting, so it sees the forged headers
    forged = ESLEvent(body.decode())
    assert forged.headers["Event-Name"] == "BACKGROUND_JOB" and forged.headers["Job-UUID"] == "x"


def test_a_body_line_that_looks_like_a_header_stays_body():
    body = b"Event-Name: BACKGROUND_JOB\nJob-UUID: a\nContent-Length: 22\n\n-ERR x\nJob-UUID: b\n\n"
    event = parse_event(body)
    assert event["Job-UUID"] == "a"
    assert event.body == "-ERR x\nJob-UUID: b\n\n"[:22]


def test_non_utf8_is_replaced_and_noted_never_raised():
    event = parse_event(b"Event-Name: CUSTOM\nuser-agent: caf%E9\nraw: \xff\xfe\n\n")
    assert event["user-agent"] == "caf\ufffd"
    assert event["raw"] == "\ufffd\ufffd"
    assert len(event.notes) == 2
    frame = read_frame(stream(b"Content-Type: api/response\nContent-Length: 3\n\n\xffok"))
    assert frame.text() == "\ufffdok"
    assert frame.notes


def test_malformed_lines_are_skipped_and_noted():
    frame = read_frame(stream(b"Content-Type: api/response\nno colon here\nContent-Length: 2\n\nok"))
    assert frame.text() == "ok" and len(frame.notes) == 1
    event = parse_event(b"Event-Name: X\ngarbage\nContent-Length: zz\n\nbody")
    assert event.name == "X" and len(event.notes) == 2 and event.body == "body"
    event = parse_event(b"Event-Name: X\n\nstray bytes")
    assert event.notes


@pytest.mark.parametrize("data", [
    b"Content-Type: api/response\nContent-Length: abc\n\n",
    b"Content-Type: api/response\nContent-Length: -1\n\n",
    b"Content-Type: api/response\nContent-Length: 10\n\nshort",
    b"Content-Type: api/resp",
    b"Content-Type: command/reply\n",
    b"X: " + b"y" * 300_000 + b"\n\n",
])
def test_unrecoverable_framing_raises_protocol_error(data):
    with pytest.raises(ProtocolError):
        read_frame(stream(data))


def test_clean_end_and_stray_blank_lines():
    assert read_frame(stream(b"")) is None
    frame = read_frame(stream(b"\n\nContent-Type: auth/request\n\n"))
    assert frame.content_type == "auth/request" and frame.body == b""


def test_a_whole_recorded_session_parses_frame_by_frame():
    raw = (DATA / "esl2/119_session_quickcall_event_connection_full_rx.txt").read_bytes()
    source = stream(raw)
    kinds = []
    while (frame := read_frame(source)) is not None:
        if frame.content_type == "text/event-plain":
            event = parse_event(frame.body)
            assert not event.notes
            kinds.append(event.name)
        else:
            kinds.append(frame.content_type)
    assert kinds == ["command/reply", "CHANNEL_CREATE", "CHANNEL_ANSWER", "BACKGROUND_JOB",
                     "api/response", "CHANNEL_HANGUP_COMPLETE"]


def test_url_decode_is_percent_only():
    assert url_decode(b"a+b%20c%2B") == "a+b c+"
    assert url_decode(b"100%") == "100%"


# ---------------------------------------------------------------------- FrameBuffer
# The command connections cut frames out of what recv returned (FrameBuffer) instead of reading
# a stream line by line (read_frame): both must give the very same frames for the same bytes.

# Notes beside the recorded bytes (log extracts, Lua output, BLF bodies, HTTP bytes) are named so.
NOTE_RE = re.compile(r"_log\.txt$|_i\d+_lua_|_blf_|_http_received")
RECORDED = sorted(p for p in DATA.glob("esl*/*.txt")
                  if not p.name.endswith(".sent.txt") and not NOTE_RE.search(p.name))
HOSTILE = [
    b"\n\nContent-Type: auth/request\n\n",  # stray blank lines before a frame
    b"Content-Type: api/response\nno colon here\nContent-Length: 2\n\nok",
    b"Content-Type: api/response\nContent-Length: 3\n\n\xffok",  # non-UTF-8 body
    b"Content-Type: command/reply\nReply-Text: caf\xe9\n\n",  # non-UTF-8 reply text
    b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: x\nJob-UUID: x\n\n",
    b"Content-Type: api/response\nContent-Length: 12\n\nA: b\n\nC: d\n\n",  # body like headers
    b"Content-Type: api/response\nContent-Length: 0\n\n",
    b"Content-Type: api/response\nContent-Length: 007\n\nabcdefg",
    b"Content-Length: 2\nContent-Type: api/response\n\nok",  # other header order
    b"Content-Type: api/response\nContent-Length: 5\nContent-Length: 2\n\nok",  # repeated
    b"Content-Type: command/reply\nReply-Text: a%0AContent-Type: api/response\n\n",
    b"garbage\n\n",  # only a malformed line
    b"Content-Type: text/disconnect-notice\nContent-Length: 31\n\nThe system is being shut down.\n",
]


def frames_by_read_frame(data: bytes) -> list[tuple]:
    source, found = stream(data), []
    while (frame := read_frame(source)) is not None:
        found.append((frame.headers, frame.body, frame.notes))
    return found


def frames_by_buffer(data: bytes, chunk: int) -> list[tuple]:
    buffer, found = FrameBuffer(), []
    for start in range(0, len(data), chunk):
        buffer.feed(data[start:start + chunk])
        while (frame := buffer.next_frame()) is not None:
            found.append((frame.headers, frame.body, frame.notes))
    assert not buffer.pending
    return found


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 1500, 1 << 30])
def test_frame_buffer_gives_the_frames_read_frame_gives(chunk):
    for path in RECORDED:
        data = path.read_bytes()
        assert frames_by_buffer(data, chunk) == frames_by_read_frame(data), path.name
    for data in HOSTILE:
        assert frames_by_buffer(data, chunk) == frames_by_read_frame(data), data
    everything = b"".join(p.read_bytes() for p in RECORDED) + b"".join(HOSTILE)
    assert frames_by_buffer(everything, chunk) == frames_by_read_frame(everything)


def test_frame_buffer_holds_a_partial_frame():
    buffer = FrameBuffer()
    buffer.feed(b"Content-Type: api/response\nContent-Le")
    assert buffer.next_frame() is None and buffer.pending
    buffer.feed(b"ngth: 4\n\nab")
    assert buffer.next_frame() is None and buffer.pending
    buffer.feed(b"cdContent-Type: auth/request\n\n")
    assert buffer.next_frame().body == b"abcd"
    assert buffer.next_frame().content_type == "auth/request"
    assert buffer.next_frame() is None and not buffer.pending


@pytest.mark.parametrize("data", [
    b"Content-Type: api/response\nContent-Length: abc\n\n",
    b"Content-Type: api/response\nContent-Length: -1\n\n",
    b"Content-Type: api/response\nContent-Length: 99999999999\n\n",
    b"X: " + b"y" * 300_000 + b"\n\n",
    b"X: " + b"y" * 300_000,  # a header line that has not even ended
])
def test_frame_buffer_raises_protocol_error_as_read_frame_does(data):
    buffer = FrameBuffer()
    buffer.feed(data)
    with pytest.raises(ProtocolError):
        buffer.next_frame()


def test_frame_buffer_bounds_a_header_block_that_never_ends():
    buffer = FrameBuffer(max_line=100, max_body=1000)
    with pytest.raises(ProtocolError):
        for _ in range(200):
            buffer.feed(b"X-Header: value\n")
            assert buffer.next_frame() is None


@pytest.mark.parametrize("head", [
    b"Content-Type: api/response\nContent-Length: 333",
    b"Content-Type: api/response\nContent-Length: 33x",
    b"Content-Type: api/response\nContent-Length: 3\nX: y",
    b"Content-Type: api/response\nContent-Length: ",
    b"Content-Type: command/reply\nReply-Text: +OK accepted",
    b"Content-Type: command/reply\nReply-Text: -ERR caf\xe9",
    b"Content-Type: command/reply\nReply-Text: +OK\nJob-UUID: 1",
    b"Content-Type: command/reply\nReply-Text: a: b",
])
def test_the_reply_shortcut_gives_the_general_split(head):
    general: dict[str, str] = {}
    for line in head.split(b"\n"):
        name, sep, value = line.partition(b": ")
        if sep:
            general[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    assert parse_head(head, []) == general
