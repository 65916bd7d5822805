"""Errors of the document store; the web layer turns each into its envelope in one place."""
from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base of every error the document store raises."""


class ValidationFailed(StoreError):
    """One or more fields broke a rule: `errors` is `{dotted.path: {rule: {message, ...}}}`."""

    def __init__(self, errors: dict[str, dict[str, dict[str, Any]]]):
        super().__init__("invalid request")
        self.errors = errors

    @classmethod
    def single(cls, path: str, rule: str, message: str, **extra: Any) -> ValidationFailed:
        return cls({path: {rule: {"message": message, **extra}}})


class NotFound(StoreError):
    """No document with that id (in that account)."""

    def __init__(self, ident: str):
        super().__init__(f"bad identifier {ident}")
        self.ident = ident


class Conflict(StoreError):
    """Another writer changed the document between our read and our write."""


class IdInUse(Conflict):
    """A create asked for an id (`data.id`) that a document already has."""

    def __init__(self, ident: str):
        super().__init__(f"id {ident} is in use")
        self.ident = ident


class StaleRevision(StoreError):
    """The client's If-Match names a revision that is no longer current."""

    def __init__(self, current: str):
        super().__init__("revision mismatch")
        self.current = current


class InvalidCredentials(StoreError):
    """No account/user matches the credentials or token."""
