"""The `session` of mod_lua for the Lua harness: a call from a registered phone (see
`lua_harness`), and the error every stand-in raises for what FreeSWITCH would not accept."""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# A caller hanging up during a prompt, as an entry of Session(digits=[...]).
HANGUP = "<hangup>"


class HarnessError(AssertionError):
    """The script used FreeSWITCH's API in a way the real one would not accept."""


@dataclass
class Prompt:
    """One playAndGetDigits call."""

    file: str
    invalid_file: str
    regex: str | None
    var_name: str | None
    entries: list[str]
    result: str


class Session:
    """A FreeSWITCH session (`session` in Lua) on a call from a registered phone."""

    METHODS = ("answer", "answered", "ready", "hangup", "getVariable", "setVariable",
               "playAndGetDigits", "streamFile", "sleep", "execute", "get_uuid")

    def __init__(self, variables: dict[str, str] | None = None,
                 digits: Iterable[str] = ()) -> None:
        self.variables: dict[str, str] = dict(variables or {})
        self.digits: deque[str] = deque(digits)
        self.answered_ = False
        self.hangup_cause: str | None = None
        self.played: list[str] = []
        self.prompts: list[Prompt] = []
        self.executed: list[tuple[str, str]] = []
        self.exported: dict[str, str] = {}
        self.bridges: list[dict[str, Any]] = []
        self.slept_ms = 0

    def call(self, name: str, *args: Any) -> Any:
        if name not in self.METHODS:
            raise HarnessError(f"session:{name} is not part of this stand-in")
        return getattr(self, "_" + name)(*args)

    def _answer(self) -> None:
        if self.hangup_cause is None:
            self.answered_ = True

    def _answered(self) -> bool:
        return self.answered_

    def _ready(self) -> bool:
        return self.hangup_cause is None

    def _hangup(self, cause: str | None = None) -> None:
        if self.hangup_cause is None:
            self.hangup_cause = cause or "NORMAL_CLEARING"

    def _getVariable(self, name: str) -> str | None:  # noqa: N802 - FreeSWITCH's name
        if not isinstance(name, str):
            raise HarnessError(f"getVariable wants a name, got {name!r}")
        return self.variables.get(name)

    def _setVariable(self, name: str, value: Any = None) -> None:  # noqa: N802
        if not isinstance(name, str) or not name:
            raise HarnessError(f"setVariable wants a name, got {name!r}")
        if value is None:
            self.variables.pop(name, None)
        else:
            self.variables[name] = str(value)

    def _get_uuid(self) -> str | None:
        return self.variables.get("uuid")

    def _streamFile(self, path: str, sample_count: int = 0) -> None:  # noqa: N802
        if not isinstance(path, str) or not path:
            raise HarnessError(f"streamFile wants a file, got {path!r}")
        if self.hangup_cause is None:
            self.played.append(path)

    def _sleep(self, ms: int, sync: int = 0) -> None:
        self.slept_ms += int(ms)

    def _playAndGetDigits(self, min_digits: int, max_digits: int, max_tries: int, timeout: int,  # noqa: N802
                          terminators: str, file: str, invalid_file: str,
                          regex: str | None = None, var_name: str | None = None,
                          digit_timeout: int | None = None,
                          transfer_on_failure: str | None = None) -> str:
        for name, value in (("min_digits", min_digits), ("max_digits", max_digits),
                            ("max_tries", max_tries), ("timeout", timeout)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise HarnessError(f"playAndGetDigits {name} must be an integer, got {value!r}")
        if not isinstance(terminators, str) or not isinstance(file, str) \
                or not isinstance(invalid_file, str):
            raise HarnessError("playAndGetDigits: terminators, file and invalid_file are strings")
        entries: list[str] = []
        result = ""
        for _ in range(max_tries):
            if self.hangup_cause is not None:
                break
            self.played.append(file)
            entry = self.digits.popleft() if self.digits else ""
            entries.append(entry)
            if entry == HANGUP:
                self._hangup("NORMAL_CLEARING")
                break
            typed = entry
            for i, c in enumerate(entry):
                if c in terminators:
                    typed = entry[:i]
                    break
            typed = typed[:max_digits]
            if len(typed) >= max(min_digits, 1) and (not regex or re.search(regex, typed)):
                result = typed
                break
            if invalid_file:
                self.played.append(invalid_file)
        if result and var_name:
            self.variables[var_name] = result
        self.prompts.append(Prompt(file, invalid_file, regex, var_name, entries, result))
        return result

    def _execute(self, app: str, data: str | None = None) -> None:
        if not isinstance(app, str):
            raise HarnessError(f"session:execute wants an application name, got {app!r}")
        data = "" if data is None else str(data)
        self.executed.append((app, data))
        if app == "export":
            local = True
            if data.startswith("nolocal:"):
                local, data = False, data[len("nolocal:"):]
            name, sep, value = data.partition("=")
            if not sep or not name:
                raise HarnessError(f"export wants name=value, got {data!r}")
            self.exported[name] = value
            if local:
                self.variables[name] = value
        elif app == "set":
            name, sep, value = data.partition("=")
            if not sep or not name:
                raise HarnessError(f"set wants name=value, got {data!r}")
            self._setVariable(name, value)
        else:
            raise HarnessError(f"application {app!r} is not part of this stand-in")


