"""Shared pieces of the end-to-end action tests (`tests/test_actions_*.py`, SPEC §6, §8).

No tests here: the real server (`start_bridge`), a real `EslPool` over one or two test
FreeSWITCH nodes (`fake_freeswitch_factory`, `esl_pool_factory`) and an account with a token,
bundled as `Bridge`, plus helpers to read what each node received *since the test's own
requests began* (`Bridge.mark()`), leaving out the pool's own connection set-up.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import requests
from fake_freeswitch import FakeFreeSwitch
from fixtures_web import ApiClient, assert_error, client_for, make_account

from esl_bridge import EslPool
from models import db
from models import documents as docs
from models.tables import AccountRow, DeviceRow, UserRow
from web.server import BridgeServer

RECORDINGS = Path(__file__).resolve().parent / "data" / "freeswitch" / "esl2"
REALM = "acme.test"

# What the pool sends by itself on every (re)connection: auth, the event subscription and the
# full registration refresh. Everything else a node receives was caused by a request.
_SETUP = re.compile(r"(auth \S+|event plain [A-Za-z_: ]+|api sofia xmlstatus profile \S+ reg)\Z")


def is_setup(command: str) -> bool:
    return bool(_SETUP.fullmatch(command))


def recorded(name_prefix: str) -> str:
    """The text of a recorded command sent to a real FreeSWITCH (without the ending blank line)."""
    [path] = RECORDINGS.glob(f"{name_prefix}*.sent.txt")
    return path.read_text().rstrip("\n")


@dataclass
class Bridge:
    """esl-bridge over real HTTP, its pool, the test FreeSWITCH nodes and one account."""

    server: BridgeServer
    pool: EslPool
    fakes: list[FakeFreeSwitch]
    api: ApiClient
    marks: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url  # type: ignore[attr-defined]

    @property
    def fs1(self) -> FakeFreeSwitch:
        return self.fakes[0]

    @property
    def fs2(self) -> FakeFreeSwitch:
        return self.fakes[1]

    @property
    def account_id(self) -> str:
        return self.api.account_id

    # ------------------------------------------------------------- what the nodes received

    def mark(self) -> None:
        """From now on, `sent()` reports only what the nodes receive after this point."""
        self.settle()
        self.marks = [len(fake.commands) for fake in self.fakes]

    def sent(self, fake: FakeFreeSwitch | None = None) -> list[str]:
        """Commands `fake` (default: every node, in node order) received since `mark()`,
        without the pool's connection set-up."""
        fakes = [fake] if fake is not None else self.fakes
        out: list[str] = []
        for item in fakes:
            since = self.marks[self.fakes.index(item)] if self.marks else 0
            out.extend(c for c in item.commands[since:] if not is_setup(c))
        return out

    def settle(self, timeout: float = 5.0) -> None:
        """Wait for the side effects of committed changes (they run in the background)."""
        assert self.server.runtime.side_effects.join(timeout), "side effects still running"

    # ------------------------------------------------------------- documents

    def device(self, username: str | None = "2001", **doc: Any) -> dict[str, Any]:
        """Create a device over HTTP (SIP `username` with a password unless None)."""
        if username is not None:
            sip = {"username": username, "password": "secret-pass", **doc.pop("sip", {})}
            doc["sip"] = sip
        doc.setdefault("name", f"phone {username}")
        return self.api.create_device(**doc)

    def user(self, **doc: Any) -> dict[str, Any]:
        return self.api.create_user(**doc)

    def register(self, fake: FakeFreeSwitch, user: str, realm: str = REALM, **kwargs: Any) -> None:
        """Register `user@realm` on `fake` and wait until the pool has seen the register event
        (so that a profile other than `internal` is known to the pool)."""
        fake.register(user, realm, **kwargs)
        node = fake.name
        assert wait_until(lambda: any(r.node == node for r in self.pool.registrations.lookup(user, realm))), \
            f"the pool never saw {user}@{realm} register on {node}"

    # ------------------------------------------------------------- requests

    def quickcall(self, device_id: str, number: str, query: str = "", method: str = "GET",
                  **kw: Any) -> requests.Response:
        path = f"devices/{device_id}/quickcall/{number}" + (f"?{query}" if query else "")
        return self.api.request(method, path, **kw)

    def health(self) -> dict[str, Any]:
        response = self.api.session.get(f"{self.url}/health", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def metrics(self) -> str:
        response = self.api.session.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.text


class Clock:
    """A clock the test moves by hand (`clock.now = ...`), for what takes one as `clock`."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def wait_until(check: Callable[[], object], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(0.002)
    return True


def make_bridge(start_bridge: Callable[..., BridgeServer],
                fake_freeswitch_factory: Callable[..., FakeFreeSwitch],
                esl_pool_factory: Callable[..., EslPool], *, nodes: int = 1,
                fake_options: dict[str, Any] | None = None, **pool_options: Any) -> Bridge:
    """Start `nodes` test FreeSWITCH nodes, a fully connected pool over them, the server over
    that pool, and an account (realm `acme.test`) with a token; then `mark()`."""
    fakes = [fake_freeswitch_factory(**(fake_options or {})) for _ in range(nodes)]
    pool = esl_pool_factory(fakes, **pool_options)
    server = start_bridge(pool=pool)
    account_id, key, admin_id = make_account()
    api = client_for(server.url, account_id, key, admin_id)  # type: ignore[attr-defined]
    bridge = Bridge(server, pool, fakes, api)
    bridge.mark()
    return bridge


def bridge_fixture(start_bridge: Callable[..., BridgeServer],
                   fake_freeswitch_factory: Callable[..., FakeFreeSwitch],
                   esl_pool_factory: Callable[..., EslPool], nodes: int = 1,
                   **options: Any) -> Iterator[Bridge]:
    """Body of each test module's `bridge` fixture: closes the client session afterwards."""
    bridge = make_bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory, nodes=nodes,
                         **options)
    yield bridge
    bridge.api.session.close()


# ----------------------------------------------------------------- expected command texts


def originate(*, call_id: str, job_id: str, legs: str, number: str, cid_name: str,
              cid_number: str, account_id: str, request_id: str, device_id: str | None = None,
              user_id: str | None = None, timeout: int = 30, ignore_early_media: bool = True,
              bypass_media: bool = False, auto_answer: bool = True, context: str = "default",
              shown_number: str | None = None) -> str:
    """SPEC §6.1's `bgapi originate`, written out independently of `esl_bridge.commands`,
    with `esl_bridge_call_id` (every leg of one originate can be hung up at once)."""
    quoted_name = f"'{cid_name}'" if " " in cid_name else cid_name
    # Several legs: the uuid goes in the first leg's [] (in {} every leg would get it).
    several = "," in legs
    parts = [] if several else [f"origination_uuid={call_id}"]
    parts += [
        "origination_caller_id_name='Device QuickCall'",
        f"origination_caller_id_number={shown_number or number}",
        f"effective_caller_id_name={quoted_name}",
        f"effective_caller_id_number={cid_number}",
        f"originate_timeout={timeout}",
        f"ignore_early_media={'true' if ignore_early_media else 'false'}",
    ]
    if bypass_media:
        parts.append("bypass_media=true")
    if auto_answer:
        parts.append("sip_auto_answer=true")
    parts.append(f"esl_bridge_account_id={account_id}")
    if device_id:
        parts.append(f"esl_bridge_device_id={device_id}")
    if user_id:
        parts.append(f"esl_bridge_user_id={user_id}")
    parts.append(f"esl_bridge_request_id={request_id}")
    parts.append(f"esl_bridge_call_id={call_id}")
    first_leg = f"[origination_uuid={call_id}]" if several else ""
    return (f"bgapi originate {{{','.join(parts)}}}{first_leg}{legs} {number} XML {context}\n"
            f"Job-UUID: {job_id}")


def notify(user: str, event: str = "check-sync", profile: str = "internal",
           realm: str = REALM) -> str:
    return ("sendevent NOTIFY\n"
            f"profile: {profile}\n"
            f"event-string: {event}\n"
            f"user: {user}\n"
            f"host: {realm}\n"
            "content-type: application/simple-message-summary")


def presence_reset(presence_id: str) -> str:
    return recorded("112_").replace("alice-static@acme.test", presence_id)


def xmlstatus_user(user: str, realm: str = REALM, profile: str = "internal") -> str:
    return f"api sofia xmlstatus profile {profile} user {user}@{realm}"


def flush_cache(user: str, realm: str = REALM) -> str:
    return f"api xml_flush_cache id {user} {realm}"


def flush_inbound_reg(user: str, realm: str = REALM, profile: str = "internal") -> str:
    return f"api sofia profile {profile} flush_inbound_reg {user}@{realm}"


# ----------------------------------------------------------------- the store, behind the API


def write_raw(table: str, ident: str, changes: dict[str, Any]) -> None:
    """Change a stored document directly, skipping validation (what an older version, a manual
    fix or a bug might have left): proves the ESL quoting gate is the last line."""
    model = {"accounts": AccountRow, "devices": DeviceRow, "users": UserRow}[table]
    with db.database.connection_context():
        row = model.get_by_id(ident)
        doc = docs.decode(row.doc)
        doc.update(changes)
        model.update(doc=docs.encode(doc)).where(model.id == ident).execute()


def envelope(response: requests.Response) -> dict[str, Any]:
    assert "Traceback" not in response.text
    return json.loads(response.text)


def is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def expected_originate(bridge: Bridge, response: requests.Response, **kw: Any) -> str:
    """The originate a successful quickcall response describes (ids taken from it)."""
    body = response.json()
    data = body["data"]
    kw.setdefault("legs", "user/2001@acme.test")
    kw.setdefault("number", data["number"])
    kw.setdefault("cid_name", data["cid_name"])
    kw.setdefault("cid_number", data["cid_number"])
    return originate(call_id=data["call_id"], job_id=data["job_id"], account_id=bridge.account_id,
                     request_id=body["request_id"], **kw)


def success_data(response: requests.Response) -> dict[str, Any]:
    """The data of a 200 success envelope."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def registered_bridge(greenlet_leak_check: Any, start_bridge: Any, fake_freeswitch_factory: Any,
                      esl_pool_factory: Any) -> Iterator[Bridge]:
    """Body of the fault tests' `bridge` fixture: one node, a 0.3 s command timeout, device
    2001 registered, and the greenlet count marked as the steady state."""
    bridge = next(bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory,
                                 command_timeout=0.3))
    bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    greenlet_leak_check.mark_steady()
    yield bridge
    bridge.api.session.close()


def device_id(bridge: Bridge) -> str:
    [row] = bridge.api.get("devices", params={"filter_sip.username": "2001"}).json()["data"]
    return row["id"]


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_503(response: requests.Response, node: str | None = None) -> dict[str, Any]:
    """SPEC §2's 503; `node` names the node, or "all" when no node at all could be picked."""
    body = assert_error(response, 503, "freeswitch_unavailable")
    assert isinstance(body["data"]["message"], str) and body["data"]["message"]
    if node is not None:
        assert body["data"]["node"] in (node, "all"), body
    return body


def sample_key(key: str) -> str:
    """A sample's name and labels, the labels in name order (their order carries no meaning)."""
    name, _, labels = key.partition("{")
    if not labels:
        return key
    return name + "{" + ",".join(sorted(re.findall(r'[a-zA-Z_]\w*="(?:[^"\\]|\\.)*"', labels))) + "}"


def parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            values[sample_key(key)] = float(value)
    return values


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    key = sample_key(key)
    return after.get(key, 0.0) - before.get(key, 0.0)
