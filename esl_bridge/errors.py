"""The exceptions esl_bridge raises, as one small tree.

::

    EslError                          anything esl_bridge raises on purpose
    ├── FreeSwitchUnavailable         FreeSWITCH cannot answer now (the web maps it to 503)
    │   ├── NotConnected              no live connection to the node (or to any node)
    │   ├── ConnectionLost            the connection died while the command was in flight
    │   ├── AuthFailed                the event socket refused the password (or the ACL refused us)
    │   └── FreeSwitchTimeout         something took longer than its timeout
    │       ├── ConnectTimeout        TCP connect or the auth exchange
    │       ├── CommandTimeout        a command got no reply in time (or no connection)
    │       │   └── ReplyTimeout      it was written: FreeSWITCH may have run it anyway
    │       └── JobTimeout            a bgapi job's BACKGROUND_JOB did not arrive in time
    ├── CommandError                  FreeSWITCH answered a command with -ERR
    ├── JobFailed                     a job finished with -ERR <cause> (JobResult.raise_for_cause)
    ├── ProtocolError                 bytes that are not an ESL frame (the connection is dropped)
    └── UnsafeValue (also ValueError) a value refused by the quoting gate, before any I/O

Every ``FreeSwitchUnavailable`` carries ``.node`` (the node name ``host:port``, or ``None`` when no
node at all could be used) so that the web layer can put it in the 503 envelope.
"""
from __future__ import annotations

from typing import Any


class EslError(Exception):
    """Base class of every exception esl_bridge raises on purpose."""


class FreeSwitchUnavailable(EslError):
    """FreeSWITCH cannot serve the request now: down, unreachable, refusing us or too slow.

    ``node`` names the node (``host:port``) or is ``None`` when no node could be used at all.
    """

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.message = message

    def __str__(self) -> str:
        if self.node:
            return f"{self.message} (node {self.node})"
        return self.message


class NotConnected(FreeSwitchUnavailable):
    """No live connection: the node is down or still reconnecting, or no node is up at all."""


class ConnectionLost(FreeSwitchUnavailable):
    """The connection closed (killed, restart, disconnect notice) before the reply arrived.

    The command may have been written and run. From ``EslPool.bgapi``, ``job`` is its ``Job``,
    still registered, as for ``ReplyTimeout``."""

    job: Any = None


class AuthFailed(FreeSwitchUnavailable):
    """The event socket refused our password (``-ERR invalid``) or its ACL rejected us."""


class FreeSwitchTimeout(FreeSwitchUnavailable):
    """Something FreeSWITCH was asked took longer than its timeout."""


class ConnectTimeout(FreeSwitchTimeout):
    """The TCP connect or the auth exchange did not finish within the connect timeout."""


class CommandTimeout(FreeSwitchTimeout):
    """A command got no reply within its timeout; the connection it used has been closed."""


class ReplyTimeout(CommandTimeout):
    """The command was written but its reply did not come in time, so FreeSWITCH may have run
    it all the same (a ``CommandTimeout`` that is not one means it was never sent). From
    ``EslPool.bgapi``, ``job`` is its ``Job``, still registered: a job FreeSWITCH started
    anyway reports there."""

    job: Any = None


class JobTimeout(FreeSwitchTimeout):
    """A ``bgapi`` job was accepted but its ``BACKGROUND_JOB`` did not arrive in time."""


class CommandError(EslError):
    """FreeSWITCH answered a command with ``-ERR ...`` (``reply`` holds the text)."""

    def __init__(self, message: str, node: str | None = None, reply: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.reply = reply


class JobFailed(EslError):
    """A job finished with ``-ERR <cause>``; ``cause`` is e.g. ``USER_NOT_REGISTERED``."""

    def __init__(self, cause: str | None, body: str, node: str | None = None) -> None:
        super().__init__(f"job failed: {cause or body.strip() or 'no result'}")
        self.cause = cause
        self.body = body
        self.node = node


class ProtocolError(EslError):
    """Bytes that cannot be an ESL frame; the stream is out of step and the connection is dropped."""


class UnsafeValue(EslError, ValueError):
    """A value that could break out of its place in an ESL command, refused before any I/O.

    ``field`` names the value (``cid_name``, ``user``...), ``rule`` says which rule refused it in
    Kazoo's vocabulary (``type``, ``minLength``, ``maxLength``, ``forbidden``, ``pattern``,
    ``enum``), ``message`` says why in words.
    """

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = rule
        self.message = message


__all__ = [
    "AuthFailed",
    "CommandError",
    "CommandTimeout",
    "ConnectTimeout",
    "ConnectionLost",
    "EslError",
    "FreeSwitchTimeout",
    "FreeSwitchUnavailable",
    "JobFailed",
    "JobTimeout",
    "NotConnected",
    "ProtocolError",
    "ReplyTimeout",
    "UnsafeValue",
]
