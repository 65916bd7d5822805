"""The seed document's examples (`kazoo-devices-3.20.md`), run as written against the real
server and a test FreeSWITCH: the QuickCall URL on v1 and v2, and its four curl commands
(sync, `"sync": true` in a device POST, presence reset with no body, a user's devices).

The curl commands are the seed's own text with only the placeholders filled in; they run
through the real `curl` when it is installed, else through an equivalent raw HTTP request
(curl's request line, headers and `-d` body with its form content type).
"""
from __future__ import annotations

import http.client
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from test_actions_support import (
    Bridge,
    bridge_fixture,
    is_uuid,
    notify,
    originate,
    presence_reset,
    xmlstatus_user,
)

# Verbatim from the seed (only `{...}` placeholders are filled in by the tests).
QUICKCALL_URL = ("http://{your kazoo domain}:8000/v1/accounts/{account_id}/devices/{device_id}/"
                 "quickcall/{number_to_call}?auth_token={API key or Auth Token}"
                 "&cid-number={caller ID number}&cid-name={caller ID name}")
SYNC = ('curl -v -X POST -H "X-Auth-Token:{AUTH_TOKEN}" '
        "http://{SERVER}:8000/v2/accounts/{ACCOUNT_ID}/devices/{DEVICE_ID}/sync")
SYNC_ON_UPDATE = '''curl -v -X POST -H "X-Auth-Token:{AUTH_TOKEN}" http://{SERVER}:8000/v{API version}/accounts/{ACCOUNT_ID}/devices/{DEVICE_ID} -d '
    {
      "data": {
          "sync": true,
          …
      }
    }\''''
PRESENCE = ('curl -v -X POST -H "X-Auth-Token:{AUTH_TOKEN}" '
            "http://{SERVER}:8000/v2/accounts/{ACCOUNT_ID}/devices/{DEVICE_ID}/presence")
USER_DEVICES = '''curl -v -X GET -H "X-Auth-Token: {AUTH_TOKEN}" \\
    http://{SERVER}:8000/v2/accounts/{ACCOUNT_ID}/users/{USER_ID}/devices'''


@dataclass
class CurlResult:
    status: int
    body: dict


def run_curl(command: str) -> CurlResult:
    """Run a curl command line as a shell would split it; the HTTP status and JSON body."""
    argv = shlex.split(command.replace("\\\n", " "))
    assert argv[0] == "curl"
    if shutil.which("curl"):
        # gevent's subprocess: the server keeps serving while curl waits for it.
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        status_lines = [line for line in done.stderr.decode(errors="replace").splitlines()
                        if line.startswith("< HTTP/")]
        return CurlResult(int(status_lines[-1].split()[2]), json.loads(done.stdout))
    return _emulate_curl(argv[1:])


def _emulate_curl(args: list[str]) -> CurlResult:
    """The request curl 7 sends for `[-v] [-X M] [-H h]... [-d body] URL`."""
    method, headers, body, url = None, {}, None, None
    items = iter(args)
    for arg in items:
        if arg == "-v":
            continue
        if arg == "-X":
            method = next(items)
        elif arg == "-H":
            name, _, value = next(items).partition(":")
            headers[name.strip()] = value.strip()
        elif arg == "-d":
            body = next(items).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        else:
            url = arg
    assert url is not None
    parts = urlsplit(url)
    headers = {"Host": parts.netloc, "User-Agent": "curl/7.88.1", "Accept": "*/*", **headers}
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    connection.request(method or ("POST" if body is not None else "GET"), path, body, headers)
    response = connection.getresponse()
    result = CurlResult(response.status, json.loads(response.read()))
    connection.close()
    return result


def fill(template: str, bridge: Bridge, **values: str) -> str:
    text = template.replace("{SERVER}:8000", bridge.url.removeprefix("http://"))
    text = text.replace("{your kazoo domain}:8000", bridge.url.removeprefix("http://"))
    text = text.replace("{AUTH_TOKEN}", bridge.api.token or "")
    text = text.replace("{ACCOUNT_ID}", bridge.account_id).replace("{account_id}", bridge.account_id)
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    assert not re.search(r"\{[A-Za-z_ ]+\}", text), text  # every placeholder filled in
    return text


@pytest.fixture
def bridge(start_bridge, fake_freeswitch_factory, esl_pool_factory) -> Iterator[Bridge]:
    yield from bridge_fixture(start_bridge, fake_freeswitch_factory, esl_pool_factory)


# --- QuickCall URL ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("credential", ["token", "api_key"])
def test_quickcall_url_as_written(bridge: Bridge, version: str, credential: str) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    url = QUICKCALL_URL.replace("/v1/", f"/{version}/")
    url = fill(url, bridge, device_id=device["id"], number_to_call="9196",
               **{"API key or Auth Token": bridge.api.token if credential == "token" else bridge.api.api_key,
                  "caller ID number": "15551112222", "caller ID name": "Bars%20Test"})
    result = run_curl(f"curl -v '{url}'")
    assert result.status == 200, result.body
    data = result.body["data"]
    assert result.body["status"] == "success"
    assert is_uuid(data["call_id"]) and is_uuid(data["job_id"])
    assert data["cid_name"] == "Bars Test" and data["cid_number"] == "15551112222"
    assert bridge.sent() == [originate(
        call_id=data["call_id"], job_id=data["job_id"], legs="user/2001@acme.test", number="9196",
        cid_name="Bars Test", cid_number="15551112222", account_id=bridge.account_id,
        device_id=device["id"], request_id=result.body["request_id"])]


def test_quickcall_url_cid_parameters_are_optional(bridge: Bridge) -> None:
    device = bridge.device("2001", caller_id={"external": {"name": "Front Desk", "number": "+15550001111"}})
    url = fill(QUICKCALL_URL.split("&")[0], bridge, device_id=device["id"], number_to_call="9196",
               **{"API key or Auth Token": bridge.api.token})
    result = run_curl(f"curl -v '{url}'")
    assert result.status == 200, result.body
    [command] = bridge.sent()
    assert ",effective_caller_id_name='Front Desk',effective_caller_id_number=+15550001111," in command


# --- Sync -------------------------------------------------------------------------------------

def test_sync_curl_as_written(bridge: Bridge) -> None:
    device = bridge.device("2001")
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    result = run_curl(fill(SYNC, bridge, DEVICE_ID=device["id"]))
    assert result.status == 200, result.body
    assert result.body["data"] == "sync request sent"
    assert bridge.sent() == [xmlstatus_user("2001"), notify("2001")]


@pytest.mark.parametrize("version", ["1", "2"])
def test_sync_true_in_a_device_post_as_written(bridge: Bridge, version: str) -> None:
    device = bridge.device("2001", caller_id={"internal": {"name": "Desk", "number": "2001"}})
    bridge.register(bridge.fs1, "2001")
    bridge.mark()
    rest = json.dumps({k: v for k, v in device.items() if k != "id"}, indent=10)[1:-1].strip()
    command = fill(SYNC_ON_UPDATE.replace("…", rest), bridge, DEVICE_ID=device["id"],
                   **{"API version": version})
    result = run_curl(command)
    assert result.status == 200, result.body
    assert "sync" not in result.body["data"]
    bridge.settle()
    assert bridge.sent() == [xmlstatus_user("2001"), notify("2001")]
    stored = bridge.api.get(f"devices/{device['id']}").json()["data"]
    assert "sync" not in stored and stored["caller_id"] == device["caller_id"]


# --- Presence ---------------------------------------------------------------------------------

def test_presence_curl_with_no_body_as_written(bridge: Bridge) -> None:
    device = bridge.device("2001", presence_id="alice-static")
    result = run_curl(fill(PRESENCE, bridge, DEVICE_ID=device["id"]))
    assert result.status == 200, result.body
    assert result.body["data"] == "reset commands sent"
    assert bridge.sent() == [presence_reset("alice-static@acme.test")]


# --- A user's devices -------------------------------------------------------------------------

def test_user_devices_curl_as_written(bridge: Bridge) -> None:
    user = bridge.user(first_name="Uma", last_name="User")
    owner = bridge.user(first_name="Otto", last_name="Owner")
    own = bridge.device("2001", name="USER_ID_DEVICE", owner_id=user["id"])
    hot = bridge.device("2002", name="OWNER_ID_DEVICE", owner_id=owner["id"],
                        hotdesk={"users": {user["id"]: {}}})
    bridge.device("2003", name="SOMEONE_ELSES", owner_id=owner["id"])
    bridge.mark()
    result = run_curl(fill(USER_DEVICES, bridge, USER_ID=user["id"]))
    assert result.status == 200, result.body
    body = result.body
    assert body["status"] == "success" and body["auth_token"] == bridge.api.token
    assert body["request_id"] and body["revision"]
    rows = sorted(body["data"], key=lambda row: row["name"])
    assert rows == sorted([
        {"device_type": "sip_device", "enabled": True, "hotdesked": False, "id": own["id"],
         "mac_address": "", "name": "USER_ID_DEVICE", "owner_id": user["id"]},
        {"device_type": "sip_device", "enabled": True, "hotdesked": True, "id": hot["id"],
         "mac_address": "", "name": "OWNER_ID_DEVICE", "owner_id": owner["id"]},
    ], key=lambda row: row["name"])
    assert bridge.sent() == []  # documents only: FreeSWITCH is not asked
