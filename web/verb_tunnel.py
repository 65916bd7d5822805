"""`POST ...?verb=PUT`: a method tunnelled through POST, for clients that can only send GET and
POST (old browsers, HTML forms, some proxies), as Kazoo reads it (`api_util:get_http_verb/2`,
`api_resource:allow_missing_post/2`).

Only a POST is rewritten, so a link or an image (a GET) can never delete anything; `verb` names
PUT, PATCH, DELETE, GET or POST, in any case. Any other value is refused with a 400 naming
`verb` (see `refused_verb`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

TUNNELLED = ("PUT", "PATCH", "DELETE", "GET", "POST")
_REFUSED_KEY = "esl_bridge.refused_verb"


class VerbTunnel:
    """WSGI middleware: a POST with `?verb=X` reaches the app as an X request (before routing)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "POST" and "verb=" in environ.get("QUERY_STRING", ""):
            verb = next((value for name, value in parse_qsl(environ["QUERY_STRING"], keep_blank_values=True)
                         if name == "verb"), None)
            if verb is not None and not environ.get("PATH_INFO", "").startswith("/freeswitch"):
                if verb.upper() in TUNNELLED:
                    environ["REQUEST_METHOD"] = verb.upper()
                else:
                    environ[_REFUSED_KEY] = verb
        return self.app(environ, start_response)


def refused_verb(environ: dict[str, Any]) -> str | None:
    """The `verb` value a POST asked for that cannot be tunnelled, if any."""
    return environ.get(_REFUSED_KEY)
