"""SPEC §2 envelopes and error table, and SPEC §3's check order, over HTTP."""
from __future__ import annotations

import hashlib
import json
import re
import secrets

import pytest
from fixtures_web import assert_error, assert_invalid

from esl_bridge import errors as esl_errors
from models import device as store_devices

pytestmark = pytest.mark.store

REVISION_RE = re.compile(r"^[0-9]+-[0-9a-f]{32}$")
MIB = 1024 * 1024


# --- success envelopes ------------------------------------------------------------------------

def test_document_envelope(api):
    response = api.put("devices", {"name": "desk"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"auth_token", "status", "request_id", "revision", "data"}
    assert body["status"] == "success"
    assert body["auth_token"] == api.token
    assert REVISION_RE.match(body["revision"])
    assert response.headers["ETag"].strip('"') == body["revision"]
    assert response.headers["X-Request-ID"] == body["request_id"]
    assert response.headers["Content-Type"].startswith("application/json")


def test_listing_envelope_revision_follows_the_data(api):
    first = api.get("devices")
    assert re.match(r"^[0-9a-f]{32}$", first.json()["revision"])
    # the md5 of the encoded data, as it is in the body
    start = first.text.index('"data":') + len('"data":')
    data, end = json.JSONDecoder().raw_decode(first.text, start)
    encoded = first.text[start:end]
    assert data == first.json()["data"]
    assert first.json()["revision"] == hashlib.md5(encoded.encode()).hexdigest()
    assert first.headers["ETag"].strip('"') == first.json()["revision"]
    assert api.get("devices").json()["revision"] == first.json()["revision"]
    api.create_device()
    assert api.get("devices").json()["revision"] != first.json()["revision"]


def test_request_id_is_echoed(api):
    response = api.get("", headers={"X-Request-ID": "req-42.abc_Z"})
    assert response.json()["request_id"] == "req-42.abc_Z"
    assert response.headers["X-Request-ID"] == "req-42.abc_Z"
    error = api.get(f"devices/{secrets.token_hex(16)}", headers={"X-Request-ID": "req-43"})
    assert error.json()["request_id"] == "req-43" and error.headers["X-Request-ID"] == "req-43"
    unauthorized = api.get("", token=None, headers={"X-Request-ID": "req-44"})
    assert unauthorized.json()["request_id"] == "req-44"


def test_request_id_is_made_when_missing_or_unsafe(api):
    ids = set()
    for header in ({}, {"X-Request-ID": "has space;and,comma"}, {"X-Request-ID": "x" * 65}):
        response = api.get("", headers=header)
        body = response.json()
        assert body["request_id"] and body["request_id"] == response.headers["X-Request-ID"]
        assert body["request_id"] not in (header.get("X-Request-ID"),)
        assert re.match(r"^[A-Za-z0-9._-]{1,64}$", body["request_id"])
        ids.add(body["request_id"])
    assert len(ids) == 3


# --- each row of the error table --------------------------------------------------------------

def test_400_validation_envelope(api):
    response = api.put("devices", {"name": ""})
    body = assert_error(response, 400, "invalid request")
    assert body["data"] == {"name": {"minLength": {"message": "String must be at least 1 characters",
                                                  "target": 1}}}
    assert body["auth_token"] == api.token


def test_400_database_rule_envelope(api):
    api.create_device(sip={"username": "alice", "password": "secret-1"})
    response = api.put("devices", {"name": "b", "sip": {"username": "alice"}})
    assert_error(response, 400, "invalid request",
                 {"sip.username": {"unique": {"message": "SIP credentials already in use", "cause": "alice"}}})


def test_401_envelope(api):
    body = assert_error(api.get("", token=None), 401, "invalid_credentials",
                        {"message": "invalid credentials"})
    assert body["auth_token"] == "undefined"
    assert "revision" not in body and "ETag" not in api.get("", token=None).headers


def test_403_envelope(api, other):
    assert_error(api.request("GET", f"/v2/accounts/{other.account_id}"), 403, "forbidden",
                 {"message": "forbidden"})


def test_404_envelope(api):
    missing = secrets.token_hex(16)
    assert_error(api.get(f"devices/{missing}"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": missing})
    assert_error(api.get("users/not-an-id"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": "not-an-id"})


@pytest.mark.parametrize("method, path, allowed", [
    ("DELETE", "devices", {"GET", "PUT"}),
    ("POST", "devices", {"GET", "PUT"}),
    ("PUT", "devices/{d}", {"GET", "POST", "PATCH", "DELETE"}),
    ("DELETE", "", {"GET", "POST", "PATCH", "PUT"}),
    ("DELETE", "api_key", {"GET", "PUT"}),
    ("POST", "users", {"GET", "PUT"}),
    ("PUT", "users/{u}/devices", {"GET"}),
    ("DELETE", "hotdesks", {"GET"}),
    ("GET", "/v2/user_auth", {"PUT"}),
    ("POST", "/v2/api_auth", {"PUT"}),
])
def test_405_envelope_with_allow(api, method, path, allowed):
    device, user = api.create_device(), api.create_user()
    response = api.request(method, path.format(d=device["id"], u=user["id"]))
    assert_error(response, 405, "invalid_method", {"message": "method not allowed"})
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}
    assert method not in response.headers["Allow"]


def test_409_envelope(api, monkeypatch):
    from models.errors import Conflict

    device = api.create_device()

    def racing(*args, **kwargs):
        raise Conflict("device changed underneath")

    monkeypatch.setattr(store_devices, "update_device", racing)
    assert_error(api.patch(f"devices/{device['id']}", {"x": 1}), 409, "datastore_conflict",
                 {"message": "conflicting documents"})


def test_503_envelope(api, monkeypatch):
    """FreeSWITCH being unreachable has its own row; any place that meets it answers so."""
    device = api.create_device()

    def unreachable(*args, **kwargs):
        raise esl_errors.FreeSwitchUnavailable("no connection to FreeSWITCH", node="10.0.0.5:8021")

    monkeypatch.setattr(store_devices, "get_device", unreachable)
    body = assert_error(api.get(f"devices/{device['id']}"), 503, "freeswitch_unavailable")
    assert body["data"]["node"] == "10.0.0.5:8021"
    assert isinstance(body["data"]["message"], str)


@pytest.mark.parametrize("exc", [RuntimeError("secret detail /srv/app.py"), KeyError("pvt_hash"),
                                 ZeroDivisionError()])
def test_500_envelope_never_leaks(api, monkeypatch, exc):
    device = api.create_device()

    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(store_devices, "get_device", broken)
    response = api.get(f"devices/{device['id']}")
    assert_error(response, 500, "unspecified_fault", {"message": "unspecified fault"})
    assert "secret detail" not in response.text and "pvt_hash" not in response.text
    assert ".py" not in response.text


def test_500_from_the_database_is_an_envelope(api, monkeypatch):
    import peewee

    def down(*args, **kwargs):
        raise peewee.OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(store_devices, "list_devices", down)
    response = api.get("devices")
    assert_error(response, 500, "unspecified_fault", {"message": "unspecified fault"})
    assert "Connection refused" not in response.text


def test_412_envelope(api):
    device = api.create_device()
    response = api.patch(f"devices/{device['id']}", {"x": 1}, headers={"If-Match": '"1-' + "0" * 32 + '"'})
    body = assert_error(response, 412, "precondition_failed")
    assert body["data"]["cause"] == api.get(f"devices/{device['id']}").json()["revision"]


@pytest.mark.parametrize("path", ["/v2/nothing", "/nothing", "/v3/accounts/{a}", "/v2/accounts/{a}/phones",
                                  "/v2/accounts/{a}/devices/{d}/extra/parts", "/v2/accounts"])
def test_unknown_path_is_404_envelope(api, path):
    device = api.create_device()
    response = api.get(path.format(a=api.account_id, d=device["id"]))
    body = assert_error(response, 404, "not_found")
    assert isinstance(body["data"]["message"], str)


# --- request bodies ---------------------------------------------------------------------------

def test_body_over_one_mib_is_413(api):
    raw = '{"data": {"name": "x", "pad": "' + "a" * MIB + '"}}'
    response = api.put("devices", raw=raw)
    assert_error(response, 413, "request_too_large")
    assert api.get("devices").json()["data"] == []


def test_chunked_body_over_one_mib_is_413(api):
    def chunks():
        yield b'{"data": {"name": "x", "pad": "'
        for _ in range(17):
            yield b"a" * 65536
        yield b'"}}'

    response = api.put("devices", raw=chunks())
    assert_error(response, 413, "request_too_large")
    assert api.get("devices").json()["data"] == []


@pytest.mark.parametrize("size", [200, MIB])
def test_chunked_body_up_to_one_mib_is_accepted(api, size):
    head = b'{"data": {"name": "chunked", "pad": "'
    pad = size - len(head) - 3

    def chunks():
        yield head
        for start in range(0, pad, 65536):
            yield b"a" * min(65536, pad - start)
        yield b'"}}'

    response = api.put("devices", raw=chunks())
    assert response.status_code == 201, response.text[:300]
    assert len(response.json()["data"]["pad"]) == pad


def test_body_just_under_one_mib_is_accepted(api):
    head = '{"data": {"name": "x", "pad": "'
    raw = head + "a" * (MIB - len(head) - 3) + '"}}'
    assert len(raw.encode()) == MIB
    response = api.put("devices", raw=raw)
    assert response.status_code == 201, response.text[:300]


@pytest.mark.parametrize("raw", ['{"data": {"name": "x"', "not json", '{"data": {"name": "x",}}',
                                 "[1, 2]", '"data"', "null", '{"data": {"name": "x", "n": NaN}}',
                                 '{"data": {"name": "x", "n": Infinity}}', b"\xff\xfe{\x00"])
def test_invalid_json_is_400_on_key_json(api, raw):
    data = assert_invalid(api.put("devices", raw=raw), "json:invalid", exact=True)
    assert data["json"]["invalid"]["message"]
    assert api.get("devices").json()["data"] == []


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000,
                                 '{"data": {"name": "x", "deep": ' + "[" * 5000 + "]" * 5000 + "}}",
                                 '{"data": {"name": "x", "deep": ' + "[" * 900 + "]" * 900 + "}}"])
def test_deeply_nested_json_is_400_not_500(api, raw):
    assert_invalid(api.put("devices", raw=raw), "json:invalid", exact=True)
    assert api.get("devices").json()["data"] == []


def test_empty_body_on_a_write_is_data_required(api):
    assert_invalid(api.put("devices", raw=""), "data:required", exact=True)
    assert_invalid(api.put("devices", raw="{}"), "data:required", exact=True)


@pytest.mark.parametrize("data", [[], "x", 1, None, True])
def test_data_that_is_not_an_object_is_400(api, data):
    import json

    assert_invalid(api.put("devices", raw=json.dumps({"data": data})), "data:type", exact=True)
    device = api.create_device()
    assert_invalid(api.patch(f"devices/{device['id']}", raw=json.dumps({"data": data})), "data:type")


# --- SPEC §3: 405, 400 (malformed), 401, 403, then 404 and validation -------------------------

def test_405_comes_before_malformed_json_and_auth(api):
    response = api.request("DELETE", "devices", raw="{not json", token=None)
    assert_error(response, 405, "invalid_method")


def test_405_comes_before_403(api, other):
    response = api.request("DELETE", f"/v2/accounts/{other.account_id}/devices")
    assert_error(response, 405, "invalid_method")


def test_malformed_json_comes_before_401(api):
    assert_invalid(api.put("devices", raw="{not json", token=None), "json:invalid")
    assert_error(api.put("devices", raw="x" * (MIB + 1), token=None), 413, "request_too_large")


def test_malformed_json_comes_before_403(api, other):
    response = api.put(f"/v2/accounts/{other.account_id}/devices", raw="{not json")
    assert_invalid(response, "json:invalid")


def test_401_comes_before_403(api, other):
    response = api.get(f"/v2/accounts/{other.account_id}/devices", token="z" * 43)
    assert_error(response, 401, "invalid_credentials")
    response = api.get(f"/v2/accounts/{secrets.token_hex(16)}", token=None)
    assert_error(response, 401, "invalid_credentials")


def test_401_comes_before_404_and_validation(api):
    assert_error(api.get(f"devices/{secrets.token_hex(16)}", token=None), 401, "invalid_credentials")
    assert_error(api.put("devices", {"name": ""}, token=None), 401, "invalid_credentials")


def test_403_comes_before_404_and_validation(api, other):
    theirs = f"/v2/accounts/{other.account_id}"
    assert_error(api.get(f"{theirs}/devices/{secrets.token_hex(16)}"), 403, "forbidden")
    assert_error(api.put(f"{theirs}/devices", {"name": ""}), 403, "forbidden")
    assert_error(api.patch(f"{theirs}/users/nope", {"first_name": 5}), 403, "forbidden")


def test_404_comes_before_validation(api):
    missing = secrets.token_hex(16)
    assert_error(api.patch(f"devices/{missing}", {"name": ""}), 404, "bad_identifier")
    assert_error(api.post(f"users/{missing}", {"first_name": ""}), 404, "bad_identifier")


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_endpoint_answers_under_both_versions(api, version):
    """SPEC §1: each resource path exists under /v1 and /v2 with the same behaviour."""
    user = api.create_user(username="bob", password="pa55-word")
    device = api.create_device(owner_id=user["id"], hotdesk={"users": {user["id"]: {}}})
    u, d = user["id"], device["id"]
    calls = [
        ("PUT", "/{v}/api_auth", {"api_key": api.api_key}, 201, None),
        ("GET", "", None, 200, None), ("PATCH", "", {"x": 1}, 200, None),
        ("POST", "", {"name": "acme", "realm": "acme.test"}, 200, None),
        ("PUT", "", {"name": f"sub-{version}", "realm": f"sub-{version}.acme.test"}, 201, None),
        ("GET", "api_key", None, 200, None),
        ("GET", "users", None, 200, None), ("PUT", "users", {"first_name": "C", "last_name": "D"}, 201, None),
        ("GET", f"users/{u}", None, 200, None), ("PATCH", f"users/{u}", {"x": 1}, 200, None),
        ("POST", f"users/{u}", {"first_name": "Bob", "last_name": "B", "username": "bob"}, 200, None),
        ("GET", f"users/{u}/devices", None, 200, [d]), ("GET", f"users/{u}/hotdesks", None, 200, [d]),
        ("GET", "hotdesks", None, 200, [d]), ("GET", "users/hotdesks", None, 200, [d]),
        ("GET", f"devices/{d}/hotdesks", None, 200, [u]),
        ("GET", "devices", None, 200, [d]), ("PUT", "devices", {"name": "x"}, 201, None),
        ("GET", f"devices/{d}", None, 200, None), ("PATCH", f"devices/{d}", {"x": 1}, 200, None),
        ("POST", f"devices/{d}", {"name": "y", "owner_id": u}, 200, None),
        ("DELETE", f"devices/{d}", None, 200, None), ("DELETE", f"users/{u}", None, 200, None),
    ]
    for method, path, data, status, contains in calls:
        url = path.format(v=version) if path.startswith("/") else path
        response = api.request(method, url, data, version=version)
        assert response.status_code == status, (method, path, response.text)
        body = response.json()
        assert body["status"] == "success" and body["request_id"] == response.headers["X-Request-ID"]
        if contains is not None:
            assert all(ident in response.text for ident in contains), (path, response.text)
        if isinstance(body["data"], list):
            assert ("page_size" in body) == (
                    version == "v2" and (path in ("users", "devices") or path.endswith("hotdesks"))), path
