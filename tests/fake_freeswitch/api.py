"""The api commands of the test FreeSWITCH that are neither sofia's nor about calls.

Each is ``fn(fake, args) -> str | bytes`` in ``API_COMMANDS``; ``FakeFreeSwitch.api_handlers``
starts from it (a test may add or replace commands there). An empty output becomes the event
socket's ``-ERR no reply`` (``Commands._api``).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import gevent

from . import curl
from .templates import STATUS_BODY, VERSION_BODY

if TYPE_CHECKING:
    from .server import FakeFreeSwitch

#: ``${name(args)}`` with arguments free of nested calls, as the dialplan and ``eval`` expand it
_CALL_RE = re.compile(r"\$\{([a-z_]+)\(([^(){}]*)\)\}")


def msleep(fake: FakeFreeSwitch, args: str) -> str:
    # As FreeSWITCH: the sleep runs on the connection's own thread, holding it.
    gevent.sleep(int(args.strip() or 0) / 1000.0)
    return "+OK"


def xml_flush_cache(fake: FakeFreeSwitch, args: str) -> str:
    parts = args.split()
    count = fake.flush_directory_cache(parts[1], parts[2]) \
        if len(parts) == 3 and parts[0] == "id" else 0
    return f"+OK cleared {count} {'entry' if count == 1 else 'entries'}\n"


def shutdown(fake: FakeFreeSwitch, args: str) -> str:
    """``api shutdown``: ``+OK`` now, then the shutdown an event subscriber sees (esl3/221)."""
    gevent.spawn(fake.stop)  # not one of the fake's own greenlets: stop() joins those
    return "+OK\n"


def user_exists(fake: FakeFreeSwitch, args: str) -> str:
    """``user_exists id <user> <domain>``: ``true`` or ``false``, without a newline (esl3/173)."""
    parts = args.split()
    if len(parts) != 3:
        return "false"
    return "true" if fake.directory_user("user_exists", parts[1], parts[2]) else "false"


def user_data(fake: FakeFreeSwitch, args: str) -> str:
    """``user_data <user>@<domain> var|param <name>``: the value alone (esl3/157), or nothing."""
    parts = args.split()
    if len(parts) != 3 or "@" not in parts[0] or parts[1] not in ("var", "param"):
        return ""
    user, _, domain = parts[0].partition("@")
    found = fake.directory_user("user_data", user, domain, [("type", parts[1])])
    if found is None:
        return ""
    return (found.variables if parts[1] == "var" else found.params).get(parts[2], "")


def expand(fake: FakeFreeSwitch, text: str) -> str:
    """``${api(args)}`` calls replaced by their output, innermost first (as ``eval`` does)."""
    for _ in range(10):
        expanded = _CALL_RE.sub(lambda m: _output(fake, m.group(1), m.group(2)), text)
        if expanded == text:
            break
        text = expanded
    return text


def _output(fake: FakeFreeSwitch, name: str, args: str) -> str:
    handler = fake.api_handlers.get(name)
    result = handler(fake, args) if handler else ""
    return result.decode() if isinstance(result, bytes) else result


def eval_(fake: FakeFreeSwitch, args: str) -> str:
    return expand(fake, args)


def expand_api(fake: FakeFreeSwitch, args: str) -> str | bytes:
    """``expand <command> <args>``: the command run on its expanded arguments (esl3/198)."""
    name, _, rest = args.strip().partition(" ")
    handler = fake.api_handlers.get(name)
    if handler is None:
        return f"-ERR {name} Command not found!\n"
    return handler(fake, expand(fake, rest))


def echo(fake: FakeFreeSwitch, args: str) -> str:
    return args


def curl_api(fake: FakeFreeSwitch, args: str) -> str:
    try:
        call = curl.parse(args.strip())
    except ValueError as exc:
        return f"-ERR {exc}\n"  # not recorded: what mod_curl says to arguments it cannot use
    fake.curl_calls.append(call)
    return curl.perform(call, timeout_cap=fake.curl_timeout_cap)


def show(fake: FakeFreeSwitch, args: str) -> str:
    words = args.split()
    if words[:1] == ["channels"]:
        return fake.show_channels()
    if words == ["registrations", "as", "json"]:
        return fake.show_registrations_json()
    return "-USAGE: show <what>\n"


API_COMMANDS: dict[str, Callable[[FakeFreeSwitch, str], str | bytes]] = {
    "status": lambda fake, args: STATUS_BODY,
    "version": lambda fake, args: VERSION_BODY,
    "msleep": msleep,
    "xml_flush_cache": xml_flush_cache,
    "shutdown": shutdown,
    "user_exists": user_exists,
    "user_data": user_data,
    "eval": eval_,
    "expand": expand_api,
    "echo": echo,
    "curl": curl_api,
    "show": show,
}
