"""Accounts over HTTP: the document, sub-accounts, the API key and SPEC §4's account rules."""
from __future__ import annotations

import re

import pytest
from fixtures_web import assert_error, assert_invalid

pytestmark = pytest.mark.store


def test_get_account(api):
    for version in ("v1", "v2"):
        response = api.get("", version=version)
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"name": "acme", "realm": "acme.test", "dialplan_context": "default",
                                           "allow_anonymous_quickcalls": False, "id": api.account_id}


def test_patch_account_merges(api):
    response = api.patch("", {"dialplan_context": "acme-internal", "notes": {"a": 1}})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["dialplan_context"] == "acme-internal" and data["name"] == "acme" and data["notes"] == {"a": 1}
    data = api.patch("", {"notes": None, "allow_anonymous_quickcalls": True}).json()["data"]
    assert "notes" not in data and data["allow_anonymous_quickcalls"] is True
    assert api.get("").json()["data"] == data


def test_post_account_replaces(api):
    api.patch("", {"notes": "old", "dialplan_context": "ctx"})
    response = api.post("", {"name": "Acme Corp", "realm": "acme.test"})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["name"] == "Acme Corp" and "notes" not in data
    assert data["dialplan_context"] == "default"
    assert_invalid(api.post("", {"name": "Acme Corp"}), "realm:required", exact=True)


def test_realm_cannot_change(api):
    before = api.get("").json()
    data = assert_invalid(api.patch("", {"realm": "elsewhere.test"}), "realm:invalid", exact=True)
    assert data["realm"]["invalid"]["cause"] == "elsewhere.test"
    assert_invalid(api.post("", {"name": "acme", "realm": "elsewhere.test"}), "realm:invalid")
    after = api.get("").json()
    assert (after["data"], after["revision"]) == (before["data"], before["revision"])


def test_parent_id_is_not_the_clients(api, other):
    response = api.put("", {"name": "child", "realm": "child.acme.test", "parent_id": other.account_id})
    assert response.status_code == 201, response.text
    child = response.json()["data"]
    assert child["parent_id"] == api.account_id
    moved = api.request("PATCH", f"/v2/accounts/{child['id']}", {"parent_id": other.account_id})
    assert moved.status_code == 200 and moved.json()["data"]["parent_id"] == api.account_id
    # The root has no parent and cannot be given one.
    assert "parent_id" not in api.patch("", {"parent_id": other.account_id}).json()["data"]
    assert other.request("GET", f"/v2/accounts/{child['id']}").status_code == 403


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_create_sub_account(api, version):
    response = api.put("", {"name": "child", "realm": "child.acme.test", "extra": [1]}, version=version)
    assert response.status_code == 201, response.text
    child = response.json()["data"]
    assert re.fullmatch(r"[0-9a-f]{32}", child["id"]) and child["id"] != api.account_id
    assert child == {"name": "child", "realm": "child.acme.test", "extra": [1], "dialplan_context": "default",
                     "allow_anonymous_quickcalls": False, "parent_id": api.account_id, "id": child["id"]}
    assert api.request("GET", f"/{version}/accounts/{child['id']}").json()["data"] == child


def test_api_key(api):
    response = api.get("api_key")
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"api_key": api.api_key}
    assert re.fullmatch(r"[0-9a-f]{64}", api.api_key)
    child = api.put("", {"name": "child", "realm": "child.acme.test"}).json()["data"]["id"]
    key = api.request("GET", f"/v2/accounts/{child}/api_key").json()["data"]["api_key"]
    assert re.fullmatch(r"[0-9a-f]{64}", key) and key != api.api_key
    token = api.put("/v2/api_auth", {"api_key": key}, token=None).json()["auth_token"]
    assert api.request("GET", f"/v2/accounts/{child}", token=token).status_code == 200
    assert_error(api.get("", token=token), 403, "forbidden")


def test_name_and_realm_are_unique_across_accounts(api, other):
    data = assert_invalid(api.put("", {"name": "OTHER", "realm": "OTHER.test"}), "name:unique", "realm:unique",
                          exact=True)
    assert data["name"]["unique"]["cause"] == "OTHER" and data["realm"]["unique"]["cause"] == "OTHER.test"
    assert_invalid(api.put("", {"name": "acme", "realm": "fresh.test"}), "name:unique", exact=True)
    assert_invalid(api.patch("", {"name": "Other"}), "name:unique", exact=True)
    assert api.get("").json()["data"]["name"] == "acme"
    assert api.patch("", {"name": "ACME"}).status_code == 200


RULES = [
    ({"name": None}, "name:required"),
    ({"realm": None}, "realm:required"),
    ({"name": ""}, "name:minLength"),
    ({"name": "n" * 129}, "name:maxLength"),
    ({"name": 5}, "name:type"),
    ({"realm": "a.b"}, "realm:minLength"),
    ({"realm": "r" * 254}, "realm:maxLength"),
    ({"realm": "bad realm.test"}, "realm:pattern"),
    ({"realm": "child.acme.test."}, "realm:pattern"),
    ({"realm": "child.acme.test\n"}, "realm:pattern"),
    ({"realm": ["x.test"]}, "realm:type"),
    ({"dialplan_context": ""}, "dialplan_context:minLength"),
    ({"dialplan_context": "c" * 65}, "dialplan_context:maxLength"),
    ({"dialplan_context": "my context"}, "dialplan_context:pattern"),
    ({"dialplan_context": "ctx XML default"}, "dialplan_context:pattern"),
    ({"dialplan_context": 1}, "dialplan_context:type"),
    ({"allow_anonymous_quickcalls": "yes"}, "allow_anonymous_quickcalls:type"),
]


@pytest.mark.parametrize("change, rule", RULES, ids=[r for _, r in RULES])
def test_sub_account_rules(api, change, rule):
    doc = {"name": "child", "realm": "child.acme.test"}
    for key, value in change.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    assert_invalid(api.put("", doc), rule, exact=True)
    # Nothing was created: the name and realm are still free.
    assert api.put("", {"name": "child", "realm": "child.acme.test"}).status_code == 201


@pytest.mark.parametrize("change, rule", [r for r in RULES if "realm" not in r[1]],
                         ids=[r for _, r in RULES if "realm" not in r])
def test_account_update_rules(api, change, rule):
    before = api.get("").json()
    patch = {k: v for k, v in change.items()}
    assert_invalid(api.patch("", patch), rule, exact=True)
    after = api.get("").json()
    assert (after["data"], after["revision"]) == (before["data"], before["revision"])


def test_private_keys_are_dropped(api):
    data = api.patch("", {"pvt_api_key": "0" * 64, "_rev": "x", "pvt_tree": []}).json()["data"]
    assert not [k for k in data if k.startswith(("pvt_", "_"))]
    assert api.get("api_key").json()["data"]["api_key"] == api.api_key
