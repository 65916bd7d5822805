"""The QuickCall the ESL-level tests place: phones of realm acme.test, number 9196 in context
default, and the channel variables an API request would give."""
from __future__ import annotations

from typing import Any

from esl_bridge import actions

REALM = "acme.test"
THREE_PHONES = [("2001", REALM), ("2002", REALM), ("2003", REALM)]
VARS = {"esl_bridge_account_id": "fedcba9876543210fedcba9876543210",
        "esl_bridge_device_id": "0123456789abcdef0123456789abcdef",
        "esl_bridge_request_id": "req-1"}


def quickcall(pool: Any, user: str = "2001", **kwargs: Any) -> Any:
    """`actions.quickcall` from phone `user` to 9196, any argument overridable."""
    values: dict[str, Any] = dict(endpoints=[(user, REALM)], number="9196", context="default",
                                  cid_name="Bars Test", cid_number="15551112222", timeout=30,
                                  variables=VARS)
    values.update(kwargs)
    return actions.quickcall(pool, **values)
