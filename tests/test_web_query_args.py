"""The listing's own split of the query string gives what werkzeug's `request.args` gives."""
from __future__ import annotations

import random

import pytest
from flask import Flask, request

from models import documents as docs
from models.tables import DocumentTable
from web.resource import _query_args

PIECES = ["page_size", "start_key", "filter_name", "auth_token", "a", "", "=", "&", "%", "%41",
          "%2", "+", "50", "é", "x" * 32, ";", "?", "#", "filter_sip.username"]


def test_query_args_are_werkzeugs():
    app = Flask(__name__)
    rng = random.Random(11)
    strings = ["", "page_size=50&start_key=" + "a" * 32, "a=1&a=2", "a&b=&=c", "&&", "a=%41&b=+"]
    strings += ["".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 10))) for _ in range(5000)]
    for text in strings:
        raw = text.encode().decode("latin-1")  # as a WSGI server hands the query string over
        with app.test_request_context("/", environ_overrides={"QUERY_STRING": raw}):
            ours = _query_args()
            assert ours == dict(request.args.items()), text
            assert list(ours) == list(dict(request.args.items())), text


def test_a_listing_row_must_start_with_its_id():
    """Pages read the next start key out of the rows: a row not starting with its id is refused
    as it is written."""
    class IdLast(DocumentTable):
        listing_row = staticmethod(lambda ident, doc: {"name": doc["name"], "id": ident})

    class IdFirst(DocumentTable):
        listing_row = staticmethod(lambda ident, doc: {"id": ident, "name": doc["name"]})

    with pytest.raises(ValueError, match="must start with its 32-character id"):
        docs.document_columns(IdLast, "a" * 32, {"name": "x"})
    with pytest.raises(ValueError, match="must start with its 32-character id"):
        docs.document_columns(IdFirst, "a" * 31, {"name": "x"})
    listing = docs.document_columns(IdFirst, "a" * 32, {"name": "x"})["listing"]
    assert docs.listing_id(listing) == "a" * 32
