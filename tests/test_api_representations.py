"""What a Kazoo client gets besides the JSON envelope: CSV (Kazoo 4: `api_resource:to_csv`,
`kz_csv`), JSONP (`api_util:create_resp_content`), `?verb=` tunnelling through POST
(`api_util:get_http_verb`) and v1's validation messages (`cb_context:build_error_message`)."""
from __future__ import annotations

import csv
import io
import json

import pytest
from fixtures_web import assert_error, assert_invalid, client_for, make_account

pytestmark = pytest.mark.store


def parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def phones(api):
    owner = api.create_user(first_name="Ann")
    return owner, [
        api.create_device(name='Front "desk", left', owner_id=owner["id"], mac_address="00:04:f2:00:00:01",
                          sip={"username": "2001", "password": "secret-1"}),
        api.create_device(name="fax", device_type="fax"),
    ]


@pytest.mark.parametrize("how", [{"headers": {"Accept": "text/csv"}}, {"params": {"accept": "csv"}}])
def test_to_csv_a_listing_as_csv_with_a_header_line(api, phones, how):
    owner, (front, fax) = phones
    response = api.get("devices", **how)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.headers["Content-Disposition"] == 'attachment; filename="result.csv"'
    lines = response.text.splitlines()
    assert lines[0].split(",")[:2] == ['"id"', '"name"']
    rows = parsed(response.text)
    assert {r["id"]: r for r in rows} == {
        front["id"]: {"id": front["id"], "name": 'Front "desk", left', "username": "2001",
                      "mac_address": "0004f2000001", "owner_id": owner["id"], "enabled": "true",
                      "device_type": "sip_device"},
        fax["id"]: {"id": fax["id"], "name": "fax", "username": "", "mac_address": "",
                    "owner_id": "", "enabled": "true", "device_type": "fax"},
    }
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_kz_csv_quotes_every_cell_and_doubles_quotes(api, phones):
    text = api.get("devices", params={"accept": "csv"}).text
    assert '"Front ""desk"", left"' in text
    assert all(line.startswith('"') for line in text.splitlines())


def test_every_listing_answers_csv(api, phones):
    owner, (front, _) = phones
    paths = ["devices", "users", f"users/{owner['id']}/devices", "hotdesks", "users/hotdesks",
             f"users/{owner['id']}/hotdesks", f"devices/{front['id']}/hotdesks"]
    for path in paths:
        json_rows = api.get(path).json()["data"]
        response = api.get(path, headers={"Accept": "text/csv"})
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv"), path
        assert len(parsed(response.text)) == len(json_rows), path


def test_csv_flattens_nested_keys_and_names_the_file(api, phones):
    owner, (front, _) = phones
    response = api.get(f"devices/{front['id']}", params={"accept": "csv", "file_name": "phones.csv"})
    assert response.headers["Content-Disposition"] == 'attachment; filename="phones.csv"'
    (row,) = parsed(response.text)
    assert row["sip_username"] == "2001" and row["media_audio_codecs"] == "PCMU"
    assert api.get("devices", params={"accept": "csv"},
                   headers={"X-File-Name": "../../etc/x"}).headers["Content-Disposition"] \
        == 'attachment; filename="result.csv"'


def test_csv_pages_like_json_and_says_where_the_next_starts(api, phones):
    response = api.get("devices", params={"accept": "csv", "page_size": "1"})
    listing = api.get("devices", params={"page_size": "1"}).json()
    assert [r["id"] for r in parsed(response.text)] == [listing["data"][0]["id"]]
    assert response.headers["X-Next-Start-Key"] == listing["next_start_key"]


def test_errors_stay_json_when_csv_is_asked_for(api):
    response = api.get("devices", params={"accept": "csv", "page_size": "0"})
    assert_invalid(response, "page_size:minimum")
    assert_error(api.get("devices", token=None, headers={"Accept": "text/csv"}), 401, "invalid_credentials")


def test_an_accept_that_prefers_json_gets_json(api, phones):
    response = api.get("devices", headers={"Accept": "application/json, text/csv;q=0.5"})
    assert response.headers["Content-Type"].startswith("application/json")


def test_json_and_csv_answers_tell_caches_they_vary_by_accept(api, phones):
    # One URL, two bodies under one ETag: a shared cache that ignored Accept would hand the
    # CSV to the next JSON client.
    front = phones[1][0]
    for path in ("devices", f"devices/{front['id']}"):
        as_json = api.get(path)
        as_csv = api.get(path, headers={"Accept": "text/csv"})
        assert as_json.headers["Content-Type"].startswith("application/json")
        assert as_csv.headers["Content-Type"].startswith("text/csv")
        for response in (as_json, as_csv):
            assert "accept" in response.headers.get("Vary", "").lower()


# --- JSONP ------------------------------------------------------------------------------------

def test_create_resp_content_wraps_the_envelope_for_jsonp(api, phones):
    response = api.get("devices", params={"jsonp": "kazoo.handle"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/javascript")
    assert response.text.startswith("kazoo.handle(") and response.text.endswith(");")
    body = json.loads(response.text[len("kazoo.handle("):-2])
    assert body["status"] == "success" and len(body["data"]) == 2


@pytest.mark.parametrize("bad", ["alert(1)//", "a b", "1x", "x;y", "</script>", "a" * 80])
def test_a_jsonp_name_that_is_not_a_function_name_is_400(api, bad):
    response = api.get("devices", params={"jsonp": bad})
    assert response.headers["Content-Type"].startswith("application/json")
    assert_invalid(response, "jsonp:pattern", exact=True)


def test_jsonp_is_off_when_origins_are_listed(start_bridge):
    server = start_bridge(cors_origins=("https://ui.example.com",))
    account_id, key, admin_id = make_account()
    api = client_for(server.url, account_id, key, admin_id)
    assert_invalid(api.get("devices", params={"jsonp": "cb"}), "jsonp:forbidden", exact=True)


# --- ?verb= -----------------------------------------------------------------------------------

def test_get_http_verb_tunnels_put_patch_and_delete_through_post(api):
    created = api.post("devices", {"name": "tunnelled"}, params={"verb": "put"})
    assert created.status_code == 201, created.text
    ident = created.json()["data"]["id"]
    patched = api.post(f"devices/{ident}", {"label": "x"}, params={"verb": "PATCH"})
    assert patched.json()["data"]["name"] == "tunnelled" and patched.json()["data"]["label"] == "x"
    assert api.post(f"devices/{ident}", params={"verb": "delete"}).status_code == 200
    assert_error(api.get(f"devices/{ident}"), 404, "bad_identifier")


def test_verb_is_read_only_on_post(api):
    device = api.create_device(name="kept")
    assert api.get(f"devices/{device['id']}", params={"verb": "DELETE"}).status_code == 200
    assert api.get(f"devices/{device['id']}").status_code == 200
    assert_invalid(api.post(f"devices/{device['id']}", {"name": "x"}, params={"verb": "TRACE"}),
                   "verb:enum", exact=True)
    # A tunnelled method the path does not have is the 405 of that method.
    assert_error(api.post("devices", params={"verb": "DELETE"}), 405, "invalid_method")


# --- v1 errors --------------------------------------------------------------------------------

def test_build_error_message_v1_validation_errors_are_messages(api):
    response = api.put("devices", {"device_type": 5}, version="v1")
    body = assert_error(response, 400, "invalid request")
    assert body["data"]["name"] == {"required": "Field is required but missing"}
    assert body["data"]["device_type"] == {"type": "Value is not of type string"}
    v2 = api.put("devices", {"device_type": 5}).json()["data"]
    assert v2["name"]["required"] == {"message": "Field is required but missing"}
    # Other errors keep their shape in v1.
    assert_error(api.get("devices/" + "f" * 32, version="v1"), 404, "bad_identifier",
                 {"message": "bad identifier", "cause": "f" * 32})
