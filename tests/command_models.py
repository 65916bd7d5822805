"""How FreeSWITCH reads the commands esl-bridge builds, modelled for the command tests: the
argument split of `originate` (spaces, single quotes), its variable blocks, and sendevent's
one header per line."""
from __future__ import annotations

#: The values of the recorded QuickCall originate (esl2/113), which the command tests vary.
CALL_ID = "931a5c0a-60a9-4023-96c3-4731911344e2"
VARS = {"esl_bridge_account_id": "fedcba9876543210fedcba9876543210",
        "esl_bridge_device_id": "0123456789abcdef0123456789abcdef"}


def split_args(text: str) -> list[str]:
    """Split on spaces; a single quote groups up to the next one (FreeSWITCH's rule)."""
    assert "\\" not in text, "a backslash reached FreeSWITCH"
    args, current, quoted = [], "", False
    for char in text:
        if char == "'":
            quoted = not quoted
            current += char
        elif char == " " and not quoted:
            args.append(current)
            current = ""
        else:
            current += char
    args.append(current)
    assert not quoted, "an unterminated quote reached FreeSWITCH"
    return args


def parse_originate(text: str) -> dict:
    """How FreeSWITCH reads ``originate {vars}legs exten XML context``."""
    assert "\n" not in text and "\r" not in text and "\0" not in text
    args = split_args(text)
    assert args[0] == "originate"
    assert len(args) == 5, args
    dial = args[1]
    assert dial.startswith("{")
    variables: dict[str, str] = {}
    rest = dial
    # The call's {} block, then at most the first leg's [] block (its origination_uuid).
    for opener, closer in ("{}", "[]"):
        if not rest.startswith(opener):
            continue
        end = rest.index(closer)  # a block ends at the first closing bracket, quotes or not
        for item in rest[1:end].split(","):  # quotes do not protect a comma
            name, sep, value = item.partition("=")
            assert sep, item
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            assert name not in variables
            variables[name] = value
        rest = rest[end + 1:]
    for opener in "{[<":
        assert opener not in rest
    assert "${" not in text
    legs = rest.replace("|", ",").split(",")
    return {"vars": variables, "legs": legs, "exten": args[2], "dialplan": args[3],
            "context": args[4]}


def parse_sendevent(text: str) -> tuple[str, dict[str, str]]:
    """How FreeSWITCH reads a sendevent frame: first line, then one header per line."""
    assert "\n\n" not in text and "\r" not in text and "\0" not in text
    first, *lines = text.split("\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(": ")
        assert sep, line
        assert name.lower() != "content-length"
        assert name not in headers, f"duplicate header {name}"
        headers[name] = value
    return first, headers
