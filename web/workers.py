"""`esl-bridge serve`: a master process that binds the port(s) and keeps ``workers`` gevent
worker processes serving them, on gunicorn's arbiter (used through its Python API).

- The master opens no database connection and no FreeSWITCH connection that a worker inherits:
  it creates the schema, closes the connection, then forks. Each worker connects the database,
  starts its own ESL pool and builds the app after the fork (`web.server.build_app`).
- A worker that dies is replaced. SIGTERM (and SIGINT) to the master: every worker stops
  accepting, closes its idle connections, finishes the requests in flight (at most
  ``STOP_GRACE_SECONDS``), its side effects, then its ESL pool. SIGHUP: new workers start (TLS
  certificate and key read again), then the old ones stop the same way. SIGTTIN / SIGTTOU add or
  remove a worker (gunicorn's signals).
- With several workers, prometheus_client's multiprocess mode adds up `/metrics` over all of
  them (`web.metrics`, `web.pool_metrics`).
"""
from __future__ import annotations

import logging
from typing import Any

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.workers.ggevent import GeventPyWSGIWorker

from web.config import Settings
from web.http_server import Limits, check_open_files, raise_open_files_limit
from web.metrics import multiprocess_dir
from web.server import STOP_GRACE_SECONDS, build_app, stop_app, wsgi_server

log = logging.getLogger(__name__)

#: See `BridgeWSGIServer.accept_pause`: 0.2 ms per open connection, 2 ms at most.
ACCEPT_PAUSE_PER_CONNECTION = 0.0002
#: Seconds a worker may stay silent (its loop blocked) before the master replaces it.
WORKER_SILENCE_SECONDS = 30
#: Seconds the master gives a stopping worker before killing it: its requests in flight
#: (`STOP_GRACE_SECONDS`), then its side effects (as long again), and a margin. The unit's
#: TimeoutStopSec (30 s) is above it.
STOP_SECONDS = int(2 * STOP_GRACE_SECONDS) + 5


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _make_server(listener: Any, application: Any, spawn: Any, **_gunicorn: Any) -> Any:
    """gunicorn's server factory for one listening socket: the port says HTTP or HTTPS.

    gunicorn's own arguments (handler class, environ, log, TLS of every socket) give way to
    esl-bridge's: the same server, handler and logs as a single process runs.
    """
    settings: Settings = application.extensions["esl_bridge"].settings
    tls = settings.tls_enabled and listener.getsockname()[1] == settings.https_port
    server = wsgi_server(listener, application, settings, tls=tls, spawn=spawn)
    if settings.workers > 1:
        # One connection per turn of the loop, and a pause that grows with this worker's
        # connections, so that every worker takes its share.
        server.max_accept = 1
        server.accept_pause = ACCEPT_PAUSE_PER_CONNECTION
    return server


class BridgeWorker(GeventPyWSGIWorker):
    """gunicorn's gevent worker serving esl-bridge's own server on each socket."""

    server_class = staticmethod(_make_server)

    def init_process(self) -> None:
        # The master waits `STOP_SECONDS`; here the requests in flight get their share only, so
        # that the side effects of the last writes still have theirs before the master's kill.
        self.cfg.set("graceful_timeout", int(STOP_GRACE_SECONDS))
        super().init_process()

    def run(self) -> None:
        try:
            super().run()
        finally:
            stop_app(self.wsgi, STOP_GRACE_SECONDS)


class _Log(glogging.Logger):
    """gunicorn's messages through the root logger, formatted like every other line."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in list(self.error_log.handlers):
            self.error_log.removeHandler(handler)
        self.error_log.propagate = True


class _Arbiter(Arbiter):
    """gunicorn's arbiter without its SIGUSR2 (a second master started beside this one): the
    workers of one master share what tells them of each other's writes
    (`models.document_cache`), and a second master's would not. SIGHUP reloads instead."""

    def handle_usr2(self) -> None:
        self.log.warning("SIGUSR2 ignored: send SIGHUP to reload the workers")


class BridgeApplication(BaseApplication):
    """The master's view of esl-bridge: settings in, one app per worker out."""

    def __init__(self, settings: Settings, metrics_dir: str | None):
        self.settings = settings
        self.metrics_dir = metrics_dir
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        binds = [_address(s.bind, s.http_port)]
        if s.tls_enabled:
            binds.append(_address(s.bind, s.https_port))
        for name, value in {
            "bind": binds, "workers": s.workers, "worker_class": BridgeWorker,
            "worker_connections": s.max_connections, "graceful_timeout": STOP_SECONDS,
            "timeout": WORKER_SILENCE_SECONDS, "proc_name": "esl-bridge", "logger_class": _Log,
            "loglevel": s.log_level, "accesslog": None, "control_socket_disable": True,
            "child_exit": self._worker_ended,
        }.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        # In the worker, after the fork.
        return build_app(self.settings)

    def run(self) -> None:
        try:
            _Arbiter(self).run()
        except RuntimeError as exc:  # what gunicorn's own run reports so (a port in use...)
            log.error("esl-bridge serve: %s", exc)
            raise SystemExit(1) from exc

    def _worker_ended(self, arbiter: Any, worker: Any) -> None:
        if self.metrics_dir:
            from prometheus_client import multiprocess

            from web.pool_metrics import worker_ended

            multiprocess.mark_process_dead(worker.pid, self.metrics_dir)
            worker_ended(self.metrics_dir, worker.pid)


def run(settings: Settings) -> None:
    """The master: until SIGINT or SIGTERM, ``settings.workers`` workers on the port(s).

    ``PROMETHEUS_MULTIPROC_DIR`` must be set before this module is imported
    (`web.multiprocess`, which the command line uses).
    """
    from models import document_cache, schema

    raise_open_files_limit()
    check_open_files(Limits.of(settings), 2 if settings.tls_enabled else 1)
    database = schema.connect(settings.database_url)  # creates the schema once, before any worker
    database.close_all()
    document_cache.share_between_processes()  # the workers forked next see each other's writes
    BridgeApplication(settings, multiprocess_dir()).run()
