"""The HTTP(S) servers on gevent's WSGI server, the ESL pool, and a clean stop."""
from __future__ import annotations

import json
import logging
import signal
import socket
import uuid
from typing import Any

import gevent
from gevent.event import Event
from gevent.pywsgi import WSGIHandler, WSGIServer

from models import db
from web.app import create_app
from web.config import Settings

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 10.0


#: The requests gevent refuses before the app sees them, as the app words its errors.
_REFUSED_BY_SERVER = {"414": "request URI too long", "400": "malformed HTTP request"}


def refused_response(code: str) -> bytes:
    """A whole HTTP response with the Kazoo error envelope (and a request id) for a request
    gevent's server refused before reading it (over-long request line, bad headers)."""
    rid = uuid.uuid4().hex
    body = json.dumps({"auth_token": "undefined", "status": "error", "request_id": rid,
                       "error": code, "message": _REFUSED_BY_SERVER[code], "data": {}},
                      separators=(",", ":")).encode()
    reason = {"414": "Request URI Too Long", "400": "Bad Request"}[code]
    return (f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nX-Request-ID: {rid}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class EnvelopeHandler(WSGIHandler):
    """gevent's handler, with the app's error envelope on the requests it refuses itself."""

    def handle_one_request(self) -> Any:
        result = super().handle_one_request()
        if isinstance(result, tuple) and result[0] in _REFUSED_BY_SERVER:
            return result[0], refused_response(result[0])
        return result


class NoDelayWSGIServer(WSGIServer):
    """gevent's WSGI server with Nagle's algorithm off on every connection.

    pywsgi writes a response's headers and body separately; on a keep-alive connection Nagle
    holds the body back until the client's delayed ACK (about 40 ms per request).
    """

    handler_class = EnvelopeHandler

    def handle(self, sock: Any, address: Any) -> Any:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a UNIX socket in tests): nothing to tune
        return super().handle(sock, address)


def start_pool(settings: Settings) -> Any:
    """Start the FreeSWITCH pool in the background; it connects (and reconnects) by itself."""
    from esl_bridge import EslPool, Node

    nodes = [Node.parse(spec) for spec in settings.freeswitch]
    pool = EslPool(nodes, pool_size=settings.pool_size, command_timeout=settings.command_timeout,
                   sofia_profiles=settings.sofia_profile)
    pool.start()
    return pool


class BridgeServer:
    """esl-bridge's servers in this process: HTTP always, HTTPS when TLS is configured."""

    def __init__(self, settings: Settings, *, pool: Any = None, start_freeswitch: bool = True):
        self.settings = settings
        db.connect(settings.database_url)
        self.pool = pool if pool is not None or not start_freeswitch else start_pool(settings)
        self.app = create_app(settings, pool=self.pool)
        access_log = logging.getLogger("esl_bridge.access") if settings.log_level == "debug" else None
        error_log = logging.getLogger("esl_bridge.wsgi")
        self.servers = [NoDelayWSGIServer((settings.bind, settings.http_port), self.app,
                                   log=access_log, error_log=error_log)]
        if settings.tls_enabled:
            self.servers.append(NoDelayWSGIServer((settings.bind, settings.https_port), self.app,
                                           log=access_log, error_log=error_log,
                                           certfile=settings.tls_cert, keyfile=settings.tls_key))

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
        self.runtime.side_effects.join(timeout=grace)
        self.runtime.side_effects.kill()
        if self.runtime.publisher is not None:
            self.runtime.publisher.stop()
        if self.pool is not None:
            self.pool.stop()
        log.info("stopped")


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM."""
    server = BridgeServer(settings).start()
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    log.info("signal received, stopping")
    server.stop()
