"""mod_curl's ``curl`` API as FreeSWITCH 1.10 runs it, for the test FreeSWITCH and the Lua harness.

``curl <url> [json] [headers] [get|head|delete] [connect-timeout N] [timeout N]
[append_headers Name:value] [content-type T] [post|put <data>]``: the argument string is split on
spaces into at most 10 arguments, and the ``post`` data is URL-decoded once (``switch_url_decode``)
before it is sent. The request really goes out over HTTP. What comes back (esl3/163-172):

- with ``json``: ``{"exit_code":"0","status_code":"200","body":…,"version":"HTTP/1.1",
  "phrase":"OK","headers":[{"key":…,"value":…},…]}`` (codes as strings, no ``body`` when empty);
  a refused connection ``{"exit_code":"7","status_code":"0","headers":[]}`` at once, no answer
  within ``timeout`` ``{"exit_code":"28",…}``;
- without ``json``: the body alone, so nothing at all when the connection failed (the event
  socket then answers ``-ERR no reply``, esl3/172).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import requests
from urllib3.util import SKIP_HEADER

# The curl options of mod_curl 1.10 that take a value, and those that do not.
VALUE_OPTIONS = {"content-type", "connect-timeout", "timeout", "append_headers", "proxy"}
FLAGS = {"headers", "json", "get", "head", "delete", "insecure", "secure"}
METHODS_WITH_DATA = {"post", "put"}
#: mod_curl keeps its arguments in a fixed array; a command with more would be cut.
MAX_ARGUMENTS = 10


def switch_url_decode(text: str) -> bytes:
    """FreeSWITCH's switch_url_decode: each %XX becomes a byte, '+' stays, a NUL ends the C string."""
    raw = text.encode("utf-8")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25 and i + 2 < len(raw) and re.fullmatch(rb"[0-9A-Fa-f]{2}", raw[i + 1:i + 3]):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return bytes(out).split(b"\0", 1)[0]


@dataclass
class CurlCall:
    """One ``curl`` command, as mod_curl understood its arguments."""

    args: str
    url: str
    method: str
    options: dict[str, str]
    headers: list[tuple[str, str]]
    body: bytes | None
    json: bool = False
    output: dict[str, Any] | str = ""

    @property
    def form(self) -> dict[str, list[str]]:
        """The POST body as the server parses it."""
        return parse_qs((self.body or b"").decode("utf-8"), keep_blank_values=True)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def parse(args: str) -> CurlCall:
    """The arguments as mod_curl reads them; ValueError for what it would not understand."""
    tokens = args.split(" ")
    if len(tokens) > MAX_ARGUMENTS:
        raise ValueError(f"{len(tokens)} curl arguments; mod_curl keeps {MAX_ARGUMENTS}")
    call = CurlCall(args=args, url=tokens[0], method="get", options={}, headers=[], body=None)
    i = 1
    while i < len(tokens):
        token = tokens[i].lower()
        if token in VALUE_OPTIONS:
            if i + 1 >= len(tokens):
                raise ValueError(f"curl option {token} without a value")
            value = tokens[i + 1]
            if token == "append_headers":
                name, sep, header_value = value.partition(":")
                if not sep or not name:
                    raise ValueError(f"append_headers wants Name:value, got {value!r}")
                call.headers.append((name, header_value.lstrip()))
            else:
                call.options[token] = value
            i += 2
        elif token in FLAGS:
            if token == "json":
                call.json = True
            elif token in ("get", "head", "delete"):
                call.method = token
            i += 1
        elif token in METHODS_WITH_DATA:
            call.method = token
            call.body = switch_url_decode(tokens[i + 1]) if i + 1 < len(tokens) else b""
            i += 2
        else:
            raise ValueError(f"mod_curl does not know the argument {tokens[i]!r}")
    for name in ("connect-timeout", "timeout"):
        if name in call.options and not call.options[name].isdigit():
            raise ValueError(f"curl {name} must be whole seconds, got {call.options[name]!r}")
    return call


def bare_session() -> requests.Session:
    """A requests session that sends only the headers it is given (plus Host), in their order:
    what libcurl sends is compared with recordings."""
    session = requests.Session()
    session.headers.clear()
    session.headers["Accept-Encoding"] = SKIP_HEADER  # else http.client adds its own
    return session


def perform(call: CurlCall, http: requests.Session | None = None,
            timeout_cap: float | None = None) -> str:
    """Send the request; ``call.output`` holds the outcome, the text is what ``curl`` returns."""
    # libcurl's headers in its order (esl3/169); requests fills in Content-Length's value.
    send = {"User-Agent": "freeswitch-curl/1.0", "Accept": "*/*"}
    for name, value in call.headers:
        send[name] = value
    if call.body is not None:
        send["Content-Length"] = ""
        send["Content-Type"] = call.options.get("content-type", "application/x-www-form-urlencoded")
    connect = float(call.options.get("connect-timeout", 300))
    total = float(call.options.get("timeout", 300))
    if timeout_cap is not None:
        connect, total = min(connect, timeout_cap), min(total, timeout_cap)
    outcome: dict[str, Any]
    try:
        response = (http or bare_session()).request(call.method.upper(), call.url, data=call.body,
                                              headers=send, timeout=(connect, total),
                                              allow_redirects=True)
    except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
        outcome = {"exit_code": "28", "status_code": "0", "headers": []}
    except requests.exceptions.ConnectionError:
        outcome = {"exit_code": "7", "status_code": "0", "headers": []}
    else:
        outcome = {"exit_code": "0", "status_code": str(response.status_code)}
        if response.content:
            outcome["body"] = response.content.decode("utf-8", "replace")
        outcome["version"] = "HTTP/1.1" if response.raw.version == 11 else "HTTP/1.0"
        outcome["phrase"] = response.reason
        outcome["headers"] = [{"key": k, "value": v} for k, v in response.raw.headers.items()]
    call.output = outcome
    if call.json:
        return json.dumps(outcome, separators=(",", ":"), ensure_ascii=False)
    return str(outcome.get("body", ""))
