"""Revisions, If-Match and racing writers over HTTP (SPEC §2, §4 "Revisions and conflicts")."""
from __future__ import annotations

import re

import gevent
import pytest
from fixtures_web import assert_error, rival_commits_in_between

from models import account as store_accounts
from models import db
from models import device as store_devices
from models import documents as store_documents
from models import user as store_users

pytestmark = pytest.mark.store

REVISION_RE = re.compile(r"^([0-9]+)-([0-9a-f]{32})$")
STALE = '"1-' + "0" * 32 + '"'


def rev(response) -> tuple[int, str]:
    match = REVISION_RE.match(response.json()["revision"])
    assert match, response.text
    assert response.headers["ETag"] == f'"{response.json()["revision"]}"'
    return int(match.group(1)), match.group(2)


def test_revisions_count_up_and_always_change(api):
    created = api.put("devices", {"name": "a"})
    n, first = rev(created)
    assert n == 1
    device = created.json()["data"]["id"]
    steps = [api.patch(f"devices/{device}", {"name": "b"}), api.post(f"devices/{device}", {"name": "b"}),
             api.patch(f"devices/{device}", {"name": "b"}), api.patch(f"devices/{device}", {})]
    seen = [(n, first)] + [rev(r) for r in steps]
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5]
    assert len({s[1] for s in seen}) == 5
    assert rev(api.get(f"devices/{device}")) == seen[-1]
    assert rev(api.delete(f"devices/{device}")) == seen[-1]


def test_user_and_account_revisions(api):
    user = api.put("users", {"first_name": "a", "last_name": "b"})
    assert rev(user)[0] == 1
    assert rev(api.patch(f"users/{user.json()['data']['id']}", {"x": 1}))[0] == 2
    before = rev(api.get(""))
    assert rev(api.patch("", {"x": 1}))[0] == before[0] + 1


@pytest.fixture
def targets(api):
    device = api.create_device(name="phone")["id"]
    user = api.create_user()["id"]
    return {"device": f"devices/{device}", "user": f"users/{user}", "account": ""}


# Every write of each document; accounts are not deleted over the API.
@pytest.mark.parametrize(("kind", "method"), [
    (kind, method) for kind in ("device", "user", "account")
    for method in ("PATCH", "POST", "DELETE") if (kind, method) != ("account", "DELETE")])
def test_stale_if_match_is_412_and_changes_nothing(api, targets, kind, method):
    path = targets[kind]
    before = api.get(path).json()
    body = {"name": "renamed", "first_name": "Renamed", "last_name": "X", "realm": "acme.test"}
    response = api.request(method, path, None if method == "DELETE" else body, headers={"If-Match": STALE})
    error = assert_error(response, 412, "precondition_failed")
    assert error["data"]["cause"] == before["revision"]
    after = api.get(path).json()
    assert (after["data"], after["revision"]) == (before["data"], before["revision"])


@pytest.mark.parametrize("kind", ["device", "user", "account"])
@pytest.mark.parametrize("quote", ['"{}"', "{}", "*"])
def test_current_if_match_succeeds(api, targets, kind, quote):
    path = targets[kind]
    current = api.get(path)
    tag = current.headers["ETag"].strip('"')
    response = api.patch(path, {"tag": "new"}, headers={"If-Match": quote.format(tag)})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["tag"] == "new"
    assert rev(response)[0] == rev(current)[0] + 1
    # The old tag is stale now.
    assert_error(api.patch(path, {"tag": "newer"}, headers={"If-Match": f'"{tag}"'}), 412, "precondition_failed")


@pytest.mark.parametrize("kind", ["device", "user", "account"])
def test_if_match_list_naming_the_current_revision_succeeds(api, targets, kind):
    path = targets[kind]
    tag = api.get(path).headers["ETag"]
    response = api.patch(path, {"tag": "listed"}, headers={"If-Match": f"{STALE}, {tag}"})
    assert response.status_code == 200, response.text
    assert api.get(path).json()["data"]["tag"] == "listed"
    assert_error(api.patch(path, {"tag": "x"}, headers={"If-Match": f'{STALE}, "1-{"f" * 32}"'}),
                 412, "precondition_failed")


def test_weak_if_match_never_matches(api, targets):
    """If-Match compares strongly (RFC 9110 13.1.1): `W/"<current>"` is a 412, nothing written."""
    path = targets["device"]
    before = api.get(path)
    response = api.patch(path, {"name": "weak"}, headers={"If-Match": f'W/{before.headers["ETag"]}'})
    assert_error(response, 412, "precondition_failed")
    assert api.get(path).json()["revision"] == before.json()["revision"]


def test_delete_with_current_if_match(api):
    device = api.put("devices", {"name": "x"})
    response = api.delete(f"devices/{device.json()['data']['id']}", headers={"If-Match": device.headers["ETag"]})
    assert response.status_code == 200
    assert_error(api.get(f"devices/{device.json()['data']['id']}"), 404, "bad_identifier")


def test_racing_patches_lose_no_update(api):
    """Many PATCHes at once, each adding its own key: every 200 is in the result, no 409 is."""
    device = api.create_device(name="busy")["id"]
    writers = 24

    def write(i: int) -> int:
        return api.patch(f"devices/{device}", {f"k{i}": i, "sip": {"expire_seconds": 60 + i}}).status_code

    jobs = [gevent.spawn(write, i) for i in range(writers)]
    gevent.joinall(jobs, raise_error=True)
    statuses = [job.value for job in jobs]
    assert set(statuses) <= {200, 409}, statuses
    final = api.get(f"devices/{device}")
    doc = final.json()["data"]
    for i, status in enumerate(statuses):
        assert (f"k{i}" in doc) == (status == 200), (i, status, doc)
    assert rev(final)[0] == 1 + statuses.count(200)


def test_racing_conditional_writes_let_exactly_one_win(api):
    device = api.put("devices", {"name": "busy"})
    tag, ident = device.headers["ETag"], device.json()["data"]["id"]

    def write(i: int):
        return api.patch(f"devices/{ident}", {"winner": i}, headers={"If-Match": tag})

    jobs = [gevent.spawn(write, i) for i in range(12)]
    gevent.joinall(jobs, raise_error=True)
    statuses = [job.value.status_code for job in jobs]
    assert statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 409, 412}, statuses
    winner = statuses.index(200)
    assert api.get(f"devices/{ident}").json()["data"]["winner"] == winner


# --- a race forced at the exact point: after our read, another writer commits ------------------

@pytest.fixture
def interleave(monkeypatch):
    """`interleave(write)`: the next store update runs `write` in another greenlet (with its own
    database connection) right after reading the current document, and lets it commit first."""
    real = store_documents.check_if_match
    pending = []

    def check_then_race(current, if_match):
        real(current, if_match)
        if pending:
            other = pending.pop()
            job = gevent.spawn(_committed, other)
            job.join()
            assert job.successful(), job.exception

    def _committed(write):
        with db.database.connection_context():
            write()

    monkeypatch.setattr(store_documents, "check_if_match", check_then_race)
    return pending.append


@rival_commits_in_between
def test_http_patch_losing_a_race_is_409_and_changes_nothing(api, interleave):
    device = api.create_device(name="contested")["id"]

    def rival():
        account = store_accounts.get_account(api.account_id)
        store_devices.update_device(account, device, {"rival": True}, merge=True)

    interleave(rival)
    assert_error(api.patch(f"devices/{device}", {"mine": True}), 409, "datastore_conflict",
                 {"message": "conflicting documents"})
    doc = api.get(f"devices/{device}").json()
    assert doc["data"]["rival"] is True and "mine" not in doc["data"]
    assert rev(api.get(f"devices/{device}"))[0] == 2
    # Without a rival the same write goes through.
    assert api.patch(f"devices/{device}", {"mine": True}).status_code == 200


@rival_commits_in_between
def test_http_delete_losing_a_race_is_409_and_deletes_nothing(api, interleave):
    device = api.create_device(name="contested", sip={"username": "alice", "password": "secret-1"})["id"]

    def rival():
        account = store_accounts.get_account(api.account_id)
        store_devices.update_device(account, device, {"name": "renamed"}, merge=True)

    interleave(rival)
    assert_error(api.delete(f"devices/{device}"), 409, "datastore_conflict")
    assert api.get(f"devices/{device}").json()["data"]["name"] == "renamed"
    with db.database.connection_context():
        assert store_devices.directory_entry("acme.test", "alice") is not None


@rival_commits_in_between
def test_http_user_replace_losing_a_race_is_409(api, interleave):
    user = api.create_user(username="alice", password="secret-1")["id"]

    def rival():
        store_users.update_user(api.account_id, user, {"first_name": "Rival"}, merge=True)

    interleave(rival)
    assert_error(api.post(f"users/{user}", {"first_name": "Mine", "last_name": "X"}), 409, "datastore_conflict")
    assert api.get(f"users/{user}").json()["data"]["first_name"] == "Rival"


@rival_commits_in_between
def test_http_account_patch_losing_a_race_is_409(api, interleave):
    def rival():
        store_accounts.update_account(api.account_id, {"dialplan_context": "rival"}, merge=True)

    interleave(rival)
    assert_error(api.patch("", {"dialplan_context": "mine"}), 409, "datastore_conflict")
    assert api.get("").json()["data"]["dialplan_context"] == "rival"
