"""`GET /health` and `GET /metrics` (SPEC §8)."""
from __future__ import annotations

import logging
import os
from typing import Any

from flask import Blueprint, Response

from models.db import database
from web.envelope import failure, success
from web.errors import ErrorReply
from web.metrics import CONTENT_TYPE
from web.resource import runtime

log = logging.getLogger(__name__)


def blueprint() -> Blueprint:
    bp = Blueprint("ops", __name__)
    bp.add_url_rule("/health", view_func=health, methods=["GET"])
    bp.add_url_rule("/metrics", view_func=metrics, methods=["GET"])
    return bp


def _database_health() -> dict[str, Any]:
    try:
        database.execute_sql("SELECT 1").fetchone()
        return {"ok": True}
    except Exception as exc:
        log.warning("health: database check failed: %s", exc)
        return {"ok": False, "error": str(exc)}


def health() -> Response:
    """The database and every FreeSWITCH node; 503 when the database is down.

    FreeSWITCH being down does not make esl-bridge unhealthy: documents are still served.
    """
    pool = runtime().pool
    nodes = pool.health() if pool is not None else {}
    db = _database_health()
    data = {
        "database": db,
        "freeswitch": nodes,
        "freeswitch_connected": any(n.get("connected") for n in nodes.values()),
        # Each worker answers for itself (its own ESL pool): say which one did.
        "worker": {"pid": os.getpid(), "workers": runtime().settings.workers},
    }
    # PostgreSQL: are this worker's caches on (docs/operations.md)
    for name, cache in (("token_cache", runtime().token_cache), ("document_cache", runtime().document_cache)):
        if cache is not None:
            data[name] = {"listening": cache.listening, "entries": len(cache)}
    if not db["ok"]:
        return failure(ErrorReply(503, "database_unavailable", data))
    return success(data)


def metrics() -> Response:
    """Every figure in the Prometheus text format: with several workers, all workers' (see
    `web.metrics` and `web.pool_metrics`)."""
    return Response(runtime().metrics.render(), content_type=CONTENT_TYPE)
