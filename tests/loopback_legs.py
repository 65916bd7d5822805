"""Which channel variables each leg of a ``user/`` call gets when its dial-string dials
``loopback/<number>/<context>``, by the rules of FreeSWITCH 1.10's source.

The recording of such a call (esl3/151-156) showed both loopback legs carrying the dial-string's
``presence_id``, so a BLF watcher saw two dialogs per call. The source says why:

1. ``switch_ivr_originate`` reads the dial-string's ``{...}`` and the leg's ``[...]`` into one
   event (``originate_var_event``) and hands it to the endpoint
   (``switch_core_session_outgoing_channel``).
2. mod_loopback's ``channel_outgoing_channel`` creates the a-leg and keeps a copy of that event
   (``switch_event_dup(&clone, var_event)``, the private ``__loopback_vars__``).
3. Back in ``switch_ivr_originate``, the event's variables are set on the a-leg, then its
   ``execute_on_originate`` runs on the a-leg (``switch_channel_execute_on``), all before the
   a-leg's thread starts.
4. The a-leg's ``channel_on_init`` creates the b-leg and sets on it every variable of the copy,
   then the a-leg's variables named in ``loopback_export``. Nothing else reaches the b-leg.

So a variable in ``{...}`` or ``[...]`` reaches both legs, and one set by the a-leg's own
``execute_on_originate`` reaches the a-leg only (the copy was taken before it ran). A BLF watcher
sees a dialog for each leg whose ``presence_id`` it watches (``switch_channel_perform_presence``
sends nothing for a channel without one).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class LoopbackCall:
    """The variables of the two legs, by name."""

    a_leg: dict[str, str] = field(default_factory=dict)
    b_leg: dict[str, str] = field(default_factory=dict)

    def with_presence(self, presence_id: str) -> list[str]:
        """The legs a BLF watcher of ``presence_id`` sees a dialog for."""
        return [name for name, leg in (("a", self.a_leg), ("b", self.b_leg))
                if leg.get("presence_id") == presence_id]


def variable_block(text: str) -> tuple[dict[str, str], str]:
    """A leading ``{...}`` or ``[...]`` (``,`` or a ``^^X`` separator) and the text after it."""
    if not text or text[0] not in "{[":
        return {}, text
    end = text.index("}" if text[0] == "{" else "]")
    body, rest = text[1:end], text[end + 1:]
    separator = ","
    if body.startswith("^^"):
        separator, body = body[2], body[3:]
    variables = {}
    for item in body.split(separator):
        name, _, value = item.partition("=")
        variables[name] = value
    return variables, rest


def expand(dial_string: str, user: str, domain: str) -> str:
    """The dial-string as mod_dptools's user endpoint hands it to ``switch_ivr_originate``:
    ``${dialed_user}``, ``${dialed_domain}`` and ``${sofia_contact(...)}`` expanded first (the
    registered phone's contact stands for the last)."""
    text = dial_string.replace("${dialed_user}", user).replace("${dialed_domain}", domain)
    return re.sub(r"\$\{sofia_contact\([^)]*\)\}",
                  f"sofia/internal/sip:{user}@127.0.0.1:5070", text)


def dial_loopback(dial_string: str, originate_vars: dict[str, str] | None = None, *,
                  user: str = "2001", domain: str = "acme.test") -> LoopbackCall:
    """The loopback legs of ``dial_string`` (a user's dial-string: its ``loopback/`` leg, after
    a ``{...}`` shared by every leg and its own ``[...]``), dialled by an originate or bridge to
    ``user/<user>@<domain>`` whose own variables are ``originate_vars``."""
    global_vars, rest = variable_block(expand(dial_string, user, domain))
    legs = [variable_block(leg) for leg in rest.split(",")]
    found = [(own, target) for own, target in legs if target.startswith("loopback/")]
    if len(found) != 1 or not re.match(r"loopback/[^/,]+/[^/,]+$", found[0][1]):
        raise ValueError(f"not one loopback leg: {rest!r}")
    leg_vars = found[0][0]
    event = {**(originate_vars or {}), **global_vars, **leg_vars}  # step 1
    copy = dict(event)  # step 2
    call = LoopbackCall(a_leg=dict(event))  # step 3: the variables...
    action = event.get("execute_on_originate", "")  # ...then its execute_on_originate
    app, _, data = action.partition(" ")
    if app == "set":
        name, _, value = data.partition("=")
        call.a_leg[name] = value
    call.b_leg = dict(copy)  # step 4
    for name in filter(None, event.get("loopback_export", "").split(",")):
        if name in call.a_leg:
            call.b_leg[name] = call.a_leg[name]
    return call
