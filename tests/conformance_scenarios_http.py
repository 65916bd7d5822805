"""Scenarios of the third lab that talk HTTP: directory lookups through mod_xml_curl, mod_curl,
and the originate to a call-forwarded device. Registered by importing this module."""
from __future__ import annotations

from typing import Any

from conformance import XML_CURL3, Client, compare_request, rec, recorded_answer, sent
from conformance_scenarios import Outcome, _assert, scenario
from conformance_scenarios_calls import esl3_lab
from http_stubs import HttpStub, closed_port


def directory_stub() -> HttpStub:
    """The capture server: each user's recorded directory answer (the not-found document for
    2099); 2006's is cacheable."""
    answers = {user: recorded_answer(name) for user, name in (
        ("2005", "175_i6_user_exists_2005_http1.txt"), ("2006", "179_i6_user_exists_2006_http1.txt"),
        ("2099", "182_i6_user_exists_2099_http1.txt"), ("2007", "160_i4_user_data_http1.txt"),
        ("2009", "155_i3_originate_http1.txt"))}

    def route(line: str, body: bytes) -> tuple[str, str, bytes]:
        user = dict(p.split("=", 1) for p in body.decode().split("&"))["user"]
        return "200 OK", "text/xml", answers[user]
    return HttpStub(route)


DIRECTORY_AUTH = ("freeswitch", "lab-secret")


@scenario("157_i4_api_user_data_var.txt", "158_i4_api_eval_user_data_var.txt",
          "159_i4_api_user_data_param_dial_string.txt",
          "173_i6_api_user_exists_id_2005_first.txt",
          "174_i6_api_user_exists_id_2005_second_1s_later.txt",
          "177_i6_api_user_exists_id_2006_first.txt",
          "178_i6_api_user_exists_id_2006_second_1s_later.txt",
          "180_i6_api_user_exists_id_2099_first.txt",
          "181_i6_api_user_exists_id_2099_second_1s_later.txt",
          "184_i6_api_xml_flush_cache_2006.txt",
          "198_i10_api_expand_echo_user_exists_known.txt",
          "199_i10_api_eval_user_exists_known.txt", "200_i10_api_eval_user_exists_unknown.txt",
          "201_i10_api_expand_echo_user_exists_unknown.txt",
          http=("160_i4_user_data_http1.txt", "161_i4_user_data_http2.txt",
                "162_i4_user_data_http3.txt", "175_i6_user_exists_2005_http1.txt",
                "176_i6_user_exists_2005_http2.txt", "179_i6_user_exists_2006_http1.txt",
                "182_i6_user_exists_2099_http1.txt", "183_i6_user_exists_2099_http2.txt"))
def directory_lookups(factory: Any) -> Outcome:
    """user_data, user_exists and their ${…} forms against the directory binding; a cacheable
    user is asked for once."""
    out = Outcome()
    with directory_stub() as stub:
        fake = esl3_lab(factory, directory_url=f"{stub.url}/freeswitch/directory",
                        directory_auth=DIRECTORY_AUTH)
        client = Client(fake.port).login()
        out.ask(client, *directory_lookups.covers)
    requests = dict(zip(directory_lookups.http, stub.requests, strict=False))
    for name, request in requests.items():
        out.checks.append(lambda n=name, r=request: compare_request(
            rec_http(n), r, allowed={"Authorization"}))
    users = [dict(p.split("=", 1) for p in r.split(b"\r\n\r\n")[1].decode().split("&"))["user"]
             for r in stub.requests]
    # 2006 is cacheable: asked once for two lookups; 2005 and 2099 every time (esl3/173-183).
    out.checks.append(lambda: _assert(users[:8] == ["2007", "2007", "2007", "2005", "2005",
                                                    "2006", "2099", "2099"], str(users)))
    return out


@scenario("163_i5_api_curl_10args_200.txt", "165_i5_api_curl_10args_500.txt",
          "167_i5_api_curl_10args_refused.txt", "168_i5_api_curl_10args_never_answers.txt",
          "169_i5_api_curl_10args_never_answers_http_received.txt",
          "170_i5_api_curl_200_no_json_flag.txt", "172_i5_api_curl_refused_no_json_flag.txt",
          http=("164_i5_api_curl_10args_200_http1.txt", "166_i5_api_curl_10args_500_http1.txt",
                "171_i5_api_curl_200_no_json_flag_http1.txt"))
def mod_curl(factory: Any) -> Outcome:
    """``api curl`` as the Lua callouts call it, to a server that answers 200 or 500, to a
    closed port and to one that never answers; with and without ``json``."""
    def route(line: str, body: bytes) -> tuple[str, str, bytes]:
        if "/fail500" in line:
            return "500 Internal Server Error", "application/json", b'{"error":"boom"}'
        return "200 OK", "application/json", recorded_answer("164_i5_api_curl_10args_200_http1.txt")

    out = Outcome()
    with HttpStub(route) as capture, HttpStub(lambda line, body: None) as silent:
        fake = esl3_lab(factory)
        fake.curl_timeout_cap = 0.2  # the lab waited the command's 3 s
        client = Client(fake.port).login()
        lab_urls = {"http://127.0.0.1:18095": capture.url, "http://127.0.0.1:48375": silent.url,
                    "http://127.0.0.1:51951": f"http://127.0.0.1:{closed_port()}"}
        for name in mod_curl.covers:
            if name.startswith("169"):
                continue
            command = sent(name)
            for recorded, here in lab_urls.items():
                command = command.replace(recorded, here)
            out.got[name] = client.ask(command)
    out.checks.append(lambda: compare_request(
        rec("169_i5_api_curl_10args_never_answers_http_received.txt"), silent.requests[0]))
    for name, request in zip(mod_curl.http, capture.requests, strict=True):
        out.checks.append(lambda n=name, r=request: compare_request(rec_http(n), r))
    return out


def rec_http(name: str) -> bytes:
    return (XML_CURL3 / name).read_bytes()


@scenario("151_i3_event_plain_reply.txt",
          "152_i3_bgapi_originate_user_2009_loopback_dial_string.txt",
          "154_i3_api_hupall_NORMAL_CLEARING_all.txt", http=("155_i3_originate_http1.txt",))
def forwarded_device(factory: Any) -> Outcome:
    """The commands around the call to a call-forwarded device, and the directory lookup its
    originate makes (its loopback legs are not modelled: see the exceptions)."""
    out = Outcome()
    with directory_stub() as stub:
        fake = esl3_lab(factory, directory_url=f"{stub.url}/freeswitch/directory",
                        directory_auth=DIRECTORY_AUTH)
        client = Client(fake.port).login()
        out.ask(client, "151_i3_event_plain_reply.txt",
                "152_i3_bgapi_originate_user_2009_loopback_dial_string.txt")
        client.event("BACKGROUND_JOB")
        out.ask(client, "154_i3_api_hupall_NORMAL_CLEARING_all.txt")
    out.checks.append(lambda: compare_request(rec_http("155_i3_originate_http1.txt"),
                                              stub.requests[0], allowed={"Authorization"}))
    return out
