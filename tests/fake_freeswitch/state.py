"""What the test FreeSWITCH holds: registrations, call legs and configured faults."""
from __future__ import annotations

from dataclasses import dataclass, field

import gevent.event


@dataclass
class FakeRegistration:
    """One registration held by the fake (see ``FakeFreeSwitch.register``)."""

    user: str
    realm: str
    profile: str = "internal"
    network_ip: str = "127.0.0.1"
    network_port: int = 5070
    call_id: str = ""
    user_agent: str = ""
    contact: str = ""
    presence_id: str = ""
    expires: int = 3600
    context: str = "default"
    variables: dict[str, str] = field(default_factory=dict)
    registered_at: float = 0.0

    def directory_variables(self) -> list[tuple[str, str]]:
        """The directory user's variables in the directory's order; ``user_context`` first
        unless ``variables`` places it (the vanilla directory has it mid-list, esl/11)."""
        if "user_context" in self.variables:
            return list(self.variables.items())
        return [("user_context", self.context), *self.variables.items()]

    def matches(self, user: str | None, realm: str) -> bool:
        return (self.realm.lower() == realm.lower()
                and (user is None or self.user.lower() == user.lower()))


@dataclass
class FakeChannel:
    """A call leg created by originate."""

    uuid: str
    user: str
    realm: str
    registration: FakeRegistration
    #: the leg's variables from the originate: its own ``[...]``, then the ``{...}`` ones it
    #: shares with the other legs (a name in both keeps the ``[...]`` value), as FreeSWITCH
    #: installs them on the channel
    variables: list[tuple[str, str]]
    context: str
    #: one of several legs of one originate: mod_dptools's user endpoint then dials it without
    #: blocking, and its variables arrive in another order (esl3/145)
    forked: bool = False
    #: what an answered leg runs: ``exten XML context`` or ``&app(args)``
    target: str = ""
    created_us: int = 0
    answered_us: int = 0
    job_uuid: str = ""
    answered: bool = False
    #: set to the cause when the leg is hung up while it rings (uuid_kill, hupall)
    ended: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)


@dataclass
class Fault:
    kind: str  # slow | hang | drop | close
    prefix: str
    seconds: float = 0.0
    times: int | None = None


