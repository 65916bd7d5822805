"""The address of one FreeSWITCH node's event socket (``Node``), as configured."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Node:
    """One FreeSWITCH event socket: ``host:port:password``. ``name`` is ``host:port``."""

    host: str
    port: int
    password: str = field(repr=False)

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, spec: str) -> Node:
        """Parse ``host:port:password`` (IPv6 hosts in brackets: ``[::1]:8021:ClueCon``).

        The password is everything after the second colon, so it may itself contain colons; it
        may not contain whitespace (it goes on the ``auth`` line).
        """
        text = spec.strip()
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"bad FreeSWITCH node {spec!r}: expected [host]:port:password")
        else:
            host, sep, rest = text.partition(":")
            if not sep:
                raise ValueError(f"bad FreeSWITCH node {spec!r}: expected host:port:password")
        port_text, sep, password = rest.partition(":")
        if not host or not sep or not password:
            raise ValueError(f"bad FreeSWITCH node {spec!r}: expected host:port:password")
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"bad FreeSWITCH node {spec!r}: port must be 1..65535")
        if any(c.isspace() for c in password) or not password.isprintable():
            raise ValueError(f"bad FreeSWITCH node {spec!r}: the password may not contain spaces")
        return cls(host, int(port_text), password)

    @classmethod
    def parse_many(cls, specs: str) -> list[Node]:
        """Parse a comma-separated list of nodes (``ESL_BRIDGE_FREESWITCH``)."""
        nodes = [cls.parse(part) for part in specs.split(",") if part.strip()]
        if not nodes:
            raise ValueError("no FreeSWITCH node given")
        names = [node.name for node in nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"a FreeSWITCH node is listed twice: {specs!r}")
        return nodes

    def __str__(self) -> str:
        return self.name


__all__ = ["Node"]
