"""Directory benchmark: `POST /freeswitch/directory` answering the `sip_auth` lookup
a real FreeSWITCH sent (tests/data/xml_curl), for a random device, with 1,000 and 100,000
devices in SQLite, against a bare Flask route on the same gevent server in the same run.

    .venv/bin/python bench/directory.py [--sizes 1000,100000] [--concurrency 8] [--duration 3]

Prints a table, then (last line) one JSON object with every figure and ratio.
"""
from __future__ import annotations

import base64
import random
import re
from pathlib import Path

from common import BARE_PATH, FREESWITCH_SECRET, options, run
from load import Target, http_request
from seeding import REALM, Seeded

POOL = 4096  # prepared requests, each for a random device
RECORDED = (Path(__file__).resolve().parent.parent / "tests" / "data" / "xml_curl"
            / "14_a_register__directory_sip_auth_REGISTER_2001@acme.test.txt")
RECORDED_USER = "2001"
# The fields of the recording that carry the SIP user (its realm is already REALM).
USER_FIELDS = ("sip_auth_username", "sip_contact_user", "sip_to_user", "sip_from_user", "user")


def recorded_body() -> str:
    """The body exactly as FreeSWITCH sent it (after the blank line)."""
    text = RECORDED.read_text()
    body = text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else text.split("\n\n", 1)[1]
    assert f"domain={REALM}" in body and f"&user={RECORDED_USER}&" in body
    return body.strip("\r\n")


def body_for(template: str, username: str) -> bytes:
    """The recorded request with the SIP user fields naming `username`."""
    for name in USER_FIELDS:
        template = re.sub(rf"(^|&){name}={RECORDED_USER}(?=&|$)", rf"\g<1>{name}={username}", template)
    return template.encode()


def targets(port: int, seeded: Seeded, rng: random.Random) -> list[Target]:
    template = recorded_body()
    credentials = base64.b64encode(f"freeswitch:{FREESWITCH_SECRET}".encode()).decode()
    headers = {"Authorization": f"Basic {credentials}", "User-Agent": "freeswitch-xml/1.0",
               "Accept": "*/*", "Content-Type": "application/x-www-form-urlencoded"}
    requests = [http_request("POST", "/freeswitch/directory", headers,
                             body_for(template, rng.choice(seeded.sip_usernames)))
                for _ in range(POOL)]
    # For comparison only: the bare route given the same request (headers and form body, which
    # it does not read), to tell what the request's size costs from what the lookup costs.
    same_request = [r.replace(b"POST /freeswitch/directory ", f"POST {BARE_PATH} ".encode(), 1)
                    for r in requests[:64]]
    return [
        Target("bare_same_request", "bare route, FreeSWITCH's request (info)", same_request,
               lambda status, body: status == 200 and b'"ok":true' in body, baseline=True),
        Target("directory", "POST /freeswitch/directory (sip_auth)", requests,
               lambda status, body: status == 200 and b'name="a1-hash"' in body),
    ]


if __name__ == "__main__":
    run("directory", options(__doc__.splitlines()[0]), targets)
