"""Small pieces every resource module uses: listing arguments, If-Match, document replies."""
from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from flask import Blueprint, Request, Response, current_app, g, request
from werkzeug.exceptions import MethodNotAllowed

from esl_bridge import commands
from esl_bridge.errors import FreeSwitchUnavailable, UnsafeValue
from models.db import database
from models.documents import Document
from models.pages import ListQuery, Page
from models.validation import Errors, add_error
from web.envelope import success, success_encoded


def _query_args() -> dict[str, str]:
    """The query string's arguments, the first value of each (as `request.args.items()`).

    The usual listing query (`page_size=50&start_key=<id>`: ASCII, nothing escaped) is split
    here as `parse_qsl` splits it, without building werkzeug's MultiDict; anything else goes
    through werkzeug.
    """
    text = request.environ.get("QUERY_STRING", "")
    if "%" in text or "+" in text or not text.isascii():
        return dict(request.args.items())
    args: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            name, _, value = part.partition("=")
            args.setdefault(name, value)
    return args


def listing_query() -> ListQuery:
    """Pagination and filters from the query string; v1 listings are never paginated."""
    args = _query_args()
    args.pop("auth_token", None)
    query = ListQuery.from_args(args)
    if g.get("api_version") == "v1":
        # Not paginated means the whole listing: a start_key would cut it short unannounced.
        query.paginate = False
        query.start_key = None
    return query


def if_match() -> Container[str] | None:
    """The revisions `If-Match` accepts, or None when the request has no `If-Match`.

    werkzeug parses the header: quoted or bare tags, lists, `*`. A weak tag (`W/"..."`) never
    matches: RFC 9110 has `If-Match` compare strongly, and a revision names exact content.
    """
    if "HTTP_IF_MATCH" not in request.environ:
        return None
    return request.if_match


def document_reply(document: Document, status: int = 200, public: Callable[[Document], Any] | None = None) -> Response:
    if public is None:
        return success_encoded(document.public_encoded(), status=status, revision=document.revision)
    return success(public(document), status=status, revision=document.revision)


def page_reply(page: Page) -> Response:
    return success_encoded(page.encoded(), page=page)


def runtime() -> Any:
    """The process-wide runtime (settings, ESL pool, caches, metrics) of the running app."""
    return current_app.extensions["esl_bridge"]


def freeswitch_pool() -> Any:
    """The running ESL pool; 503 when esl-bridge was started without FreeSWITCH.

    The request's database connection goes back to the connection pool first (a later query
    takes one again): FreeSWITCH may keep the request waiting up to a command timeout, and a
    POST QuickCall as long as the phone rings. Held meanwhile, the connections run out once
    enough requests wait, and every other request (FreeSWITCH's directory lookups too) waits
    for one, then fails.
    """
    found = runtime().pool
    if found is None:
        raise FreeSwitchUnavailable("no FreeSWITCH node is configured")
    if not database.in_transaction():
        database.close()
    return found


def gate(value: str, kind: str, field: str, errors: Errors) -> str | None:
    """Check a value with the ESL quoting gate itself, reporting a refusal as ``field``."""
    try:
        commands.safe(value, kind, field)
        return value
    except UnsafeValue as exc:
        rule = "pattern" if exc.rule == "forbidden" else exc.rule
        add_error(errors, field, rule, exc.message)
        return None


def route(bp: Blueprint, rule: str, methods: list[str]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`bp.route` with the rule under `/accounts/<account_id>` when it starts with `@`."""
    if rule.startswith("@"):
        rule = "/accounts/<account_id>" + rule[1:]
    return bp.route(rule, methods=methods)


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that runs without a token (it authenticates the caller itself)."""
    view.esl_public = True  # type: ignore[attr-defined]
    return view


def acts(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that acts (on FreeSWITCH) even when called with GET: a HEAD, which werkzeug
    routes to every GET view, must never reach it (`refuse_head`)."""
    view.esl_acts = True  # type: ignore[attr-defined]
    return view


def refuse_head(req: Request, view: Any) -> None:
    """405 for HEAD on a view marked with `acts`: answering it would mean acting."""
    if req.method == "HEAD" and getattr(view, "esl_acts", False) and req.url_rule is not None:
        raise MethodNotAllowed(valid_methods=sorted((req.url_rule.methods or set()) - {"HEAD"}))
