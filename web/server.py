"""esl-bridge in one process: the app, its ESL pool and the HTTP(S) servers, and a clean stop.

`esl-bridge serve` runs this in each worker process (`web.workers`); tests and benchmarks run
`BridgeServer` directly.
"""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from models import schema
from models.cache_listener import CacheListener
from web.app import create_app
from web.config import Settings
from web.housekeeping import Housekeeping
from web.http_server import BridgeWSGIServer, Limits

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0


def start_pool(settings: Settings, **options: Any) -> Any:
    """Start the FreeSWITCH pool in the background; it connects (and reconnects) by itself.

    ``options`` go to ``EslPool`` as they are (its finer knobs, which are not settings).
    """
    from esl_bridge import EslPool, Node

    nodes = [Node.parse(spec) for spec in settings.freeswitch]
    pool = EslPool(nodes, pool_size=settings.pool_size, command_timeout=settings.command_timeout,
                   sofia_profiles=settings.sofia_profile, pipeline_depth=settings.pipeline_depth,
                   **options)
    pool.start()
    return pool


def build_app(settings: Settings, *, pool: Any = None, start_freeswitch: bool = True) -> Flask:
    """Connect the database, start the ESL pool (unless given or not wanted), make the app.

    In a worker this runs after the fork: connections and greenlets never cross it.
    """
    database = schema.connect(settings.database_url)
    if pool is None and start_freeswitch:
        pool = start_pool(settings)
    app = create_app(settings, pool=pool)
    runtime = app.extensions["esl_bridge"]
    runtime.cache_listener = CacheListener.for_database(
        database, settings.token_cache_seconds, settings.document_cache_seconds)
    if runtime.cache_listener is not None:
        runtime.cache_listener.start()
    app.extensions["esl_bridge_housekeeping"] = Housekeeping().start()
    return app


def stop_app(app: Flask, grace: float = STOP_GRACE_SECONDS) -> None:
    """Once no request is in flight: finish side effects, then close FreeSWITCH connections."""
    runtime = app.extensions["esl_bridge"]
    housekeeping = app.extensions.pop("esl_bridge_housekeeping", None)
    if housekeeping is not None:
        housekeeping.stop()
    runtime.side_effects.join(timeout=grace)
    runtime.side_effects.kill()
    if runtime.publisher is not None:
        runtime.publisher.stop()
    if runtime.pool is not None:
        runtime.pool.stop()
    if runtime.cache_listener is not None:
        runtime.cache_listener.stop()


def wsgi_server(listener: Any, app: Flask, settings: Settings, *, tls: bool, **kwargs: Any
                ) -> BridgeWSGIServer:
    """The server of one port (HTTPS when ``tls``), with the settings' limits and logs."""
    access_log = logging.getLogger("esl_bridge.access") if settings.log_level == "debug" else None
    tls_files = {"certfile": settings.tls_cert, "keyfile": settings.tls_key} if tls else {}
    return BridgeWSGIServer(listener, app, limits=Limits.of(settings), log=access_log,
                            error_log=logging.getLogger("esl_bridge.wsgi"),
                            cors=app.extensions["esl_bridge"].cors.headers, **tls_files, **kwargs)


class BridgeServer:
    """esl-bridge's servers in this process: HTTP always, HTTPS when TLS is configured."""

    def __init__(self, settings: Settings, *, pool: Any = None, start_freeswitch: bool = True):
        self.settings = settings
        self.app = build_app(settings, pool=pool, start_freeswitch=start_freeswitch)
        self.pool = self.runtime.pool
        self.servers = [wsgi_server((settings.bind, settings.http_port), self.app, settings, tls=False)]
        if settings.tls_enabled:
            self.servers.append(wsgi_server((settings.bind, settings.https_port), self.app, settings,
                                            tls=True))

    @property
    def runtime(self) -> Any:
        return self.app.extensions["esl_bridge"]

    @property
    def http_port(self) -> int:
        return self.servers[0].server_port

    @property
    def https_port(self) -> int | None:
        return self.servers[1].server_port if len(self.servers) > 1 else None

    def start(self) -> BridgeServer:
        for server in self.servers:
            server.start()
            scheme = "https" if server.ssl_enabled else "http"
            log.info("serving %s on %s:%s", scheme, self.settings.bind, server.server_port)
        return self

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting, finish requests in flight, then close FreeSWITCH connections."""
        for server in self.servers:
            server.stop(timeout=grace)
        stop_app(self.app, grace)
        log.info("stopped")
