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

DIAL_STRING = ("{{^^:sip_invite_domain=${{dialed_domain}}:presence_id={presence_id}}}"
               "${{sofia_contact(*/${{dialed_user}}@${{dialed_domain}})}}")


# What `quoteattr` changes: without any of these a value is only put in double quotes.
_ESCAPED = re.compile(r'[&<>"\n\r\t]')


def quoteattr(value: str) -> str:
    """`xml.sax.saxutils.quoteattr`, quicker for the usual value that needs no escaping."""
    return f'"{value}"' if _ESCAPED.search(value) is None else _quoteattr(value)


def dial_string(presence_id: str) -> str:
    """The vanilla sofia dial-string carrying `presence_id` (validated: no `:`, `}` or `$`)."""
    return DIAL_STRING.format(presence_id=presence_id)


def forward_dial_string(presence_id: str, number: str, context: str, ring_phone: bool) -> str:
    """The dial-string of a call-forwarded device: the number, through the dialplan of
    `context` (`loopback/`, so the outbound routes apply), with the device's presence id;
    the phone itself too when `ring_phone`. Values validated by the caller (digits and a
    leading `+`; a context of letters, digits and `._-`)."""
    forward = f"loopback/{number}/{context}"
    if not ring_phone:
        return f"{{^^:presence_id={presence_id}}}{forward}"
    return f"{dial_string(presence_id)},{forward}"


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
