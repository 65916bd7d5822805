"""CORS as a browser UI on another origin meets it (Kazoo: `api_util:is_authentic/2` answers
every OPTIONS without a token, `api_util:add_cors_headers/2` puts the headers on every answer)."""
from __future__ import annotations

import pytest
import requests
from fixtures_web import FREESWITCH_SECRET, assert_error, client_for, make_account

from web.config import Settings, SettingsError

pytestmark = pytest.mark.store

MONSTER = "https://monster.example.com"
PREFLIGHT = {"Origin": MONSTER, "Access-Control-Request-Method": "PUT",
             "Access-Control-Request-Headers": "content-type,x-auth-token"}


def preflight(api, path: str, **headers) -> requests.Response:
    return api.session.options(api.url(path), headers={**PREFLIGHT, **headers}, timeout=30)


def test_api_util_is_authentic_options_preflight_needs_no_token(api):
    response = preflight(api, "devices")
    assert response.status_code == 204, response.text
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "PUT", "OPTIONS"}
    assert "DELETE" not in response.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed >= {"content-type", "x-auth-token", "if-match", "x-request-id", "authorization"}
    assert int(response.headers["Access-Control-Max-Age"]) >= 600


def test_preflight_lists_the_methods_of_that_path(api):
    device = api.create_device()
    methods = preflight(api, f"devices/{device['id']}").headers["Access-Control-Allow-Methods"]
    assert set(methods.split(", ")) >= {"GET", "POST", "PATCH", "DELETE", "OPTIONS"}
    assert "PUT" not in methods.split(", ")
    # /users/hotdesks only lists (its other methods are routed to a 405).
    methods = preflight(api, "users/hotdesks").headers["Access-Control-Allow-Methods"]
    assert set(methods.split(", ")) - {"HEAD"} == {"GET", "OPTIONS"}
    assert set(preflight(api, "/v2/user_auth").headers["Access-Control-Allow-Methods"].split(", ")) \
        == {"PUT", "OPTIONS"}


def test_preflight_lists_no_head_where_head_is_refused(api):
    """HEAD on QuickCall is 405 (answering it would place a call): the preflight's methods and
    `Allow` are the 405's."""
    device = api.create_device()
    path = f"devices/{device['id']}/quickcall/100"
    response = preflight(api, path)
    assert set(response.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST", "OPTIONS"}
    assert response.headers["Allow"] == response.headers["Access-Control-Allow-Methods"]
    refused = api.request("HEAD", path)
    assert refused.status_code == 405
    assert set(refused.headers["Allow"].split(", ")) == {"GET", "POST", "OPTIONS"}


def test_preflight_of_an_unknown_path_is_404_with_cors(api):
    response = preflight(api, "/v2/nowhere")
    assert_error(response, 404, "not_found")
    assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_every_answer_carries_cors_errors_included(api, token):
    for response in (api.get("devices", token=token, headers={"Origin": MONSTER}),
                     api.get("devices/" + "f" * 32, headers={"Origin": MONSTER}),
                     api.put("devices", {"name": ""}, headers={"Origin": MONSTER}),
                     api.request("DELETE", "devices", headers={"Origin": MONSTER}),
                     api.get("devices", headers={"Origin": MONSTER}),
                     api.session.get(api.url("/health"), timeout=30)):
        assert response.headers["Access-Control-Allow-Origin"] == "*", response.text
        exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert exposed >= {"x-request-id", "etag", "location"}


def test_the_freeswitch_endpoints_never_answer_cross_origin(api):
    for method in ("OPTIONS", "POST"):
        response = api.session.request(method, api.url("/freeswitch/directory"),
                                       headers={**PREFLIGHT, "X-ESL-Bridge-Secret": FREESWITCH_SECRET},
                                       data={"section": "directory"}, timeout=30)
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], method
    assert response.status_code == 200


@pytest.fixture
def listed(start_bridge):
    """A server that allows two origins only."""
    server = start_bridge(cors_origins=("https://ui.example.com", "http://localhost:3000"))
    account_id, key, admin_id = make_account()
    return client_for(server.url, account_id, key, admin_id)


def test_a_list_of_origins_echoes_the_matching_one_and_varies_on_origin(listed):
    for origin in ("https://ui.example.com", "http://localhost:3000"):
        for response in (listed.get("devices", headers={"Origin": origin}),
                         listed.get("devices", token=None, headers={"Origin": origin}),
                         preflight(listed, "devices", Origin=origin)):
            assert response.headers["Access-Control-Allow-Origin"] == origin
            assert "Origin" in response.headers["Vary"]
    stranger = listed.get("devices", headers={"Origin": MONSTER})
    assert stranger.status_code == 200  # served (a browser hides it from the page)
    assert "Access-Control-Allow-Origin" not in stranger.headers and "Origin" in stranger.headers["Vary"]
    assert "Access-Control-Allow-Origin" not in preflight(listed, "devices").headers


def test_the_origins_setting_as_variable_and_flag():
    assert Settings.load({}).cors_origins == ("*",)
    loaded = Settings.load({"ESL_BRIDGE_CORS_ORIGINS": "https://UI.example.com/, http://[::1]:8080"})
    assert loaded.cors_origins == ("https://ui.example.com", "http://[::1]:8080")
    assert Settings.load({"ESL_BRIDGE_CORS_ORIGINS": "https://a.example"},
                         {"cors_origins": "https://b.example"}).cors_origins == ("https://b.example",)
    for bad in ("ui.example.com", "https://ui.example.com/path", "ftp://x", " , "):
        with pytest.raises(SettingsError, match="cors_origins"):
            Settings.load({"ESL_BRIDGE_CORS_ORIGINS": bad})


def test_the_serve_command_takes_cors_origins():
    from web.cli import _parser
    from web.config import flag_values

    args = _parser().parse_args(["serve", "--cors-origins", "https://ui.example.com"])
    assert Settings.load({}, flag_values(args)).cors_origins == ("https://ui.example.com",)


def test_a_browser_may_send_an_idempotency_key_and_read_the_retry_headers(api):
    """A create retried from a browser UI sends Idempotency-Key: the preflight must allow it;
    the page must be able to read Retry-After (refused logins), Allow (405) and
    Idempotent-Replayed (a replayed create)."""
    response = api.session.options(api.url("devices"), timeout=30, headers={
        **PREFLIGHT, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type,x-auth-token,idempotency-key"})
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"content-type", "x-auth-token", "idempotency-key"} <= allowed
    exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"retry-after", "allow", "idempotent-replayed"} <= exposed
