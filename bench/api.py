"""Document API benchmark: `GET /devices/{id}`, `GET /users/{U}/devices` and a device
listing page, with 1,000 and 100,000 devices in SQLite, against a bare Flask route on the same
gevent server in the same run.

    .venv/bin/python bench/api.py [--sizes 1000,100000] [--concurrency 8] [--duration 3]

Prints a table, then (last line) one JSON object with every figure and ratio.
"""
from __future__ import annotations

import random

from common import options, run
from load import Target, auth_token, http_request
from seeding import Seeded

POOL = 4096  # prepared requests per endpoint, each for a random id


def _success(status: int, body: bytes) -> bool:
    return status == 200 and b'"status":"success"' in body


def targets(port: int, seeded: Seeded, rng: random.Random) -> list[Target]:
    headers = {"X-Auth-Token": auth_token(port, seeded.api_key)}
    base = f"/v2/accounts/{seeded.account_id}"

    def get(path: str) -> bytes:
        return http_request("GET", base + path, headers)

    return [
        Target("device_get", "GET /v2/accounts/{A}/devices/{id}",
               [get(f"/devices/{rng.choice(seeded.device_ids)}") for _ in range(POOL)],
               lambda status, body: _success(status, body) and b'"sip":' in body),
        Target("user_devices", "GET /v2/accounts/{A}/users/{U}/devices",
               [get(f"/users/{rng.choice(seeded.user_ids)}/devices") for _ in range(POOL)],
               # every user owns two devices and is hotdesked into a third
               lambda status, body: (_success(status, body) and body.count(b'"hotdesked":false') == 2
                                     and body.count(b'"hotdesked":true') == 1)),
        Target("device_page", "GET .../devices?page_size=50&start_key=<id>",
               [get(f"/devices?page_size=50&start_key={rng.choice(seeded.device_ids)}")
                for _ in range(POOL)],
               lambda status, body: _success(status, body) and b'"page_size":' in body),
    ]


if __name__ == "__main__":
    run("api", options(__doc__.splitlines()[0]), targets)
