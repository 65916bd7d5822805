"""Settings (SPEC §9): every one an `ESL_BRIDGE_*` variable and a flag; the flag wins."""
from __future__ import annotations

import argparse
import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from esl_bridge import PIPELINE_DEPTH, Node
from models import document_cache, token_cache


def _list(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part, strict=False) for part in _list(value))


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _nodes(value: str) -> tuple[str, ...]:
    """FreeSWITCH nodes, each checked as ``host:port:password`` (kept as given)."""
    Node.parse_many(value)
    return _list(value)


def _database_url(value: str) -> str:
    scheme = value.partition("://")[0].lower()
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise ValueError("expected sqlite:///<file> or postgresql://user:pass@host/db")
    return value


_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z|^https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\Z")


def _origins(value: str) -> tuple[str, ...]:
    """Allowed browser origins: `*`, or `scheme://host[:port]` comma-separated (compared as a
    browser sends them in `Origin`: lower case, no path)."""
    origins = tuple(part.lower().rstrip("/") for part in _list(value))
    if not origins:
        raise ValueError("expected * or a comma-separated list of origins")
    for origin in origins:
        if origin != "*" and not _ORIGIN_RE.match(origin):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]) or *")
    return origins


LOG_LEVELS = ("debug", "info", "warning", "error")


def _log_level(value: str) -> str:
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


def _seconds(value: str) -> float:
    number = float(value)
    if not number >= 0:  # NaN too
        raise ValueError("must be 0 or more")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise ValueError("not a port number")
    return number


@dataclass
class Settings:
    """Everything esl-bridge can be told, with SPEC §9's defaults."""

    database_url: str = field(default="sqlite:///esl-bridge.db",
                              metadata={"parse": _database_url, "help": "sqlite:///file.db or postgresql://user:pass@host/db"})
    freeswitch: tuple[str, ...] = field(default=("127.0.0.1:8021:ClueCon",),
                                        metadata={"parse": _nodes, "help": "FreeSWITCH nodes host:port:password, comma-separated"})
    bind: str = field(default="127.0.0.1", metadata={"parse": str, "help": "address to listen on"})
    http_port: int = field(default=8000, metadata={"parse": _port, "help": "HTTP port"})
    https_port: int = field(default=8443, metadata={"parse": _port, "help": "HTTPS port (with a certificate and key)"})
    tls_cert: str | None = field(default=None, metadata={"parse": str, "help": "TLS certificate (PEM)"})
    tls_key: str | None = field(default=None, metadata={"parse": str, "help": "TLS private key (PEM)"})
    pool_size: int = field(default=4, metadata={"parse": _positive_int, "help": "command connections per node"})
    pipeline_depth: int = field(default=PIPELINE_DEPTH,
                                metadata={"parse": _positive_int, "help": "ESL commands in flight per command connection"})
    command_timeout: float = field(default=5.0, metadata={"parse": _positive_float, "help": "seconds an ESL command may take"})
    sofia_profile: tuple[str, ...] = field(default=("internal",),
                                           metadata={"parse": _list, "help": "sofia profiles asked for registrations, comma-separated"})
    freeswitch_secret: str | None = field(default=None, metadata={"parse": str, "help": "shared secret of the /freeswitch/ endpoints"})
    freeswitch_allow: tuple[Any, ...] = field(default=_networks("127.0.0.1/32,::1/128"),
                                              metadata={"parse": _networks, "help": "source networks allowed on /freeswitch/"})
    log_level: str = field(default="info", metadata={"parse": _log_level, "help": "debug, info, warning or error"})
    # Processes and connection limits (docs/operations.md).
    workers: int = field(default=1, metadata={"parse": _positive_int, "help": "worker processes serving the same port(s)"})
    idle_timeout: float = field(default=15.0, metadata={"parse": _positive_float, "help": "seconds a connection may wait for its next request"})
    header_timeout: float = field(default=10.0, metadata={"parse": _positive_float, "help": "seconds to receive a request line and headers"})
    body_timeout: float = field(default=30.0, metadata={"parse": _positive_float, "help": "seconds a request body or response may stall"})
    max_connections: int = field(default=1000, metadata={"parse": _positive_int, "help": "open connections per port and worker"})
    token_cache_seconds: float = field(default=token_cache.TTL_SECONDS, metadata={
        "parse": _seconds, "help": "PostgreSQL: seconds a worker may answer for a token it read, kept right by NOTIFY (0: read every time)"})
    document_cache_seconds: float = field(default=document_cache.TTL_SECONDS, metadata={
        "parse": _seconds, "help": "PostgreSQL: seconds a worker may answer GET device/user from what it read, kept right by NOTIFY (0: read every time)"})
    cors_origins: tuple[str, ...] = field(default=("*",), metadata={
        "parse": _origins, "help": "browser origins allowed to call the API: * or scheme://host[:port], comma-separated"})

    def __post_init__(self) -> None:
        # Programmatic use (tests, embedding) may pass plain strings.
        if isinstance(self.freeswitch_allow, str):
            self.freeswitch_allow = _networks(self.freeswitch_allow)
        self.freeswitch_allow = tuple(
            ipaddress.ip_network(n, strict=False) if isinstance(n, str) else n for n in self.freeswitch_allow)
        for name in ("freeswitch", "sofia_profile"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, _list(getattr(self, name)))
        if isinstance(self.cors_origins, str):
            self.cors_origins = _origins(self.cors_origins)
        if bool(self.tls_cert) != bool(self.tls_key):
            given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            raise SettingsError(f"{given} is set but {missing} is not: HTTPS needs both "
                                f"(ESL_BRIDGE_{missing.upper()} / --{missing.replace('_', '-')})")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> Settings:
        """Defaults, then `ESL_BRIDGE_*` variables, then `overrides` (the flags)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f"ESL_BRIDGE_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, f.metadata["parse"], raw)
        for name, raw in (overrides or {}).items():
            if raw is not None:
                parse = next(f.metadata["parse"] for f in fields(cls) if f.name == name)
                values[name] = _parse(name, parse, raw) if isinstance(raw, str) else raw
        return cls(**values)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert and self.tls_key)


class SettingsError(ValueError):
    """A setting has a value we cannot use."""


def _parse(name: str, parse: Any, raw: str) -> Any:
    try:
        return parse(raw)
    except ValueError as exc:
        raise SettingsError(f"bad value for {name} ({'ESL_BRIDGE_' + name.upper()} / "
                            f"--{name.replace('_', '-')}): {raw!r}: {exc}") from exc


def add_flags(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Add `--<setting>` flags (all settings, or `names`) to an argument parser."""
    for f in fields(Settings):
        if names is not None and f.name not in names:
            continue
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                            help=f"{f.metadata['help']} (ESL_BRIDGE_{f.name.upper()})")


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in fields(Settings) if getattr(args, f.name, None) is not None}
