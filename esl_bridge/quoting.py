"""The one gate every value from a user passes before it goes into a command: ``safe()``.

``safe(value, kind)`` validates a value for the *slot* it is going into (``SLOTS``) and returns
the text to insert, single-quoted where a space must be kept inside an originate ``{}`` block;
it raises ``UnsafeValue`` (a ``ValueError``) naming the field and the rule, before anything
reaches a socket. The command builders of ``esl_bridge.commands`` call it on every value (and
re-export it: ``commands.safe`` is the name the rest of the code uses).

What makes a value dangerous (``freeswitch/README.md``): a newline ends the command and starts
another (``api``/``bgapi`` injection); in ``originate``, arguments split on spaces, ``'`` groups,
backslash escapes, ``{}``/``[]``/``<>`` blocks end at the first closing bracket and split on ``,``
(or a ``^^X`` separator), ``|`` and ``,`` separate legs, ``${...}`` expands variables when
``origination_nested_vars=true`` appears anywhere, ``&app(...)`` runs an application; in
``sendevent``, a header line ``content-length`` reads a body and a newline adds headers. So the
gate refuses, in every slot: control characters (CR, LF, NUL, TAB...), Unicode format and
line-separator characters, backslash, both quotes and the backquote, ``{}[]<>``, ``,``, ``|``,
``^``, ``$``, ``%``, ``:`` (hence ``:_:``) and ``&``; then each slot allows only its own
characters (for example a realm is hostname characters, a number ``+?[0-9*#]``).
"""
from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from .errors import UnsafeValue

PRESENCE_STATES = ("early", "confirmed", "terminated")

# Characters refused in every slot, with the reason a reader of the error needs.
_FORBIDDEN = {
    "\\": "a backslash, which FreeSWITCH treats as an escape",
    "'": "a single quote, which would end a quoted value",
    '"': "a double quote",
    "`": "a backquote",
    "{": "'{', which opens a variable block",
    "}": "'}', which ends a variable block",
    "[": "'[', which opens a per-leg variable block",
    "]": "']', which ends a per-leg variable block",
    "<": "'<', which opens a variable block",
    ">": "'>', which ends a variable block",
    ",": "a comma, which separates variables and call legs",
    "|": "'|', which separates call legs",
    "^": "'^', which can redefine the variable separator (^^)",
    "$": "'$', which can expand a variable (${...})",
    "%": "'%', which FreeSWITCH may URL-decode into anything",
    ":": "':', which can form the ':_:' separator and header syntax",
    "&": "'&', which starts an application (&app(...))",
}

_CONTROL_NAMES = {
    "\r": "a carriage return (CR)",
    "\n": "a line feed (LF), which would end the command and start another",
    "\0": "a NUL byte",
    "\t": "a tab",
}

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"


#: One character of a plainly safe value: ASCII letters, digits, the space and the punctuation
#: some slot allows, none of them refused anywhere (see _FORBIDDEN and _forbidden).
_PLAIN_CHAR = "[A-Za-z0-9 ._+*#;=@()-]"


@dataclass(frozen=True)
class Slot:
    """What one kind of value may contain: a pattern, a length range, and quoting.

    ``plain`` is the gate's fast path: the ``fullmatch`` of one regex that accepts only values
    the full check would accept as they are, that is plain characters only (``_PLAIN_CHAR``),
    within the length range, of the slot's shape (``pattern``, or ``plain_shape`` for a slot
    checked otherwise). Anything it does not accept gets the full check, which alone words the
    errors; ``None`` when the slot has no shape to match.
    """

    pattern: re.Pattern[str] | None
    min_length: int
    max_length: int
    description: str
    #: wrap in single quotes when the value holds a space (only inside an originate {} block)
    quote_spaces: bool = False
    #: the usual shape of a valid value when ``pattern`` is None (a subset of what is valid)
    plain_shape: re.Pattern[str] | None = None
    plain: Callable[[str], re.Match[str] | None] | None = dataclasses.field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = self.plain_shape or self.pattern
        if shape is None:
            return
        regex = (rf"(?={_PLAIN_CHAR}{{{self.min_length},{self.max_length}}}\Z)"
                 rf"(?:{shape.pattern})")
        # Never IGNORECASE: with it, ASCII letters also match a few non-ASCII ones (K, ſ).
        matcher = re.compile(regex, shape.flags & ~re.IGNORECASE).fullmatch
        object.__setattr__(self, "plain", matcher)


SLOTS: dict[str, Slot] = {
    "user": Slot(re.compile(r"[A-Za-z0-9._+-]+"), 1, 64,
                 "letters, digits and ._+-"),
    "realm": Slot(re.compile(_HOST), 1, 253,
                  "hostname characters (letters, digits, '.', '-')"),
    "profile": Slot(re.compile(r"[A-Za-z0-9._-]+"), 1, 64, "letters, digits and ._-"),
    "context": Slot(re.compile(r"[A-Za-z0-9._-]+"), 1, 64, "letters, digits and ._-"),
    "number": Slot(re.compile(r"\+?[0-9*#]+"), 1, 33,
                   "digits, '*' and '#', with an optional leading '+'"),
    "cid_number": Slot(re.compile(r"\+?[0-9]+"), 1, 35,
                       "digits with an optional leading '+'"),
    "cid_name": Slot(None, 1, 35,
                     "letters, digits, spaces and .-_()+, no leading or trailing space",
                     quote_spaces=True,
                     # ASCII only; other letters take the full check
                     plain_shape=re.compile(r"[A-Za-z0-9._()+-](?:[A-Za-z0-9 ._()+-]*"
                                            r"[A-Za-z0-9._()+-])?")),
    "presence_id": Slot(re.compile(r"[A-Za-z0-9._+*#-]{1,128}@" + _HOST), 3, 253,
                        "<id>@<realm>, the id of letters, digits and ._+*#-"),
    "event_string": Slot(
        re.compile(r"[A-Za-z0-9._-]+(?:;[A-Za-z0-9._-]+(?:=[A-Za-z0-9._-]+)?)*"), 1, 128,
        "a token with optional ;name=value parameters (letters, digits, ._-)"),
    "uuid": Slot(re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                            r"[0-9a-fA-F]{12}"), 36, 36, "a UUID"),
    "variable_name": Slot(re.compile(r"esl_bridge_[a-z0-9_]+"), 12, 64,
                          "esl_bridge_ followed by lower-case letters, digits and _"),
    "variable_value": Slot(re.compile(r"[A-Za-z0-9._@+-]+"), 1, 128,
                           "letters, digits and ._@+-"),
    "hangup_cause": Slot(re.compile(r"[A-Z_]+"), 1, 64, "upper-case letters and _"),
}

_CID_NAME_EXTRA = frozenset(" .-_()+")


def _describe(char: str) -> str:
    if char in _CONTROL_NAMES:
        return _CONTROL_NAMES[char]
    if char in _FORBIDDEN:
        return _FORBIDDEN[char]
    name = unicodedata.name(char, "")
    return f"the character U+{ord(char):04X}{' ' + name if name else ''}"


def _forbidden(char: str) -> bool:
    if char in _FORBIDDEN:
        return True
    if char.isascii():
        return not char.isprintable()
    # Controls, format characters (zero-width, bidi overrides), line and paragraph separators,
    # surrogates, private use and unassigned code points: invisible or line-breaking.
    return unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def safe(value: object, kind: str, field: str | None = None) -> str:
    """The validation-and-quoting gate: return ``value`` as it may appear in slot ``kind``.

    ``kind`` is a key of ``SLOTS`` (``user``, ``realm``, ``cid_name``...), or ``timeout`` (an int
    of seconds, 1..3600) or ``presence_state``. ``field`` names the value in the error (default
    ``kind``). Raises ``UnsafeValue`` with rule ``type``, ``minLength``, ``maxLength``,
    ``forbidden``, ``pattern`` or ``enum``.
    """
    slot = SLOTS.get(kind)
    # The usual value passes one regex (Slot.plain) rather than a Python call per character;
    # the full check below runs for the rest, and words every refusal.
    if slot is not None and type(value) is str and slot.plain is not None \
            and slot.plain(value) is not None:
        return f"'{value}'" if slot.quote_spaces and " " in value else value
    return _check(value, kind, field or kind)


def _check(value: object, kind: str, field: str) -> str:
    """The full check behind ``safe``: the first rule ``value`` breaks, or the text to insert."""
    if kind == "timeout":
        if isinstance(value, bool) or not isinstance(value, int):
            raise UnsafeValue(field, "type", "must be a whole number of seconds")
        if not 1 <= value <= 3600:
            raise UnsafeValue(field, "pattern", "must be between 1 and 3600 seconds")
        return str(value)
    if kind == "presence_state":
        if value not in PRESENCE_STATES:
            raise UnsafeValue(field, "enum", f"must be one of {', '.join(PRESENCE_STATES)}")
        return str(value)
    slot = SLOTS.get(kind)
    if slot is None:
        raise KeyError(f"no such slot: {kind}")
    if not isinstance(value, str):
        raise UnsafeValue(field, "type", "must be a string")
    if len(value) < slot.min_length:
        raise UnsafeValue(field, "minLength",
                          "must not be empty" if not value else
                          f"must be at least {slot.min_length} characters")
    for char in value:
        if _forbidden(char):
            raise UnsafeValue(field, "forbidden", f"contains {_describe(char)}")
    if len(value) > slot.max_length:
        raise UnsafeValue(field, "maxLength", f"must be at most {slot.max_length} characters")
    if slot.pattern is not None:
        if not slot.pattern.fullmatch(value):
            raise UnsafeValue(field, "pattern", f"may only contain {slot.description}")
    elif kind == "cid_name":
        for char in value:
            if not (char in _CID_NAME_EXTRA or ("0" <= char <= "9")
                    or unicodedata.category(char).startswith("L")):
                raise UnsafeValue(field, "pattern",
                                  f"contains {_describe(char)}; may only contain "
                                  f"{slot.description}")
        if value != value.strip(" "):
            raise UnsafeValue(field, "pattern", "must not start or end with a space")
    if slot.quote_spaces and " " in value:
        # Inside an originate {} block a single quote pair keeps spaces; nothing in the value can
        # close it early since quotes were refused above.
        return f"'{value}'"
    return value


__all__ = ["PRESENCE_STATES", "SLOTS", "Slot", "safe"]
