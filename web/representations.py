"""Other representations of an API answer than its JSON envelope: CSV and JSONP.

- CSV, as Kazoo 4 (`api_resource:to_csv`, `api_util:create_csv_resp_content`, `kz_csv`): asked
  for with `Accept: text/csv` or `?accept=csv`. The rows of the data (a single document is one
  row) become lines under a header line; nested keys are flattened and joined with `_`
  (`caller_id_internal_number`), every cell quoted, a list's items joined with commas. The file
  is offered as `result.csv`, or the name given in `X-File-Name` or `?file_name=`.
- JSONP (`api_util:create_resp_content`): `?jsonp=<function>` wraps the envelope in a call of
  that function, served as JavaScript, for GET only.

Only successful GETs are converted to CSV: errors stay JSON envelopes.
"""
from __future__ import annotations

import json
import re
from typing import Any

from flask import Request, Response

from models.errors import ValidationFailed

CSV_TYPES = ("text/csv", "text/comma-separated-values")
CSV_FILE_NAME = "result.csv"  # api_util ?DEFAULT_CSV_FILE_NAME
_FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}\Z")
#: A JavaScript function name, dotted paths allowed (`window.handle`), nothing that could end
#: the call and start a script of its own.
_CALLBACK_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,63}(\.[A-Za-z_$][A-Za-z0-9_$]{0,63}){0,7}\Z")


def wants_csv(request: Request) -> bool:
    """`?accept=csv` (Kazoo's `accept_override`) or an `Accept` header preferring CSV."""
    environ = request.environ
    if "accept=" in environ.get("QUERY_STRING", ""):
        wanted = request.args.get("accept", "").lower()
        if wanted in ("csv", *CSV_TYPES):
            return True
    accept = environ.get("HTTP_ACCEPT", "")
    if "csv" not in accept and "comma-separated" not in accept:
        return False
    best = request.accept_mimetypes.best_match(["application/json", *CSV_TYPES])
    return best in CSV_TYPES


def _cell(value: Any) -> str:
    """One cell as `kz_csv:cell_to_binary/1` writes it: quoted, quotes doubled."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list):
        text = ",".join(_plain(item) for item in value)
    else:
        text = _plain(value)
    return '"' + text.replace('"', '""') + '"'


def _plain(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "" if value is None else str(value)


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`kz_json:flatten/1`: leaves under their path joined with `_`; empty objects vanish."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        path = f"{prefix}_{key}" if prefix else str(key)
        if isinstance(value, dict):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def to_csv(rows: list[Any]) -> str:
    """The rows as CSV text: a header line of every column in order of first appearance, then
    one line per row (a row without a column leaves its cell empty)."""
    flat = [_flatten(row) if isinstance(row, dict) else {"value": row} for row in rows]
    columns: dict[str, None] = {}
    for row in flat:
        columns.update(dict.fromkeys(row))
    if not columns:
        return ""
    lines = [",".join(_cell(name) for name in columns)]
    lines += [",".join(_cell(row.get(name)) for name in columns) for row in flat]
    return "\n".join(lines) + "\n"


def csv_file_name(request: Request) -> str:
    """`X-File-Name`, else `?file_name=`, else `result.csv` (`api_util:csv_file_name/2`); a
    name with characters that would need quoting in the header is replaced by the default."""
    wanted = request.headers.get("X-File-Name") or request.args.get("file_name") or CSV_FILE_NAME
    return wanted if _FILE_NAME_RE.match(wanted) else CSV_FILE_NAME


def csv_response(response: Response, request: Request) -> Response:
    """The CSV form of a successful JSON answer (whose `data` is rows or one document)."""
    body = json.loads(response.get_data())
    data = body.get("data")
    rows = data if isinstance(data, list) else [data]
    converted = Response(to_csv(rows), status=response.status_code, mimetype="text/csv")
    for name in ("X-Request-ID", "ETag", "Vary"):
        if name in response.headers:
            converted.headers[name] = response.headers[name]
    converted.headers["Content-Disposition"] = f'attachment; filename="{csv_file_name(request)}"'
    if body.get("next_start_key"):
        converted.headers["X-Next-Start-Key"] = body["next_start_key"]
    return converted


def jsonp_callback(request: Request, any_origin: bool) -> str | None:
    """The function `?jsonp=` names, or None; 400 for a name that is not a plain JavaScript
    function name, or when only listed origins may read the API (a script tag reads from any
    origin: JSONP would open what the CORS setting closes)."""
    if "jsonp=" not in request.environ.get("QUERY_STRING", ""):
        return None
    name = request.args.get("jsonp")
    if name is None:
        return None
    if not any_origin:
        raise ValidationFailed.single(
            "jsonp", "forbidden", "JSONP is off while ESL_BRIDGE_CORS_ORIGINS lists origins")
    if not _CALLBACK_RE.match(name):
        raise ValidationFailed.single("jsonp", "pattern", "jsonp must be a JavaScript function name",
                                      target=_CALLBACK_RE.pattern)
    return name


def jsonp_response(response: Response, callback: str) -> Response:
    """The JSON answer wrapped as `callback(<envelope>);`, served as JavaScript."""
    response.set_data(callback.encode() + b"(" + response.get_data() + b");")
    response.mimetype = "application/javascript"
    return response
