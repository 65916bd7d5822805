"""The FreeSWITCH endpoints' own form split and secret check give what werkzeug's would, and their
SIP user and realm rules are the documents'."""
from __future__ import annotations

import base64
import ipaddress
import random
from types import SimpleNamespace

import pytest
import requests
from fixtures_web import FREESWITCH_SECRET, client_for, make_account
from flask import Flask, request

from models import validation
from web.callouts import guard

PIECES = ["user", "domain", "a", "b", "", "=", "&", "%", "%2", "%41", "%26", "%3D", "%zz", "%C3%A9",
          "%C3", "%FF", "+", " ", "é", "☎", "\x00", ";", "key_value", "acme.test", "2001"]


def fuzzed_bodies(count: int) -> list[bytes]:
    rng = random.Random(7)
    bodies = [b"", b"&", b"=", b"a", b"a=1&a=2", b"a=1&%61=2", b"a+b=1&a%20b=2", b"x=%FF", b"\xff=1",
              "é=☎".encode(), b"a=1&&b=2&", b"=1&=2"]
    for _ in range(count):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 14)))
        raw = text.encode()
        if rng.random() < 0.05:
            raw += bytes([rng.randrange(128, 256)])
        bodies.append(raw)
    return bodies


def test_the_form_split_is_werkzeugs():
    app = Flask(__name__)

    def context(body: bytes):
        return app.test_request_context("/", method="POST", data=body,
                                        content_type="application/x-www-form-urlencoded")

    for body in fuzzed_bodies(6000):
        with context(body):  # each reads the body once, first: one context for each
            expected = list(request.form.items(multi=True))
        names = [name for name, _ in expected]
        with context(body):
            if len(set(names)) != len(names):
                with pytest.raises(guard.Refused):
                    guard.form_fields()
                continue
            fields = guard.form_fields()
        assert sorted(fields._values) == sorted(names), body
        for name, value in expected:
            assert name in fields and fields[name] == value and fields.get(name) == value, body
        assert fields.get("\x01absent") is None and fields.get("\x01absent", "d") == "d"


def test_other_content_types_go_through_werkzeug():
    app = Flask(__name__)
    with app.test_request_context("/", method="POST", data={"user": "2001", "domain": "a%41"}):
        fields = guard.form_fields()  # multipart: decoded by werkzeug, values kept as given
        assert fields["user"] == "2001" and fields["domain"] == "a%41"
    with app.test_request_context("/", method="POST", data=b"user=2%30",
                                  content_type="Application/X-WWW-Form-Urlencoded; charset=utf-8"):
        assert guard.form_fields()["user"] == "20"


@pytest.mark.store
def test_secret_check_variants(bridge, database_url):
    account_id, key, admin_id = make_account()
    client_for(bridge.url, account_id, key, admin_id).create_device(
        sip={"username": "2001", "password": "password"})
    body = "section=directory&action=sip_auth&user=2001&domain=acme.test&key=id&key_value=acme.test"

    def status(**headers: str) -> int:
        response = requests.post(f"{bridge.url}/freeswitch/directory", data=body, timeout=10,
                                 headers={"Content-Type": "application/x-www-form-urlencoded",
                                          **headers})
        if response.status_code == 200:
            assert 'name="a1-hash"' in response.text
        return response.status_code

    def basic(user: str, secret: str, scheme: str = "Basic", space: str = " ") -> str:
        return f"{scheme}{space}{base64.b64encode(f'{user}:{secret}'.encode()).decode()}"

    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET)) == 200
    # werkzeug's parser takes these too: the quick exact match must not be the only way in
    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET, scheme="basic")) == 200
    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET, space="  ")) == 200
    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET + "x")) == 403
    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET[:-1])) == 403
    assert status(Authorization=basic("FreeSWITCH", FREESWITCH_SECRET)) == 403
    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET) + "é") == 403
    assert status(Authorization="Bearer " + FREESWITCH_SECRET) == 403
    # the secret header, when given, is the one checked
    assert status(Authorization=basic("freeswitch", FREESWITCH_SECRET),
                  **{"X-ESL-Bridge-Secret": "wrong"}) == 403
    assert status(**{"X-ESL-Bridge-Secret": FREESWITCH_SECRET}) == 200


def test_the_body_read_directly_is_get_datas(bridge):
    """Declared lengths (read directly), chunked and oversized bodies (werkzeug) alike."""
    body = "section=directory&user=2001&domain=acme.test&key_value=acme.test&action=sip_auth"
    url = f"{bridge.url}/freeswitch/presence"
    auth = ("freeswitch", FREESWITCH_SECRET)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def ask(data, **extra):
        response = requests.post(url, data=data, auth=auth, headers={**headers, **extra}, timeout=10)
        return response.status_code, response.text

    plain = ask("realm=acme.test&sip_user=2001")
    assert plain[0] == 200 and '"presence_id": null' in plain[1]
    assert ask(iter([b"realm=acme.test&", b"sip_user=2001"])) == plain  # chunked
    assert ask(body)[0] == 400  # neither sip_user nor number: the fields were read
    too_big = requests.post(url, data="x" * (1024 * 1024 + 1), auth=auth, headers=headers, timeout=10)
    assert too_big.status_code == 413


def test_an_ipv4_peer_behind_a_dual_stack_listener_is_its_ipv4_address():
    rt = SimpleNamespace(extras={}, settings=SimpleNamespace(
        freeswitch_allow=(ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))))
    assert guard._allowed_source(rt, "::ffff:127.0.0.1")
    assert guard._allowed_source(rt, "::1")
    assert not guard._allowed_source(rt, "::ffff:10.0.0.1")
    assert not guard._allowed_source(rt, "not an address")


@pytest.mark.parametrize("value", ["", "a", "ab", "2001", "a" * 32, "a" * 33, "ab\n", "a b", "a@b", "é1",
                                   "x.y", "acme.test", "-a.b", "a.b-", "abc", "a" * 253, "a" * 254,
                                   "a.b\n", "1.2.3.4", "A_B"])
def test_the_callouts_sip_user_and_realm_rules_are_the_documents(value):
    """A lookup the callouts accept is one a stored device can answer, and the other way round."""
    sip = validation.schema_errors("device", {"name": "d", "sip": {"username": value, "realm": value}})
    assert bool(guard.SIP_USER_RE.match(value)) == ("sip.username" not in sip)
    assert bool(guard.REALM_RE.match(value)) == ("sip.realm" not in sip)
