"""The events of a call leg (CHANNEL_CREATE, _ANSWER, _HANGUP_COMPLETE) and its ``uuid_dump``.

Each is a recorded event with this leg's values put in. The channel variables a real FreeSWITCH
lists depend on how the leg was dialled, and the recordings show the rules followed here:

- one leg (esl2/114, esl3/215): right after ``sip_destination_url``, ``sip_auto_answer``'s
  ``sip_h_Call-Info`` and ``sip_invite_params``, the originate's variables (the leg's ``[...]``,
  then ``{...}``), then ``dialed_user``, ``dialed_domain``, ``sip_invite_domain``, ``presence_id``;
  ``originate_endpoint`` is ``sofia``;
- several legs (esl3/139, 145, 146): mod_dptools dials each without waiting, so the directory's
  part comes first, with the user's variables (``user_context``, …), then the originate's
  variables; ``originate_endpoint`` is ``user``;
- once an answered one-leg originate returns (esl2/118), the user's variables and then the
  originate's are set again, which moves them after ``endpoint_disposition``;
- a leg hung up while it rang has its own event (esl3/129, 134: no media, ``send_cancel``);
- no caller id name: no ``Caller-Caller-ID-Name`` header at all, and the number ``0000000000``
  (esl3/145).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .templates import (
    _RECORDED_ORIGINATE_VARS,
    T_ANSWER,
    T_CREATE,
    T_DUMP,
    T_HANGUP,
    T_HANGUP_RINGING,
)

if TYPE_CHECKING:
    from .state import FakeChannel

_REGION_AFTER = "variable_sip_destination_url"
_REGION_ENDS = ("variable_originate_early_media", "variable_audio_media_flow")
#: where the answered leg's variables were set again (esl2/118)
_RESET_RUN = ("variable_user_context", *_RECORDED_ORIGINATE_VARS, "variable_esl_bridge_call_id")
NO_NUMBER = "0000000000"
#: what an answered QuickCall leg collects by its transfer to ``exten XML context``, and a leg
#: running ``&app`` does not have (esl2/118 against esl/38)
_TRANSFER_ONLY = {"Caller-Dialplan", "Caller-Transfer-Source", "Caller-RDNIS",
                  "variable_max_forwards", "variable_transfer_history",
                  "variable_transfer_source", "variable_open"}


def _replace_region(headers: list[tuple[str, str]], block: list[tuple[str, str]]
                    ) -> list[tuple[str, str]]:
    """The headers with those between ``sip_destination_url`` and the media part replaced."""
    start = next(i for i, (name, _) in enumerate(headers) if name == _REGION_AFTER) + 1
    end = next(i for i in range(start, len(headers)) if headers[i][0] in _REGION_ENDS)
    return headers[:start] + block + headers[end:]


class ChannelEvents:
    """Events and dumps of call legs; mixed into ``FakeFreeSwitch``."""

    def _leg_values(self, channel: FakeChannel, kind: str, cause: str,
                    common: dict[str, str]) -> dict[str, str | None]:
        reg = channel.registration
        variables = dict(channel.variables)
        contact = f"{reg.network_ip}:{reg.network_port}"
        channel_name = f"sofia/{reg.profile}/{reg.user}@{contact}"
        auto = variables.get("sip_auto_answer") == "true"
        presence = reg.presence_id or f"{reg.user}@{reg.realm}"
        cid_name = variables.get("origination_caller_id_name") or None
        cid_number = variables.get("origination_caller_id_number") or NO_NUMBER
        values: dict[str, str | None] = {
            **common,
            "Unique-ID": channel.uuid, "Channel-Call-UUID": channel.uuid,
            "Caller-Unique-ID": channel.uuid, "variable_uuid": channel.uuid,
            "variable_call_uuid": channel.uuid,
            "Channel-Name": channel_name, "Caller-Channel-Name": channel_name,
            "variable_channel_name": channel_name,
            "Channel-Presence-ID": presence, "variable_presence_id": presence,
            "Caller-Caller-ID-Name": cid_name, "Caller-Orig-Caller-ID-Name": cid_name,
            "Caller-Caller-ID-Number": cid_number, "Caller-Orig-Caller-ID-Number": cid_number,
            "Caller-ANI": cid_number,
            "Caller-Callee-ID-Number": reg.user, "Caller-Destination-Number": reg.user,
            "Caller-Context": channel.context,
            "variable_sip_from_host": reg.realm,
            "variable_sip_destination_url": f"sip:{reg.user}@{contact};transport=udp",
            "variable_sip_req_uri": f"{reg.user}@{contact};transport=udp"
                                    + (";intercom=true" if auto else ""),
            "variable_sip_profile_name": reg.profile, "variable_sofia_profile_name": reg.profile,
            "variable_recovery_profile_name": reg.profile,
            "variable_originate_endpoint": "user" if channel.forked else "sofia",
            "variable_originate_early_media":
                "false" if variables.get("ignore_early_media") == "true" else "true",
            "variable_user_context": reg.context,
            "Caller-Profile-Created-Time": str(channel.created_us),
            "Caller-Channel-Created-Time": str(channel.created_us),
            "Caller-Channel-Answered-Time": str(channel.answered_us),
            "Caller-Channel-Progress-Time": str(channel.created_us if kind != "CHANNEL_CREATE"
                                                else 0),
            "Hangup-Cause": cause,
            "variable_hangup_cause": cause,
            # sofia's CANCEL says "Call completed elsewhere" for this cause only (esl3/129, 134)
            "variable_call_completed_elsewhere": "true" if cause == "LOSE_RACE" else None,
            "variable_rtp_use_codec_string": self.codec_prefs,
        }
        if kind == "CHANNEL_CREATE":
            values["variable_sip_to_host"] = contact
        else:
            for name in ("network_port", "reply_port", "to_port", "contact_port"):
                values[f"variable_sip_{name}"] = str(reg.network_port)
            for name in ("network_ip", "reply_host", "to_host", "contact_host"):
                values[f"variable_sip_{name}"] = reg.network_ip
            values["variable_sip_recover_contact"] = f"<sip:{reg.user}@{contact};transport=udp>"
            values["variable_sip_from_user"] = cid_number
            values["variable_sip_from_uri"] = f"{cid_number}@{reg.realm}"
            values["variable_sip_from_display"] = cid_name
            values["variable_sip_to_user"] = values["variable_sip_contact_user"] = reg.user
            values["variable_sip_to_uri"] = f"{reg.user}@{contact}"
            values["variable_sip_contact_uri"] = f"{reg.user}@{contact}"
        if kind == "CHANNEL_HANGUP_COMPLETE":
            values["Caller-Channel-Hangup-Time"] = str(common["Event-Date-Timestamp"])
        return values

    @staticmethod
    def _flipped(channel: FakeChannel, values: dict[str, str | None]) -> None:
        """An answered leg back from originate: FreeSWITCH flipped its caller id (the callee
        is now the originate's caller id) and, for ``exten XML context``, transferred it."""
        reg = channel.registration
        variables = dict(channel.variables)
        cid_name = variables.get("origination_caller_id_name", "")
        cid_number = variables.get("origination_caller_id_number") or NO_NUMBER
        values.update({
            "Caller-Caller-ID-Name": "Outbound Call", "Caller-Caller-ID-Number": reg.user,
            "Caller-Callee-ID-Name": cid_name, "Caller-Callee-ID-Number": cid_number,
            "Caller-RDNIS": reg.user, "variable_pre_transfer_caller_id_name": cid_name,
            "variable_pre_transfer_caller_id_number": cid_number,
            "variable_originate_endpoint": "user",
            "variable_caller_id": f'"Outbound Call" <{reg.user}>'})
        exten, _, rest = channel.target.partition(" ")
        if channel.target.startswith("&"):
            values.update(dict.fromkeys(_TRANSFER_ONLY))
            values["Caller-Profile-Index"] = "1"  # no transfer, no second caller profile
        else:
            values["Caller-Destination-Number"] = exten
            words = rest.split()
            values["Caller-Context"] = words[1] if len(words) > 1 else "default"

    def _leg_variables(self, channel: FakeChannel) -> list[tuple[str, str]]:
        """The block after ``sip_destination_url`` (see the module docstring)."""
        reg = channel.registration
        own = [(f"variable_{name}", value) for name, value in channel.variables]
        auto = [] if dict(channel.variables).get("sip_auto_answer") != "true" else [
            ("variable_sip_h_Call-Info", "<sip:127.0.0.1>;answer-after=0"),
            ("variable_sip_invite_params", "intercom=true")]
        directory = [("variable_dialed_user", reg.user), ("variable_dialed_domain", reg.realm),
                     ("variable_sip_invite_domain", reg.realm),
                     ("variable_presence_id", reg.presence_id or f"{reg.user}@{reg.realm}")]
        if channel.forked:
            return auto + directory + self._user_variables(channel) + own
        return auto + own + directory

    @staticmethod
    def _user_variables(channel: FakeChannel) -> list[tuple[str, str]]:
        """The directory user's variables the originate's own do not set again."""
        reg = channel.registration
        own = {name for name, _ in channel.variables}
        return [(f"variable_{name}", value) for name, value in reg.directory_variables()
                if name not in own]

    def leg_headers(self, kind: str, channel: FakeChannel, cause: str = "NORMAL_CLEARING",
                    when: float | None = None) -> list[tuple[str, str]]:
        """The headers of one of the leg's events (``CHANNEL_DATA`` being its dump)."""
        common = self._common(when or self._now())
        values = self._leg_values(channel, kind, cause, common)
        if kind == "CHANNEL_HANGUP_COMPLETE" and not channel.answered:
            template = T_HANGUP_RINGING[0]
        else:
            template = {"CHANNEL_CREATE": T_CREATE, "CHANNEL_ANSWER": T_ANSWER,
                        "CHANNEL_HANGUP_COMPLETE": T_HANGUP, "CHANNEL_DATA": T_DUMP}[kind][0]
        if template in (T_HANGUP[0], T_DUMP[0]):
            # Answered and back from originate: the variables were set again (esl2/118), and
            # mod_dptools's user endpoint set originate_endpoint last.
            self._flipped(channel, values)
            headers = self._fill(template, values)
            reset = self._user_variables(channel) + [
                (f"variable_{name}", value) for name, value in channel.variables]
            headers = self._fill(headers, {}, inserted=reset, replaced=_RESET_RUN)
            again = {name for name, _ in reset}
            return _replace_region(
                headers, [h for h in self._leg_variables(channel) if h[0] not in again])
        return _replace_region(self._fill(template, values), self._leg_variables(channel))

    def channel_event(self, kind: str, channel: FakeChannel, cause: str = "NORMAL_CLEARING",
                      when: float | None = None) -> bytes:
        """CHANNEL_CREATE / CHANNEL_ANSWER / CHANNEL_HANGUP_COMPLETE of a leg, fired."""
        return self.fire(kind, self.leg_headers(kind, channel, cause, when))
