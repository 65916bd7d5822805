"""mod_lua's `freeswitch.JSON` and an api script's `stream`, for the Lua harness."""
from __future__ import annotations

import json
import re
from typing import Any

from lua_session import HarnessError


class CJson:
    """``freeswitch.JSON()`` of mod_lua (cJSON underneath): ``decode`` and ``encode``, as recorded
    on FreeSWITCH 1.10 (esl3/190) and read in ``freeswitch_lua.cpp``. A userdata to Lua, as
    there; lupa passes ``j:decode(text)`` and ``j.decode(j, text)`` alike, so unlike the session
    stand-in it cannot insist on ``:``."""

    def __init__(self, lua: Any) -> None:
        self.lua = lua

    def decode(self, text: Any) -> Any:
        if not isinstance(text, str):
            raise HarnessError(f"JSON:decode wants a string, got {text!r}")
        try:  # cJSON_Parse: leading blanks skipped, anything after the value ignored
            value, _ = json.JSONDecoder(parse_int=float, parse_constant=_no_constant) \
                .raw_decode(text.lstrip(" \t\r\n"))
        except ValueError:
            return None
        return self._table(value)

    def _table(self, value: Any) -> Any:
        """cJSON2LuaTable: only an object or an array fills the table."""
        table = self.lua.table()
        if isinstance(value, dict):
            for key, item in value.items():
                if item is not None:
                    table[key] = self._item(item)
        elif isinstance(value, list):
            index = 1
            for item in value:
                if item is None or isinstance(item, list):
                    continue  # null, and an array inside an array, are dropped
                table[index] = self._item(item)
                index += 1
        return table

    def _item(self, value: Any) -> Any:
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int | float):
            return float(value)
        return self._table(value)

    def encode(self, table: Any) -> str:
        value = _cjson_value(table)
        return json.dumps({} if value is None else value, ensure_ascii=False,
                          separators=(",", ":"))


def _no_constant(name: str) -> None:
    raise ValueError(name)


_LUA_NUMBER = re.compile(r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|0[xX][0-9a-fA-F]+)\s*$")


def _cjson_value(value: Any) -> Any:
    """LuaTable2cJSON: the first key decides array (1) or object; a number, or a string Lua
    reads as one, becomes a number; an empty table an object."""
    if not (hasattr(value, "items") and callable(value.items)):
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) or (isinstance(value, str) and _LUA_NUMBER.match(value)):
            number = float(value) if not str(value).strip().lower().startswith(("0x", "-0x")) \
                else float(int(str(value), 16))
            return int(number) if number.is_integer() and abs(number) < 1e15 else number
        return value
    items = list(value.items())
    if not items:
        return None
    as_array = isinstance(items[0][0], int | float) and items[0][0] == 1
    converted = [(key, _cjson_value(item)) for key, item in items]
    if as_array:
        return [{} if item is None else item for _, item in converted]
    return {str(key): {} if item is None else item for key, item in converted}


class Stream:
    """The ``stream`` an ``api lua`` script writes its answer to."""

    def __init__(self) -> None:
        self.data: list[str] = []

    def write(self, text: Any) -> None:
        self.data.append(str(text))

    @property
    def text(self) -> str:
        return "".join(self.data)
