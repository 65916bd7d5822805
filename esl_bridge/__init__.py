"""esl_bridge: everything about talking to FreeSWITCH over its event socket (ESL).

Connections (greenswitch, made safe: ``connection``; the event connection, ``event_connection``;
command connections carrying several commands at once, ``command_connection``), a node's address
(``address``) and how callers get one of its connections (``node``), the greenlets that keep
connections open and reconnect (``slots``), events, registration refreshes and job expiry
(``upkeep``), the pool over all nodes with health and metrics (``pool``), background jobs
(``jobs``), the exact command texts (``commands``) and the one
quoting gate they use (``quoting``), registrations (``registrations``), and the actions in
FreeSWITCH terms (``actions``). It imports nothing of the web or the models: inputs are plain
values.

::

    from esl_bridge import Node, EslPool, errors, actions
    pool = EslPool([Node.parse("127.0.0.1:8021:ClueCon")], pool_size=4, command_timeout=5.0)
    pool.start()
    call = actions.quickcall(pool, endpoints=[("2001", "acme.test")], number="9196",
                             context="default", cid_name="Bars Test", cid_number="15551112222")
    result = call.wait()          # JobResult(ok=..., cause=..., body=...)
"""
from . import actions, commands, errors
from .actions import QuickCall
from .errors import EslError, FreeSwitchUnavailable, UnsafeValue
from .jobs import Job, JobResult
from .pool import PIPELINE_DEPTH, EslPool, Node
from .registrations import Registration

__all__ = [
    "EslError",
    "EslPool",
    "FreeSwitchUnavailable",
    "Job",
    "JobResult",
    "Node",
    "PIPELINE_DEPTH",
    "QuickCall",
    "Registration",
    "UnsafeValue",
    "actions",
    "commands",
    "errors",
]
