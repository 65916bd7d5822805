"""The XML documents the `mod_xml_curl` directory binding answers with (pure functions).

The shapes follow what worked on a real FreeSWITCH (`freeswitch/xml_curl/response_*.xml`):
an `a1-hash` (never an empty credential) and the static presence id inside the dial-string, so
that calls to the device show on BLF from the first ring.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from xml.sax.saxutils import quoteattr as _quoteattr

NOT_FOUND = ('<document type="freeswitch/xml"><section name="result">'
             '<result status="not found"/></section></document>')

#: the vanilla dial-string's legs and its shared variables, the device's own added after them
CONTACTS = "${sofia_contact(*/${dialed_user}@${dialed_domain})}"
INVITE_DOMAIN = "sip_invite_domain=${dialed_domain}"


# What `quoteattr` changes: without any of these a value is only put in double quotes.
_ESCAPED = re.compile(r'[&<>"\n\r\t]')


def quoteattr(value: str) -> str:
    """`xml.sax.saxutils.quoteattr`, quicker for the usual value that needs no escaping."""
    return f'"{value}"' if _ESCAPED.search(value) is None else _quoteattr(value)


def dial_string(presence_id: str) -> str:
    """The vanilla sofia dial-string carrying `presence_id` (validated: no `:`, `}` or `$`)."""
    return f"{{^^:{INVITE_DOMAIN}:presence_id={presence_id}}}{CONTACTS}"


FORWARD_VARIABLES = ("execute_on_originate=set presence_id={presence_id}"
                     ":esl_bridge_forwarded_for={presence_id}")


def forward_dial_string(presence_id: str, number: str, context: str, ring_phone: bool) -> str:
    """The dial-string of a call-forwarded device: the number, through the dialplan of
    `context` (`loopback/`, so the outbound routes apply); the phone itself too when
    `ring_phone`. Values validated by the caller (digits and a leading `+`; a context of
    letters, digits and `._-`).

    The presence id is set by each leg's own `execute_on_originate`, not as a `{}` variable:
    mod_loopback copies a leg's `{}`/`[]` variables to its b-leg, so a `presence_id` there put
    the call on two loopback legs and a BLF watcher saw two dialogs (recorded). Set on the
    a-leg after that copy, it is on the a-leg alone, which rings, answers and hangs up with the
    forwarded call. `esl_bridge_forwarded_for` tells the b-leg's dialplan not to add the id to
    the outgoing call again."""
    forward = f"loopback/{number}/{context}"
    variables = FORWARD_VARIABLES.format(presence_id=presence_id)
    if not ring_phone:
        return f"{{^^:{variables}}}{forward}"
    return f"{{^^:{INVITE_DOMAIN}:{variables}}}{CONTACTS},{forward}"


def user_document(*, realm: str, user: str, a1_hash: str, dial: str,
                  variables: Iterable[tuple[str, str]]) -> str:
    """A directory document with one user; every value is XML-escaped."""
    variable_lines = "".join(
        f"\n                <variable name={quoteattr(name)} value={quoteattr(value)}/>"
        for name, value in variables)
    return f"""<document type="freeswitch/xml">
  <section name="directory">
    <domain name={quoteattr(realm)}>
      <groups>
        <group name="default">
          <users>
            <user id={quoteattr(user)}>
              <params>
                <param name="a1-hash" value={quoteattr(a1_hash)}/>
                <param name="dial-string" value={quoteattr(dial)}/>
              </params>
              <variables>{variable_lines}
              </variables>
            </user>
          </users>
        </group>
      </groups>
    </domain>
  </section>
</document>
"""
