"""The Flask application: `create_app()` wires resources, the request line and error envelopes."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from models.cache_listener import CacheListener
from models.db import database
from models.document_cache import DocumentCache
from models.errors import ValidationFailed
from models.token_cache import TokenCache
from web import (
    accounts,
    callouts,
    cors,
    devices,
    hotdesks,
    openapi,
    ops,
    presence,
    quickcall,
    registrations,
    representations,
    sync,
    tokens,
    users,
)
from web.auth import AncestryCache, authorize, current_identity
from web.callouts.guard import require_freeswitch
from web.config import Settings
from web.envelope import check_query_string, failure, parse_body, request_id
from web.errors import to_reply
from web.metrics import Metrics, multiprocess_dir
from web.pool_metrics import Publisher
from web.privileges import require_privilege
from web.resource import refuse_head
from web.side_effects import SideEffects
from web.verb_tunnel import TUNNELLED, VerbTunnel, refused_verb

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


@dataclass
class Runtime:
    """What the app shares across requests in one process."""

    settings: Settings
    pool: Any = None
    ancestry: AncestryCache = field(default_factory=AncestryCache)
    metrics: Metrics = field(default_factory=Metrics)
    side_effects: SideEffects = field(init=False)
    cors: cors.CorsPolicy = field(init=False)
    extras: dict[str, Any] = field(default_factory=dict)
    #: With several workers: publishes this worker's ESL figures for the others' scrapes.
    publisher: Publisher | None = None
    #: PostgreSQL: keeps `token_cache` and `document_cache` right (`web.server.build_app`
    #: starts it).
    cache_listener: CacheListener | None = None

    def __post_init__(self) -> None:
        self.side_effects = SideEffects(self.pool)
        shared = multiprocess_dir()
        if self.pool is not None and shared:
            self.publisher = Publisher(self.pool, shared).start()
        self.metrics.watch_pool(self.pool, self.publisher.siblings if self.publisher else None)
        self.cors = cors.CorsPolicy(self.settings.cors_origins)

    @property
    def token_cache(self) -> TokenCache | None:
        """This process's token lookups (PostgreSQL with a listener; None: none kept)."""
        return self.cache_listener.token_cache if self.cache_listener is not None else None

    @property
    def document_cache(self) -> DocumentCache | None:
        """This process's documents read to answer with (PostgreSQL with a listener)."""
        return self.cache_listener.document_cache if self.cache_listener is not None else None


def _api_blueprint() -> Blueprint:
    bp = Blueprint("api", __name__)
    for module in (tokens, accounts, users, devices, hotdesks, quickcall, sync, presence,
                   registrations):
        module.register(bp)
    return bp


def create_app(settings: Settings | None = None, *, pool: Any = None) -> Flask:
    """The WSGI app. The database must already be connected (`models.schema.connect`); `pool` is
    the started `esl_bridge.EslPool`, or None to serve documents without FreeSWITCH."""
    app = Flask("esl_bridge")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    runtime = Runtime(settings or Settings(), pool)
    app.extensions["esl_bridge"] = runtime
    # `//` in a path is no path of ours (404 in the envelope), not a 308 to another one.
    app.url_map.merge_slashes = False

    api = _api_blueprint()
    app.register_blueprint(api, url_prefix="/v1", name="v1")
    app.register_blueprint(api, url_prefix="/v2", name="v2")
    app.register_blueprint(callouts.blueprint())
    app.register_blueprint(ops.blueprint())
    app.register_blueprint(openapi.blueprint())
    app.wsgi_app = VerbTunnel(app.wsgi_app)  # type: ignore[method-assign]

    @app.before_request
    def begin() -> Response | None:
        # The request and g once each: every access through Flask's proxies costs a lookup.
        req = request._get_current_object()  # type: ignore[attr-defined]
        state = g._get_current_object()
        state.started = time.perf_counter()
        request_id()
        blueprint = req.blueprint
        api_version = state.api_version = blueprint if blueprint in ("v1", "v2") else None
        refused = require_freeswitch()  # None unless under /freeswitch/
        if refused is not None:
            return refused
        if req.method == "OPTIONS" and blueprint != "freeswitch":
            # A CORS preflight needs no token (api_util:is_authentic/2); FreeSWITCH's
            # endpoints never answer cross-origin.
            adapter = app.create_url_adapter(req)
            assert adapter is not None  # bound to this request
            return cors.preflight(adapter, req.path, app.view_functions)
        # SPEC §3 order: 405 (and unknown paths), 400 malformed, 401, 403; then the view.
        if req.routing_exception is not None:
            raise req.routing_exception
        view = app.view_functions.get(req.endpoint)
        refuse_head(req, view)
        if api_version is None:
            database.connect(reuse_if_open=True)
            return None
        environ = req.environ
        check_query_string(environ)
        verb = refused_verb(environ)
        if verb is not None:
            raise ValidationFailed.single("verb", "enum", "Value not found in enumerated list of values",
                                          target=list(TUNNELLED))
        if req.method == "GET":
            state.jsonp = representations.jsonp_callback(req, runtime.cors.any_origin)
        state.body = parse_body()
        # Only once the body is in: a client may send it as slowly as the body timeout lets it,
        # and must not hold one of the pool's few connections meanwhile.
        database.connect(reuse_if_open=True)
        api_key = getattr(view, "esl_api_key_in_query", False)
        if getattr(view, "esl_public", False):
            identity = current_identity(required=False, api_key_in_query=api_key)
            if identity is None:
                return None
        else:
            identity = current_identity(api_key_in_query=api_key)
        view_args = req.view_args
        account_id = view_args.get("account_id") if view_args else None
        if account_id is not None:
            authorize(identity, account_id, runtime.ancestry)
            require_privilege(identity, view, account_id, view_args)
        return None

    @app.teardown_request
    def end(exc: BaseException | None) -> None:
        if not database.is_closed():
            database.close()

    @app.after_request
    def cross_origin(response: Response) -> Response:
        """CORS headers on every answer, errors included, except FreeSWITCH's (Flask runs the
        hooks last registered first: this one after `represent`)."""
        environ = request.environ
        if not environ.get("PATH_INFO", "").startswith("/freeswitch"):
            headers = response.headers
            for name, value in runtime.cors.headers(environ.get("HTTP_ORIGIN")):
                headers.add(name, value)
        return response

    @app.after_request
    def represent(response: Response) -> Response:
        """CSV or JSONP instead of the JSON envelope when the client asked for it."""
        state = g._get_current_object()
        if state.get("api_version") is None or request.method != "GET":
            return response
        # The same URL answers JSON or CSV by the Accept header: caches must keep them apart.
        response.vary.add("Accept")
        if response.status_code == 200 and representations.wants_csv(request):
            return representations.csv_response(response, request)
        callback = state.get("jsonp")
        if callback and response.mimetype == "application/json":
            return representations.jsonp_response(response, callback)
        return response

    @app.after_request
    def measure(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            endpoint = request.url_rule.rule if request.url_rule else "unmatched"
            runtime.metrics.observe(request.method, endpoint, response.status_code,
                                    time.perf_counter() - started)
        return response

    @app.errorhandler(Exception)
    def envelope(exc: Exception) -> Response:
        response = failure(to_reply(exc))
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(sorted(exc.valid_methods))
        return response

    # Flask routes HTTPExceptions raised by routing through the same handler.
    app.register_error_handler(HTTPException, envelope)
    return app
