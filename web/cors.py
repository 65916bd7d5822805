"""Cross-origin requests (CORS) for browser UIs on other origins, such as Monster UI.

Kazoo answers every `OPTIONS` without a token (`api_util:is_authentic/2`: "they are harmless and
required for CORS preflight") and puts its CORS headers on every response
(`api_util:add_cors_headers/2`, `get_cors_headers/1`). The allowed origins are a setting:
`*` (Kazoo's only answer) or a list, where the request's `Origin` is echoed when it is listed,
with `Vary: Origin` so that caches keep the answers apart. The FreeSWITCH endpoints never
answer cross-origin: they are not called from browsers.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from flask import Response
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import MapAdapter

#: Request headers a browser may send (Kazoo's list, with `Authorization`, `Accept` and
#: `X-Request-ID` that esl-bridge reads too).
ALLOW_HEADERS = ("Content-Type, Accept, Authorization, X-Auth-Token, If-Match, X-Request-ID, "
                 "Idempotency-Key, "
                 "X-Requested-With, X-HTTP-Method-Override, X-File-Name, X-File-Size, "
                 "If-Modified-Since, Cache-Control, Depth, User-Agent, X-Kazoo-Cluster-ID")
#: Response headers the browser may show to the page.
EXPOSE_HEADERS = ("Content-Type, Content-Disposition, X-Auth-Token, X-Request-ID, ETag, Location, "
                  "X-Next-Start-Key, Allow, Retry-After, Idempotent-Replayed")
#: How long a browser may keep a preflight answer: a day, as Kazoo (?SECONDS_IN_DAY).
MAX_AGE = "86400"


class CorsPolicy:
    """The CORS headers of the allowed origins (`*`, or a list of `scheme://host[:port]`)."""

    def __init__(self, origins: Iterable[str]):
        origins = tuple(origins)
        self.any_origin = not origins or "*" in origins
        self.origins = frozenset(origins)
        self._any = (("Access-Control-Allow-Origin", "*"),
                     ("Access-Control-Expose-Headers", EXPOSE_HEADERS))
        self._vary = (("Vary", "Origin"),)

    def headers(self, origin: str | None) -> tuple[tuple[str, str], ...]:
        """The headers for a response to a request from `origin` (its `Origin` header)."""
        if self.any_origin:
            return self._any
        if origin is not None and origin in self.origins:
            return (("Access-Control-Allow-Origin", origin),
                    ("Access-Control-Expose-Headers", EXPOSE_HEADERS), *self._vary)
        return self._vary


def path_methods(adapter: MapAdapter, path: str, views: Mapping[str, Any]) -> list[str]:
    """The methods the app answers on `path`, OPTIONS included (NotFound for an unknown path).

    Routes whose view exists only to refuse a method (marked `esl_refused`) do not count, nor
    HEAD where it is refused (`web.resource.refuse_head`: the GET view acts).
    """
    methods = set()
    for method in adapter.allowed_methods(path):
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:
            continue
        view = views.get(endpoint)
        if getattr(view, "esl_refused", False) or (method == "HEAD" and getattr(view, "esl_acts", False)):
            continue
        methods.add(method)
    if not methods:
        raise NotFound()
    return sorted(methods | {"OPTIONS"})


def preflight(adapter: MapAdapter, path: str, views: Mapping[str, Any]) -> Response:
    """204 for an `OPTIONS` request: the methods of `path` and what a browser may send."""
    methods = ", ".join(path_methods(adapter, path, views))
    response = Response(status=204)
    del response.headers["Content-Type"]  # no body
    response.headers["Allow"] = methods
    response.headers["Access-Control-Allow-Methods"] = methods
    response.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response
