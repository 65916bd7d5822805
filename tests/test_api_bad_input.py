"""Hostile and malformed input: the right envelope, nothing written, no
traceback. Runs on SQLite and on PostgreSQL (which refuses some strings SQLite accepts)."""
from __future__ import annotations

import json
import socket

import pytest
from fixtures_web import assert_error, assert_invalid

pytestmark = pytest.mark.store


def nothing_written(api, before: dict) -> None:
    assert snapshot(api) == before


def snapshot(api) -> dict:
    return {"account": api.get("").json()["revision"],
            "devices": api.get("devices", params={"paginate": "false"}).json()["revision"],
            "users": api.get("users", params={"paginate": "false"}).json()["revision"]}


@pytest.mark.parametrize("raw", [
    '{"data": {"name": "x", "n": 1e400}}',
    '{"data": {"name": "x", "n": -1e999}}',
    '{"data": {"name": "x", "n": ' + "9" * 5000 + "}}",
])
def test_numbers_json_cannot_carry_are_400(api, raw):
    before = snapshot(api)
    assert_invalid(api.put("devices", raw=raw), "json:invalid", exact=True)
    nothing_written(api, before)


@pytest.mark.parametrize("path", ["devices", "users", ""])
def test_nul_characters_and_lone_surrogates_are_refused(api, path):
    """NUL is legal in JSON strings but PostgreSQL text can neither hold nor compare it."""
    before = snapshot(api)
    docs = {"devices": [{"name": "a\u0000b"}, {"name": "x", "sip": {"username": "al\u0000ice"}},
                        {"name": "x", "custom": {"k\u0000": 1}}],
            "users": [{"first_name": "A", "last_name": "B", "username": "u\u0000v", "password": "pw"}],
            "": [{"name": "n\u0000"}, {"realm": "r\u0000.test"}]}
    for doc in docs[path]:
        response = api.request("PATCH" if path == "" else "PUT", path, doc)
        assert_invalid(response, "json:invalid", exact=True)
    # A lone UTF-16 surrogate parses as JSON but no database can store it.
    for raw in ('{"data":{"name":"\\ud800"}}', '{"data":{"name":"x","custom":{"\\udfff":1}}}',
                '{"data":{"name":"a\\udc00b"}}'):
        response = api.request("PATCH" if path == "" else "PUT", path, raw=raw)
        assert_invalid(response, "json:invalid", exact=True)
    nothing_written(api, before)
    # Other control characters are escaped in storage and come back as sent.
    if path == "devices":
        created = api.create_device(name="tab\there", notes="\u0001\u001f")
        assert api.get(f"devices/{created['id']}").json()["data"]["notes"] == "\u0001\u001f"


@pytest.mark.parametrize("where", ["account", "device", "user"])
@pytest.mark.parametrize("bad", ["%00" * 32, "a" * 31 + "%00", "..%2F..%2Fetc", "%C3%A9" * 16, "x" * 5000,
                                 "%FF" * 32, "0" * 32 + "%0d%0aX-Injected: 1"])
def test_hostile_ids_in_paths_are_refused_cleanly(api, where, bad):
    if where == "account":
        response = api.get(f"/v2/accounts/{bad}/devices")
        assert response.status_code in (403, 404), response.text
        assert_error(response, response.status_code, "forbidden" if response.status_code == 403 else "not_found")
    else:
        response = api.get(f"{where}s/{bad}")
        assert response.status_code == 404, response.text
        assert_error(response, 404, response.json()["message"])
    assert "X-Injected" not in response.headers


@pytest.mark.parametrize("name, value", [("auth_token", "\u0000" * 43), ("auth_token", "a" * 4000)])
def test_hostile_tokens_are_401(api, name, value):
    assert_error(api.get("devices", token=None, params={name: value}), 401, "invalid_credentials")


@pytest.mark.parametrize("data", [
    {"credentials": "0" * 32, "account_name": "ac\u0000me"},
    {"credentials": "0" * 32, "account_realm": "\u0000"},
    {"credentials": "0" * 32, "account_name": "x" * 100000},
    {"credentials": "0" * 32, "account_name": ["acme"]},
])
def test_hostile_user_auth_is_401_or_400(api, data):
    response = api.put("/v2/user_auth", data, token=None)
    assert response.status_code in (400, 401), response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("params", [{"filter_name": "\u0000"}, {"has_key": "\u0000"}, {"start_key": "\u0000" * 32},
                                    {"filter_" + "a." * 200 + "b": "x"}, {"page_size": "1" * 5000}])
def test_hostile_listing_parameters(api, params):
    api.create_device()
    response = api.get("devices", params=params)
    assert response.status_code in (200, 400), response.text
    assert "Traceback" not in response.text


def test_wrong_types_everywhere_write_nothing(api):
    device = api.create_device(name="phone", sip={"username": "alice", "password": "secret-1"})
    user = api.create_user()
    before = snapshot(api)
    bodies = [{"name": {"first": "x"}}, {"name": ["x"]}, {"name": 1.5}, {"enabled": None and 1 or "x"},
              {"sip": []}, {"sip": {"username": {"x": 1}}}, {"sip": {"realm": []}}, {"sip": {"ip": 10}},
              {"hotdesk": {"users": 5}}, {"owner_id": ["x"]}, {"mac_address": {"x": 1}},
              {"caller_id": {"internal": []}}, {"call_forward": {"number": 5551234, "enabled": True}}]
    for body in bodies:
        for method in ("PUT", "POST", "PATCH"):
            path = "devices" if method == "PUT" else f"devices/{device['id']}"
            doc = {"name": "phone", **body} if method != "PATCH" else body
            response = api.request(method, path, doc)
            assert_error(response, 400, "invalid request")
    for body in [{"first_name": []}, {"username": 5}, {"hotdesk": []}, {"hotdesk": {"id": 1}},
                 {"password": 123456}, {"caller_id": 1}, {"priv_level": ["admin"]}]:
        for method in ("PUT", "POST", "PATCH"):
            path = "users" if method == "PUT" else f"users/{user['id']}"
            doc = {"first_name": "A", "last_name": "B", **body} if method != "PATCH" else body
            assert_error(api.request(method, path, doc), 400, "invalid request")
    for body in [{"name": []}, {"realm": 5}, {"dialplan_context": {}}, {"allow_anonymous_quickcalls": "no"}]:
        assert_error(api.patch("", body), 400, "invalid request")
        assert_error(api.put("", {"name": "c", "realm": "c.acme.test", **body}), 400, "invalid request")
    nothing_written(api, before)


def test_over_long_strings_write_nothing(api):
    before = snapshot(api)
    for body in [{"name": "n" * 10000}, {"name": "x", "sip": {"username": "u" * 10000}},
                 {"name": "x", "presence_id": "p" * 10000}, {"name": "x", "mac_address": "a" * 10000},
                 {"name": "x", "sip": {"realm": "r" * 10000}}]:
        assert_error(api.put("devices", body), 400, "invalid request")
    for body in [{"first_name": "f" * 10000, "last_name": "x"},
                 {"first_name": "x", "last_name": "x", "username": "u" * 10000},
                 {"first_name": "x", "last_name": "x", "hotdesk": {"id": "1" * 10000}}]:
        assert_error(api.put("users", body), 400, "invalid request")
    assert_error(api.put("", {"name": "n" * 10000, "realm": "c.acme.test"}), 400, "invalid request")
    nothing_written(api, before)


def test_unknown_and_foreign_ids_in_documents(api, other):
    theirs = other.create_user()
    before = snapshot(api)
    for owner in ("0" * 32, theirs["id"], theirs["id"].upper(), "", " " + theirs["id"]):
        response = api.put("devices", {"name": "x", "owner_id": owner})
        assert_error(response, 400, "invalid request")
    nothing_written(api, before)


def test_body_on_a_get_is_ignored_or_refused_cleanly(api):
    response = api.request("GET", "devices", raw=json.dumps({"data": {"x": 1}}))
    assert response.status_code == 200
    response = api.request("GET", "devices", raw="{broken")
    assert_invalid(response, "json:invalid")


@pytest.mark.parametrize("path", ["devices", "devices/status", "users"])
def test_a_query_string_that_is_not_utf8_is_400(api, path):
    import socket

    host, port = api.base.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /v2/accounts/" + api.account_id.encode() + b"/" + path.encode()
                     + b"?filter_name=\xff\xfe HTTP/1.1\r\nHost: x\r\nX-Auth-Token: "
                     + api.token.encode() + b"\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), head
    assert json.loads(body)["data"] == {"query_string": {"invalid": {"message": "the query string is not UTF-8"}}}


@pytest.mark.parametrize("request_bytes, code", [
    (b"GET /v2/accounts/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", "414"),
    (b"GET /v2/accounts HTTP/7.1\r\nHost: x\r\n\r\n", "400"),
    (b"NOT A REQUEST LINE\r\n\r\n", "400"),
])
def test_requests_the_http_server_refuses_get_the_error_envelope(api, request_bytes, code):
    host, port = api.base.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_bytes)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == code.encode(), head
    envelope = json.loads(body)
    assert envelope["status"] == "error" and envelope["error"] == code and envelope["message"]
    assert f"X-Request-ID: {envelope['request_id']}".encode() in head
