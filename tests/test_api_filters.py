"""Kazoo's listing filters over HTTP, case by case from `crossbar_filter:filter_prop/3`
(`crossbar_doc:filter_prop/3` in 3.22): what a Kazoo client's query string selects."""
from __future__ import annotations

import json
import time

import pytest
from fixtures_web import assert_invalid

from models import db
from models.pages import GREGORIAN_EPOCH
from models.tables import DeviceRow

pytestmark = pytest.mark.store


@pytest.fixture
def phones(api):
    """Four devices with the values the filters look at."""
    owner = api.create_user()
    made = {
        "desk": api.create_device(name="desk", device_type="sip_device", owner_id=owner["id"],
                                  sip={"username": "desk", "password": "secret-1"}, label="", tier=0),
        "soft": api.create_device(name="soft", device_type="softphone", label="front", tier=2,
                                  tags=["a", "b"]),
        "cell": api.create_device(name="cell", device_type="cellphone", label="0", enabled=False),
        "fax": api.create_device(name="fax", device_type="fax", label={"x": 1}),
    }
    return owner, made


def names(api, **params) -> list[str]:
    response = api.get("devices", params=params)
    assert response.status_code == 200, response.text
    return sorted(r["name"] for r in response.json()["data"])


def test_should_filter_a_json_list_value_matches_any_member(api, phones):
    assert names(api, filter_device_type=json.dumps(["softphone", "fax"])) == ["fax", "soft"]
    assert names(api, filter_not_device_type=json.dumps(["softphone", "fax"])) == ["cell", "desk"]
    assert names(api, filter_device_type="[]") == []
    assert names(api, filter_device_type='["fax"') == []  # not JSON: compared as text
    assert names(api, filter_device_type='"fax"') == []  # JSON, but not a list


def test_should_filter_compares_the_text_of_the_value(api, phones):
    assert names(api, filter_enabled="false") == ["cell"]
    assert names(api, filter_tier="2") == ["soft"]
    assert names(api, filter_tier=json.dumps(["0", "2"])) == ["desk", "soft"]
    # kz_json:get_binary_value(Keys, Doc, <<>>): a missing key is the empty text.
    assert names(api, filter_tier="") == ["cell", "fax"]
    assert names(api, filter_not_owner_id="") == ["desk"]


def test_filter_prop_on_an_object_or_a_list_fails_both_ways(api, phones):
    """Kazoo's text conversion of an object fails, and should_filter_doc/3 then answers false
    for `filter_` and `filter_not_` alike."""
    assert names(api, filter_label='{"x":1}') == []
    assert "fax" not in names(api, filter_not_label="anything")
    assert "soft" not in names(api, filter_not_tags="a")


def test_has_value_is_present_and_not_empty(api, phones):
    # kz_term:is_empty/1: "", "0", 0, false, [], {} and a missing key are empty.
    assert names(api, has_value="label") == ["fax", "soft"]
    assert names(api, has_value="tier") == ["soft"]
    assert names(api, has_value="owner_id") == ["desk"]
    assert names(api, has_value="enabled") == ["desk", "fax", "soft"]
    assert names(api, has_key="label") == ["cell", "desk", "fax", "soft"]
    assert names(api, has_value="sip.username") == ["desk"]


def test_created_and_modified_bounds_in_gregorian_seconds(api):
    old = api.create_device(name="old")
    new = api.create_device(name="new")
    now = int(time.time())
    with db.database.connection_context():  # `old` was made an hour ago, `new` is a minute old
        DeviceRow.update(created=now - 3600, modified=now - 3600).where(DeviceRow.id == old["id"]).execute()
        DeviceRow.update(created=now - 60, modified=now - 60).where(DeviceRow.id == new["id"]).execute()
    minute_ago = now - 60 + GREGORIAN_EPOCH  # pvt_created of `new`, as Kazoo counts
    assert names(api, created_from=str(minute_ago)) == ["new"]
    assert names(api, created_from=str(minute_ago + 1)) == []
    assert names(api, created_to=str(minute_ago)) == ["new", "old"]
    assert names(api, created_to=str(minute_ago - 1)) == ["old"]
    assert names(api, created_from=str(minute_ago - 3600), created_to=str(minute_ago)) == ["new", "old"]
    assert api.patch(f"devices/{old['id']}", {"label": "touched"}).status_code == 200
    assert names(api, modified_from=str(minute_ago + 1)) == ["old"]
    assert names(api, modified_to=str(minute_ago)) == ["new"]
    assert names(api, created_to=str(minute_ago - 1), modified_from=str(minute_ago)) == ["old"]
    # Unix seconds are far in Kazoo's past: everything was created after them.
    assert names(api, created_to=str(now)) == []


@pytest.mark.parametrize("param", ["has_value", "created_from", "created_to", "modified_from",
                                   "modified_to"])
def test_the_new_filters_refuse_bad_values(api, param):
    assert_invalid(api.get("devices", params={param: "not a thing"}), f"{param}:"
                   + ("pattern" if param == "has_value" else "type"), exact=True)


def test_filters_work_on_users_too(api, phones):
    api.create_user(first_name="Bob", email="bob@acme.test")
    response = api.get("users", params={"has_value": "email",
                                        "filter_first_name": json.dumps(["Bob", "Nobody"])})
    assert [r["first_name"] for r in response.json()["data"]] == ["Bob"]


def test_unknown_filter_keys_keep_working(api, phones):
    assert names(api, filter_no_such_key="x") == []
    assert names(api, filter_not_no_such_key="x") == ["cell", "desk", "fax", "soft"]
    assert names(api, other_parameter="x") == ["cell", "desk", "fax", "soft"]
