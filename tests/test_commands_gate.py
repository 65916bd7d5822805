"""The quoting gate's fast path (esl_bridge.quoting: ``Slot.plain``).

``safe()`` accepts the usual value with one regex per slot and keeps the per-character check
for everything else. These tests hold it to that: the fast path costs no Python call per
character, and it never accepts a value the full check would refuse, nor returns other text.
"""
from __future__ import annotations

import random
import re
import sys
from collections.abc import Callable

import pytest
from test_commands_hostile import HOSTILE

from esl_bridge import commands, quoting
from esl_bridge.errors import UnsafeValue

CALL_ID = "931a5c0a-60a9-4023-96c3-4731911344e2"

# The values of one QuickCall, by slot (web/quickcall.py and esl_bridge.actions.quickcall send these).
QUICKCALL_VALUES = [
    ("2001", "user"), ("acme.test", "realm"), ("9196", "number"), ("default", "context"),
    ("Bars Test", "cid_name"), ("Device QuickCall", "cid_name"), ("15551112222", "cid_number"),
    (CALL_ID, "uuid"), ("esl_bridge_account_id", "variable_name"),
    ("fedcba9876543210fedcba9876543210", "variable_value"), ("req-1", "variable_value"),
    ("internal", "profile"), ("check-sync;reboot=false", "event_string"),
    ("alice@acme.test", "presence_id"), ("NORMAL_CLEARING", "hangup_cause"),
]


def python_calls(fn: Callable[[], object]) -> int:
    """How many Python-level function calls ``fn()`` makes (itself not counted)."""
    calls = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls - 1  # fn itself


def outcome(check: Callable[[], str]) -> tuple[str, str] | str:
    """The text a check returns, or the rule and message of its refusal."""
    try:
        return check()
    except UnsafeValue as exc:
        return (exc.rule, str(exc))


@pytest.mark.parametrize("value, kind", QUICKCALL_VALUES)
def test_usual_values_cost_no_call_per_character(value, kind):
    # Before the fast path, safe() called a helper for every character (~300 calls per
    # QuickCall, its largest CPU item); now one call whatever the length.
    assert python_calls(lambda: commands.safe(value, kind)) == 1
    assert commands.safe(value, kind).strip("'") == value


def test_a_whole_quickcall_originate_makes_few_calls():
    def build() -> str:
        return commands.bgapi(commands.originate(
            call_id=CALL_ID, endpoints=[("2001", "acme.test")], number="9196",
            context="default", cid_name="Bars Test", cid_number="15551112222",
            variables={"esl_bridge_account_id": "fedcba9876543210fedcba9876543210",
                       "esl_bridge_device_id": "0123456789abcdef0123456789abcdef",
                       "esl_bridge_request_id": "req-1"}), CALL_ID)

    assert python_calls(build) < 60  # was 294


def test_plain_characters_are_ascii_and_refused_nowhere():
    plain = re.compile(quoting._PLAIN_CHAR)
    accepted = [chr(code) for code in range(sys.maxunicode + 1) if plain.fullmatch(chr(code))]
    assert len(accepted) == 26 * 2 + 10 + len(" ._+*#;=@()-")
    for char in accepted:
        assert char.isascii() and char.isprintable() and not quoting._forbidden(char), char


def corpus() -> list[str]:
    """Hostile values, values each slot accepts, and random strings near their shapes."""
    values = [v for v in HOSTILE if isinstance(v, str)]
    values += [value for value, _ in QUICKCALL_VALUES]
    values += ["Zoë (home)", " Bars", "Bars ", "a  b", "(x)", "+1", "+", "*", "#", "@x",
               "a@b", "x" * 35, "x" * 36, "x" * 64, "x" * 65, "e" * 128, "e" * 129, "ß", "K",
               "esl_bridge_", "esl_bridge_x", CALL_ID.upper(), CALL_ID + "0", "a;b=c;d",
               "a;=b", "1.2.3.4", "-a", "a-", "a..b", "A_B", "2001\n", "\u212a", "\u017f"]
    rng = random.Random(20240611)
    alphabet = ("abcxyzABCXYZ0129 ._+*#;=@()-" + "".join(quoting._FORBIDDEN)
                + "\n\r\t\0\u00e9\u212a\u017f\u200b\u2028\u0660\u00b2")
    for _ in range(6000):
        values.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))))
    return values


VALUES = corpus()


@pytest.mark.parametrize("kind", sorted(quoting.SLOTS) + ["timeout", "presence_state"])
def test_fast_path_agrees_with_the_full_check(kind):
    slot = quoting.SLOTS.get(kind)
    fast = 0
    for value in VALUES + [None, 30, b"2001"]:
        full = outcome(lambda v=value: quoting._check(v, kind, "f"))
        assert outcome(lambda v=value: commands.safe(v, kind, "f")) == full, (kind, value)
        if slot is not None and isinstance(value, str) and slot.plain is not None \
                and slot.plain(value):
            assert isinstance(full, str), (kind, value, full)  # never refused by the full check
            fast += 1
    if slot is not None:
        assert slot.plain is not None and fast > 0, kind  # every slot has a fast path in use


def test_cid_name_outside_ascii_still_takes_the_full_check():
    slot = quoting.SLOTS["cid_name"]
    assert slot.plain("Zoe (home)") and not slot.plain("Zoë (home)")
    assert commands.safe("Zoë (home)", "cid_name") == "'Zoë (home)'"
    assert not slot.plain(" Bars") and not slot.plain("Bars ") and not slot.plain("")
