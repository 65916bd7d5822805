"""The hotdesk listings follow SPEC §2's listing rules: `page_size`, `start_key`,
`next_start_key`, `paginate=false`, filters, the same 400 for bad values, v1 unpaginated."""
from __future__ import annotations

import pytest
from fixtures_web import assert_invalid

pytestmark = pytest.mark.store

BAD_PARAMETERS = [("page_size", "abc"), ("page_size", "0"), ("page_size", "1001"),
                  ("start_key", "zz"), ("start_key", "A" * 32), ("filter_bad key", "x")]


@pytest.fixture
def floor(api):
    """Four users and five phones: `lobby` holds three users, each other phone one or none."""
    people = [api.create_user(first_name=f"User{i}", hotdesk={"id": f"10{i}"}) for i in range(4)]
    ids = [p["id"] for p in people]
    phones = {
        "lobby": api.create_device(name="lobby", hotdesk={"users": {ids[0]: {}, ids[1]: {}, ids[2]: {}}}),
        "desk1": api.create_device(name="desk1", hotdesk={"users": {ids[3]: {}}}),
        "desk2": api.create_device(name="desk2", hotdesk={"users": {ids[0]: {}}}),
        "desk3": api.create_device(name="desk3", hotdesk={"users": {ids[0]: {}}}),
        "empty": api.create_device(name="empty"),
    }
    return people, phones


def listing_paths(people, phones) -> list[str]:
    return ["hotdesks", "users/hotdesks", f"users/{people[0]['id']}/hotdesks",
            f"devices/{phones['lobby']['id']}/hotdesks"]


def walk(api, path: str, **params) -> tuple[list[dict], list[dict]]:
    """Follow `next_start_key` from the first page to the last: (rows, envelopes)."""
    rows, envelopes = [], []
    query = dict(params)
    while True:
        response = api.get(path, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        envelopes.append(body)
        rows += body["data"]
        if "next_start_key" not in body:
            return rows, envelopes
        assert len(envelopes) < 50, "pagination does not end"
        query = {**params, "start_key": body["next_start_key"]}


@pytest.mark.parametrize("param, value", BAD_PARAMETERS)
def test_bad_listing_parameters_are_the_listings_400(api, floor, param, value):
    devices = api.get("devices", params={param: value})
    assert devices.status_code == 400, devices.text
    wanted = devices.json()["data"]
    for path in listing_paths(*floor):
        data = assert_invalid(api.get(path, params={param: value}),
                              *(f"{param}:{rule}" for rule in wanted[param]), exact=True)
        assert data == wanted, path


def test_the_audited_request_is_400(api, floor):
    assert_invalid(api.get("hotdesks", params={"page_size": "abc", "start_key": "zz"}),
                   "page_size:type", "start_key:pattern", exact=True)


@pytest.mark.parametrize("path", ["hotdesks", "users/hotdesks"])
def test_account_hotdesks_pages(api, floor, path):
    everything = api.get(path, params={"paginate": "false"}).json()
    assert len(everything["data"]) == 6 and "next_start_key" not in everything
    rows, envelopes = walk(api, path, page_size=2)
    assert rows == everything["data"]
    for body in envelopes:
        assert body["page_size"] == len(body["data"])
        # At most a page, unless one device's users alone are more (`lobby`: three).
        assert len(body["data"]) <= 2 or len({r["device_id"] for r in body["data"]}) == 1, body
    assert "start_key" not in envelopes[0]
    for before, after in zip(envelopes, envelopes[1:], strict=False):
        assert after["start_key"] == before["next_start_key"] == after["data"][0]["device_id"]
    # A device's users are never split over two pages (the start key is a device id).
    pages_of = {}
    for number, body in enumerate(envelopes):
        for row in body["data"]:
            pages_of.setdefault(row["device_id"], set()).add(number)
    assert all(len(numbers) == 1 for numbers in pages_of.values()), pages_of


def test_a_device_with_more_users_than_a_page_comes_whole(api, floor):
    people, phones = floor
    rows, envelopes = walk(api, "hotdesks", page_size=1)
    assert len(rows) == 6 and len({(r["device_id"], r["user_id"]) for r in rows}) == 6
    lobby = [body for body in envelopes if body["data"][0]["device_id"] == phones["lobby"]["id"]]
    assert [len(body["data"]) for body in lobby] == [3]


def test_user_and_device_hotdesks_page(api, floor):
    people, phones = floor
    mine = f"users/{people[0]['id']}/hotdesks"
    rows, envelopes = walk(api, mine, page_size=1)
    assert [r["device_id"] for r in rows] == sorted(phones[n]["id"] for n in ("lobby", "desk2", "desk3"))
    assert [len(body["data"]) for body in envelopes] == [1, 1, 1]
    lobby = f"devices/{phones['lobby']['id']}/hotdesks"
    rows, envelopes = walk(api, lobby, page_size=2)
    assert [r["id"] for r in rows] == sorted(p["id"] for p in people[:3])
    assert [len(body["data"]) for body in envelopes] == [2, 1]
    assert envelopes[1]["start_key"] == rows[2]["id"]


def test_default_page_and_paginate_false(api, floor):
    for path in listing_paths(*floor):
        body = api.get(path).json()
        assert "next_start_key" not in body and body["page_size"] == len(body["data"])
        assert api.get(path, params={"paginate": "false", "page_size": "1"}).json()["data"] == body["data"]


def test_v1_hotdesk_listings_are_not_paginated(api, floor):
    for path in listing_paths(*floor):
        whole = api.get(path, params={"paginate": "false"}).json()["data"]
        assert len(whole) > 1, path
        # v1 has no pagination: a start_key past every row must not empty the listing.
        body = api.get(path, version="v1", params={"page_size": "1", "start_key": "f" * 32}).json()
        assert body["data"] == whole and "page_size" not in body and "next_start_key" not in body


def test_filters_apply_to_the_rows(api, floor):
    people, phones = floor
    rows, _ = walk(api, "hotdesks", page_size=1, filter_device_name="lobby")
    assert {r["user_id"] for r in rows} == {p["id"] for p in people[:3]}
    rows = api.get("hotdesks", params={"filter_not_device_name": "lobby"}).json()["data"]
    assert {r["device_id"] for r in rows} == {phones[n]["id"] for n in ("desk1", "desk2", "desk3")}
    rows = api.get(f"users/{people[0]['id']}/hotdesks", params={"filter_device_name": "desk2"}).json()["data"]
    assert [r["device_id"] for r in rows] == [phones["desk2"]["id"]]
