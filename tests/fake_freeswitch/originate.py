"""originate as the test FreeSWITCH runs it: legs, ringing, answer, hang-up while ringing."""
from __future__ import annotations

import json
import time
import uuid as _uuid
from typing import TYPE_CHECKING

import gevent

from .state import FakeChannel
from .wire import event_lines

if TYPE_CHECKING:
    from .server import FakeFreeSwitch


class Originate:
    """originate and the hang-up of its legs; mixed into ``FakeFreeSwitch``."""

    def _kill(self, channel: FakeChannel, cause: str) -> None:
        # The leg's CHANNEL_HANGUP_COMPLETE comes before the BACKGROUND_JOB of the originate
        # it ends (esl3/128, 129: sequence numbers 953641, 953642).
        self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, cause)
        channel.ended.set(cause)

    def _ring(self, channels: list[FakeChannel], seconds: float | None) -> str | None:
        """Let the legs ring ``seconds``: the cause when every one was hung up meanwhile."""
        gevent.wait([channel.ended for channel in channels], timeout=seconds)
        if all(channel.ended.ready() for channel in channels):
            return channels[0].ended.get()
        return None

    @staticmethod
    def _api_originate(fake: FakeFreeSwitch, args: str) -> str:
        return fake._originate(args, "") or ""

    @staticmethod
    def _variable_block(text: str, opening: str, closing: str
                        ) -> tuple[list[tuple[str, str]], str]:
        """A leading ``{a=b,c='d e'}`` (or ``[...]``) → (its variables, the text after it)."""
        if not text.startswith(opening):
            return [], text
        end = text.index(closing)
        variables = []
        for item in text[1:end].split(","):
            name, _, value = item.partition("=")
            if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
                value = value[1:-1]
            variables.append((name, value))
        return variables, text[end + 1:]

    @staticmethod
    def parse_originate(arg: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
        """``{vars}[leg vars]dial[,[leg vars]dial] exten XML context`` → (the ``{}``
        variables, the legs as written, ``[...]`` included, the words after)."""
        variables, rest = Originate._variable_block(arg.strip(), "{", "}")
        words = rest.split(" ")
        legs = [leg for leg in words[0].replace("|", ",").split(",") if leg]
        return variables, legs, words[1:]

    def _originate(self, arg: str, job_uuid: str) -> str | None:
        """Run an originate; returns the job body, or None if it never ends (``hang``)."""
        variables, legs, after = self.parse_originate(arg)
        var_map = dict(variables)
        context = after[2] if len(after) >= 3 else "default"
        outcomes = []
        leg_vars: dict[int, list[tuple[str, str]]] = {}
        used_uuids: set[str] = set()
        for index, written in enumerate(legs):
            own, leg = self._variable_block(written, "[", "]")
            # The leg's [] first, then the {} it shares, as switch_ivr_originate installs them
            # (a name in both keeps the [] value).
            mine = {name for name, _ in own}
            leg_vars[index] = own + [(n, v) for n, v in variables if n not in mine]
            kind, _, target = leg.partition("/")
            user, _, realm = target.partition("@")
            # Each leg gets its origination_uuid, from its [] or else from the {} (which every
            # leg shares): a second leg holding a uuid in use fails, as FreeSWITCH logs
            # "Duplicate UUID!" and "Cannot create outgoing channel" (esl3 143), and never rings.
            wanted = dict(leg_vars[index]).get("origination_uuid")
            if wanted and (wanted in used_uuids or wanted in self.channels):
                outcomes.append(("out_of_order", None, user, realm))
                continue
            if wanted:
                used_uuids.add(wanted)
            if kind != "user" or not user or not realm:
                outcomes.append(("absent", None, user, realm))
                continue
            found = self.directory_user(
                "user_call", user, realm,
                [("as_channel", "true"), ("action", "user_call"), *leg_vars[index]])
            if found is None:
                outcomes.append(("absent", None, user, realm))
                continue
            if self.directory_url is None:
                self.directory_cache.add((user.lower(), realm.lower()))
            reg = self.registration_for(user, realm)
            if reg is None:
                outcomes.append(("unregistered", None, user, realm))
            else:
                outcomes.append((self.behaviour(user, realm), reg, user, realm))
        kinds = [o[0] for o in outcomes]
        ringing = [o for o in outcomes if o[1] is not None]
        if not ringing:
            # FreeSWITCH answers these within milliseconds, without channel events.
            gevent.sleep(0.001)
            return ("-ERR USER_NOT_REGISTERED\n" if "unregistered" in kinds
                    else "-ERR DESTINATION_OUT_OF_ORDER\n" if "out_of_order" in kinds
                    else "-ERR SUBSCRIBER_ABSENT\n")
        answerer = next((o for o in ringing if o[0] == "answer"), None)
        channels = []
        for outcome in ringing:
            own = leg_vars[next(i for i, o in enumerate(outcomes) if o is outcome)]
            leg_uuid = dict(own).get("origination_uuid") or str(_uuid.uuid4())
            channel = FakeChannel(uuid=leg_uuid, user=outcome[2], realm=outcome[3],
                                  registration=outcome[1], variables=own, context=context,
                                  forked=len(legs) > 1, target=" ".join(after),
                                  created_us=int(self._now() * 1_000_000), job_uuid=job_uuid)
            channels.append((outcome, channel))
            self.channels[leg_uuid] = channel
            self.channel_event("CHANNEL_CREATE", channel)
        legs_only = [channel for _, channel in channels]
        if answerer is not None:
            killed = self._ring(legs_only, self.answer_delay)
            if killed is not None:
                return f"-ERR {killed}\n"
            result = None
            for outcome, channel in channels:
                if outcome is answerer:
                    channel.answered = True
                    channel.answered_us = int(self._now() * 1_000_000)
                    self.channel_event("CHANNEL_ANSWER", channel)
                    result = f"+OK {channel.uuid}\n"
                else:
                    self.channels.pop(channel.uuid, None)
                    self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, "LOSE_RACE")
            return result
        if "no_answer" in kinds:
            timeout = int(var_map.get("originate_timeout", "60") or 60)
            killed = self._ring(legs_only, timeout * self.time_scale)
            if killed is not None:
                return f"-ERR {killed}\n"
            cause = "NO_ANSWER"
        elif "busy" in kinds:
            gevent.sleep(min(self.answer_delay, 0.01))
            cause = "USER_BUSY"
        else:  # hang: rings until it is hung up, or the fake stops
            killed = self._ring(legs_only, None)
            return f"-ERR {killed}\n" if killed is not None else None
        for _, channel in channels:
            self.channels.pop(channel.uuid, None)
            self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, cause)
        return f"-ERR {cause}\n"

    def hangup(self, call_uuid: str, cause: str = "NORMAL_CLEARING") -> bool:
        """The far end hangs up a live call: CHANNEL_HANGUP_COMPLETE."""
        channel = self.channels.pop(call_uuid, None)
        if channel is None:
            return False
        self.channel_event("CHANNEL_HANGUP_COMPLETE", channel, cause)
        return True

    def show_channels(self) -> str:
        """``show channels``: the legs as CSV (esl3/140, 147), then ``N total.``."""
        rows = [SHOW_CHANNELS_COLUMNS]
        for channel in self.channels.values():
            reg = channel.registration
            variables = dict(channel.variables)
            created = int(channel.created_us // 1_000_000)
            cid_name = variables.get("origination_caller_id_name", "")
            cid_number = variables.get("origination_caller_id_number") or "0000000000"
            presence = reg.presence_id or f"{reg.user}@{reg.realm}"
            name = f"sofia/{reg.profile}/{reg.user}@{reg.network_ip}:{reg.network_port}"
            state, callstate = (("CS_EXECUTE", "ACTIVE") if channel.answered
                                else ("CS_CONSUME_MEDIA", "RINGING"))
            rows.append(",".join([
                channel.uuid, "outbound", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(created)),
                str(created), name, state, cid_name, cid_number, "", reg.user, "", "", "",
                channel.context, "", "", "", "", "", "", "", self.switchname, presence, "", "",
                callstate, "Outbound Call", reg.user, "", channel.uuid, "", "", cid_name,
                cid_number, "", reg.user, "", channel.context]))
        return "\n".join(rows) + f"\n\n{len(self.channels)} total.\n"


#: the header line of ``show channels`` (esl3/140)
SHOW_CHANNELS_COLUMNS = (
    "uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,"
    "application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,"
    "write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,"
    "callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,"
    "initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context")


def uuid_kill(fake: FakeFreeSwitch, args: str) -> str:
    """``uuid_kill <uuid> [cause]`` (esl3/202-205)."""
    parts = args.split()
    if not parts:
        return "-USAGE: <uuid> [cause]\n"
    channel = fake.channels.pop(parts[0], None)
    if channel is None:
        return "-ERR No such channel!\n"
    fake._kill(channel, parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
    return "+OK\n"


def hupall(fake: FakeFreeSwitch, args: str) -> str:
    """``hupall [cause] [<variable> <value>]``: the same answer whether or not anything matched
    (esl3/127, 130, 136, 154)."""
    parts = args.split()
    cause = parts[0] if parts else "NORMAL_CLEARING"
    wanted = tuple(parts[1:3]) if len(parts) >= 3 else None
    for uuid_, channel in list(fake.channels.items()):
        if wanted is None or wanted in channel.variables:
            fake.channels.pop(uuid_, None)
            fake._kill(channel, cause)
    if wanted is None:
        return f"+OK hangup all channels with cause {cause}\n"
    return f"+OK hangup all channels matching [{wanted[0]}]=[{wanted[1]}] with cause: {cause}\n"


def uuid_dump(fake: FakeFreeSwitch, args: str) -> str:
    """``uuid_dump <uuid> [json]``: the leg as a CHANNEL_DATA event (esl3/187, 188)."""
    parts = args.split()
    channel = fake.channels.get(parts[0]) if parts else None
    if channel is None:
        return "-ERR No such channel!\n"
    headers = fake.leg_headers("CHANNEL_DATA", channel)
    if parts[1:] == ["json"]:
        return json.dumps(dict(headers), ensure_ascii=False, separators=(",", ":"))
    return event_lines(headers) + "\n"


CALL_COMMANDS = {"uuid_kill": uuid_kill, "hupall": hupall, "uuid_dump": uuid_dump,
                 "originate": Originate._api_originate}
