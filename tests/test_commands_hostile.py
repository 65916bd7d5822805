"""The quoting gate against hostile values, slot by slot: each value is refused with
UnsafeValue, or, where a slot accepts it, provably neutralised: a model of how FreeSWITCH splits
the command (tests/command_models.py) finds exactly the intended arguments, variables and
headers, with the value intact in its own place."""
from __future__ import annotations

import pytest
from command_models import CALL_ID, VARS, parse_originate, parse_sendevent

from esl_bridge import commands
from esl_bridge.errors import UnsafeValue

# ---------------------------------------------------------------------- hostile table

HOSTILE: list[object] = [
    # empty and blank
    "", " ", "   ", "\t",
    # newlines: the api / bgapi injection
    "\n", "\r", "\r\n", "2001\napi status", "2001\n\napi system rm -rf /", "x\r\nbgapi originate",
    "foo\n\nexit", "a\nb", "check-sync\nEvent: x", "x\ncontent-length: 5\n\nhello",
    "2001\n\nsendevent NOTIFY", "\n\n", "ok\n",
    # NUL and other controls
    "\0", "null\0byte", "\x01\x02", "\x1b[31m", "\x7f", "tab\there", "\x0b", "\x0c", "\x85",
    # quotes and escapes
    "'", '"', "it's", 'say "hi"', "`id`", "\\", "a\\sb", "\\n", "\\x41", "a\\'b",
    "'Device QuickCall'", "'a b'", "a'b'c", "x' ,origination_nested_vars=true,'",
    # variable blocks
    "{", "}", "{x=y}", "a}b", "}user/1000@evil.test", "[", "]", "[x=y]user/1@b", "<", ">",
    "<x=y>", "a<b>c", "{origination_nested_vars=true}",
    # leg and variable separators
    ",", "a,b", "Smith, John", "|", "a|b", "user/1@b|user/2@b", "2001,user/1000@evil.test",
    "^", "^^:a:b", "^^,x", "^^;a=b;c=d",
    # variable expansion
    "$", "${system(id)}", "$${x}", "${uuid}", "$(x)", "a$b", "${${x}}",
    # the :_: separator and colons
    ":_:", "a:_:b", ":", "sip:1@b", "Event-Name: BACKGROUND_JOB",
    # nested vars and assignments
    "origination_nested_vars=true", "a=b", "x,origination_nested_vars=true", "=", "==",
    # applications after a space
    "x &system(rm)", " &system(id)", "&echo", "x &bridge(user/1000)", "9196 &park()",
    "Bars Test &system(reboot)", "2001 &transfer(9999 XML default)",
    # URL escapes that FreeSWITCH may decode
    "%0A", "%0d%0a", "%7B", "a%20b", "100%", "x%0AJob-UUID%3A%20y",
    # spaces that would shift arguments
    "2001 9196", "9196 XML public", " 2001", "2001 ", "a  b", "Bars Test ", " Bars Test",
    # non-ASCII and invisible characters
    "é", "Ünïcödé", "名前", "\u2028", "\u2029", "\u200b", "\u202e", "\ufeff", "\u00a0",
    "\u3000", "2001\u00a0", "Zoë\u200d", "\ud800",
    # too long
    "a" * 36, "1" * 34, "x" * 65, "x" * 129, "x" * 254, "x" * 10000, "9" * 36,
    # shapes of other slots
    "user/2001@acme.test", "2001@acme.test", "@", "a@b@c", "@acme.test", "-", "--help",
    "..", "../etc", "/", "2001;reboot=true", "content-length: 10", "+", "#", "*", "()", "(",
    "a)b", "1e5", "api status", "bgapi status", "~", "!", "?",
    "Robert'); DROP TABLE--", "<script>alert(1)</script>", "acme.test.", ".acme.test",
    "-acme.test", "acme..test", "ACME.test",
    # not strings
    None, 2001, 20.01, b"2001", ["2001"], True, ("2001",),
]


def test_the_table_is_large_enough():
    assert len(HOSTILE) >= 100
    assert len({repr(v) for v in HOSTILE}) == len(HOSTILE), "duplicates in the table"


def embed(kind: str, value: object) -> str:
    """Put ``value`` in slot ``kind`` of a real command; raises UnsafeValue if refused."""
    base = dict(call_id=CALL_ID, endpoints=[("2001", "acme.test")], number="9196",
                context="default", cid_name="Bars Test", cid_number="15551112222",
                variables=dict(VARS))
    if kind == "user":
        return commands.originate(**{**base, "endpoints": [(value, "acme.test")]})
    if kind == "realm":
        return commands.originate(**{**base, "endpoints": [("2001", value)]})
    if kind in ("number", "context", "cid_name", "cid_number", "call_id"):
        return commands.originate(**{**base, kind: value})
    if kind == "origination_cid_name":
        return commands.originate(**{**base, "origination_cid_name": value})
    if kind == "variable_value":
        return commands.originate(**{**base, "variables": {"esl_bridge_request_id": value}})
    if kind == "variable_name":
        if not isinstance(value, str | int | float | bytes | bool | tuple | None):
            raise UnsafeValue("variables", "type", "not a possible mapping key")
        return commands.originate(**{**base, "variables": {value: "x"}})
    if kind == "profile":
        return commands.check_sync_notify(profile=value, user="2001", realm="acme.test",
                                          event_string="check-sync")
    if kind == "event_string":
        return commands.check_sync_notify(profile="internal", user="2001", realm="acme.test",
                                          event_string=value)
    if kind == "presence_id":
        return commands.presence_reset(value)
    if kind == "job_uuid":
        return commands.bgapi("status", value)
    if kind == "xmlstatus_user":
        return commands.xmlstatus_user("internal", value, "acme.test")
    if kind == "flush_user":
        return commands.xml_flush_cache(value, "acme.test")
    if kind == "flush_inbound_reg_realm":
        return commands.flush_inbound_reg("internal", "2001", value)
    if kind == "hangup_cause":
        return commands.uuid_kill(CALL_ID, value)
    raise AssertionError(kind)


KINDS = ["user", "realm", "number", "context", "cid_name", "cid_number", "call_id",
         "origination_cid_name", "variable_value", "variable_name", "profile", "event_string",
         "presence_id", "job_uuid", "xmlstatus_user", "flush_user", "flush_inbound_reg_realm",
         "hangup_cause"]


def check_neutralised(kind: str, value: str, text: str) -> None:
    """The value was accepted: prove it sits, intact, in its own place only."""
    # Never any of the characters SPEC 6 says can never pass, in any slot.
    for bad in ("\r", "\n", "\0", "\\", '"', "{", "}", "[", "]", "<", ">", ",", "|", "^", "$",
                ":_:"):
        assert bad not in value, (kind, value)
    if kind in ("user", "realm", "number", "context", "cid_name", "cid_number", "call_id",
                "origination_cid_name", "variable_value"):
        parsed = parse_originate(text)
        expected = parse_originate(embed(kind, {
            "user": "2001", "realm": "acme.test", "number": "9196", "context": "default",
            "cid_name": "Bars Test", "cid_number": "15551112222", "call_id": CALL_ID,
            "origination_cid_name": "Device QuickCall", "variable_value": "x"}[kind]))
        where = {
            "user": lambda p: p["legs"][0].split("/", 1)[1].rsplit("@", 1)[0],
            "realm": lambda p: p["legs"][0].rsplit("@", 1)[1],
            "number": lambda p: p["exten"],
            "context": lambda p: p["context"],
            "cid_name": lambda p: p["vars"]["effective_caller_id_name"],
            "cid_number": lambda p: p["vars"]["effective_caller_id_number"],
            "call_id": lambda p: p["vars"]["origination_uuid"],
            "origination_cid_name": lambda p: p["vars"]["origination_caller_id_name"],
            "variable_value": lambda p: p["vars"]["esl_bridge_request_id"],
        }[kind]
        assert where(parsed) == value
        assert set(parsed["vars"]) == set(expected["vars"])
        assert len(parsed["legs"]) == 1 and parsed["dialplan"] == "XML"
        if kind == "number":
            assert parsed["vars"]["origination_caller_id_number"] == value
    elif kind == "variable_name":
        assert value.startswith("esl_bridge_")
        assert parse_originate(text)["vars"][value] == "x"
    elif kind in ("profile", "event_string", "presence_id"):
        first, headers = parse_sendevent(text)
        header = {"profile": "profile", "event_string": "event-string",
                  "presence_id": "from"}[kind]
        assert headers[header] == value
        assert len(headers) == (5 if kind != "presence_id" else 11)
    elif kind == "job_uuid":
        first, headers = parse_sendevent(text)
        assert first == "bgapi status" and headers == {"Job-UUID": value}
    else:
        assert "\n" not in text and "'" not in text
        args = text.split(" ")
        expected_args = {
            "xmlstatus_user": ["sofia", "xmlstatus", "profile", "internal", "user",
                               f"{value}@acme.test"],
            "flush_user": ["xml_flush_cache", "id", value, "acme.test"],
            "flush_inbound_reg_realm": ["sofia", "profile", "internal", "flush_inbound_reg",
                                        f"2001@{value}"],
            "hangup_cause": ["uuid_kill", CALL_ID, value],
        }[kind]
        assert args == expected_args
        assert "@" not in value


@pytest.mark.parametrize("value", HOSTILE, ids=[repr(v)[:40] for v in HOSTILE])
def test_hostile_values_are_refused_or_neutralised(value):
    for kind in KINDS:
        if kind == "hangup_cause" and value is None:
            continue  # uuid_kill without a cause: the argument is simply absent
        try:
            text = embed(kind, value)
        except UnsafeValue as exc:
            assert exc.field and exc.rule in ("type", "minLength", "maxLength", "forbidden",
                                              "pattern")
            assert isinstance(exc, ValueError)
            continue
        check_neutralised(kind, value, text)


@pytest.mark.parametrize("value, kind, rule", [
    ("2001\napi status", "user", "forbidden"),
    ("", "user", "minLength"),
    ("x" * 65, "user", "maxLength"),
    ("a b", "user", "pattern"),
    (2001, "user", "type"),
    ("Smith, John", "cid_name", "forbidden"),
    ("Ann@home", "cid_name", "pattern"),
    (" Bars", "cid_name", "pattern"),
    ("${x}", "number", "forbidden"),
    ("12a", "number", "pattern"),
    ("check sync", "event_string", "pattern"),
    ("alice", "presence_id", "pattern"),
    ("not-a-uuid", "uuid", "minLength"),
    ("z" * 36, "uuid", "pattern"),
    (0, "timeout", "pattern"),
    (True, "timeout", "type"),
    ("30", "timeout", "type"),
])
def test_gate_names_the_rule(value, kind, rule):
    with pytest.raises(UnsafeValue) as info:
        commands.safe(value, kind, "field_x")
    assert info.value.rule == rule
    assert info.value.field == "field_x"
    assert info.value.message and "field_x" in str(info.value)


def test_gate_quotes_spaces_only_where_quotes_protect_them():
    assert commands.safe("Bars Test", "cid_name") == "'Bars Test'"
    assert commands.safe("Bars", "cid_name") == "Bars"
    assert commands.safe("Zoë (home)", "cid_name") == "'Zoë (home)'"
    with pytest.raises(UnsafeValue):
        commands.safe("2001 9196", "user")


def test_gate_accepts_the_values_esl_bridge_really_sends():
    for value, kind in [("2001", "user"), ("alice.smith+1", "user"), ("acme.test", "realm"),
                        ("127.0.0.1", "realm"), ("*97", "number"), ("+15551112222", "number"),
                        ("#123", "number"), ("default", "context"), ("internal", "profile"),
                        ("check-sync;reboot=false", "event_string"), ("resync", "event_string"),
                        ("alice-static@acme.test", "presence_id"), ("*97#x@acme.test",
                                                                    "presence_id"),
                        (CALL_ID, "uuid"), ("Device QuickCall", "cid_name"),
                        ("O'Brien".replace("'", ""), "cid_name"), ("+15551112222", "cid_number")]:
        assert commands.safe(value, kind).strip("'") == value
