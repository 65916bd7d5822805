"""A test FreeSWITCH: an event socket on port 0 that speaks the recorded wire format.

Everything it writes is modelled on the bytes a real FreeSWITCH 1.10 sent
(``tests/data/freeswitch/esl*/``, copied from ``../shared/freeswitch/``): the same framing, header
order, URL-encoding (``switch_url_encode``: ``%XX`` for control bytes, bytes above 0x7e and
``\\r\\n "#%&+:;<=>?@[\\]^`{|}``, an existing ``%XX`` with upper-case hex left alone) and
Content-Length. Events are built from the recorded events used as templates, with the values of
this fake's state substituted; ``tests/test_freeswitch_conformance.py`` replays the recordings
against it and ``tests/test_esl_fake.py`` checks its own behaviour.

What it knows (state, all public attributes):

- ``registrations``: ``FakeRegistration`` rows (user, realm, profile, contact, network ip/port,
  call-id, user agent, presence id, directory variables). ``register()``, ``unregister()`` and
  ``expire()`` change them and fire ``sofia::register|unregister|expire`` exactly as recorded.
- ``channels``: live calls created by originate (``FakeChannel``), until ``uuid_kill``.
- ``commands``: the full text of every command received, on every connection, in order (first
  line and header lines of ``sendevent``/``bgapi``, without the ending blank line).
- ``sent_events``: ``(event name, headers dict)`` of every ``sendevent``.
- ``directory_cache``: (user, realm) pairs ``xml_flush_cache`` can clear (a registration or an
  originate caches its user, as ``cacheable`` directory answers do).
- ``directory_requests`` and ``curl_calls``: the forms posted to ``directory_url`` (its
  mod_xml_curl binding, when given) and the ``api curl`` commands run.

How it serves: one greenlet per connection, as FreeSWITCH uses one thread per connection: it
reads a command byte by byte and never ahead (as mod_event_socket's ``read_packet``), runs it,
writes the reply, and writes events only between commands. So ``msleep`` holds its own
connection and nothing else, and commands pipelined on one connection are served one by one.

Who is known: every user of every realm is known (a registered user rings, an unregistered one
gives ``-ERR USER_NOT_REGISTERED``) unless ``set_behaviour(user, realm, "unknown")`` or a
``directory(user, realm) -> bool`` callable given to the constructor says otherwise
(``-ERR SUBSCRIBER_ABSENT``).

Per-user behaviours (``set_behaviour``): ``answer`` (default: CHANNEL_CREATE, then after
``answer_delay`` CHANNEL_ANSWER and ``+OK <uuid>``), ``no_answer`` (rings ``originate_timeout``
seconds times ``time_scale``, then ``-ERR NO_ANSWER``), ``busy`` (``-ERR USER_BUSY``), ``hang``
(rings until ``uuid_kill`` or ``hupall``: ``-ERR <cause>``), ``unknown`` (``-ERR SUBSCRIBER_ABSENT``).

Faults: ``slow(prefix, seconds)``, ``hang(prefix)``, ``drop_mid_reply(prefix)`` and
``close_on(prefix)`` act on commands whose first line starts with ``prefix`` (optionally only
``times`` times); ``refuse_connections()``/``accept_connections()`` close and reopen the listener
(live connections stay); ``kill_connections()`` cuts every connection without a word;
``vanish()`` forgets every connection without even closing it (a host lost and back: the
client sees silence, not FIN or RST);
``stop()`` sends the shutdown notice then closes (``stop(notice=False)`` = killed);
``start()`` again reuses the same port; ``restart(down_for)``; ``hang_on_connect`` (no
``auth/request``); ``stall_reads`` (reads nothing, so big writes block); ``inject(raw bytes)`` to event connections or all connections;
``job_event_before_reply`` makes ``BACKGROUND_JOB`` arrive before the ``bgapi`` reply;
``api_handlers[name] = fn(fake, args) -> str | bytes`` adds or replaces an api command.

Run it alone with ``python tests/fake_freeswitch [--port N] [--workers N]`` (or
``python -m fake_freeswitch`` from ``tests/``; the benchmarks do, see ``cli.main``).

The package, one job per module: ``wire`` (framing and encodings), ``templates`` (the recorded
frames it builds on), ``state`` (registrations, legs, faults), ``connection`` (one client
connection), ``commands`` (running a command), ``api`` (the api commands that are neither sofia's
nor about calls), ``registrations`` (registrations and the sofia commands), ``originate`` (and
the commands about calls), ``channel_events`` (a leg's events and dump), ``events`` (building and
firing events), ``directory`` (mod_xml_curl's lookups), ``curl`` (mod_curl), ``server``
(``FakeFreeSwitch``: settings, lifecycle, faults, inspection) and ``cli``.
"""
from .cli import main
from .connection import FakeConnection
from .events import _epoch
from .server import FakeFreeSwitch
from .state import FakeChannel, FakeRegistration, Fault
from .templates import _COMMON
from .wire import (
    GOODBYE,
    SHUTDOWN,
    api_response,
    command_reply,
    disconnect_notice,
    fs_url_encode,
    serialize_event,
)

__all__ = ["GOODBYE", "SHUTDOWN", "_COMMON", "FakeChannel", "FakeConnection", "FakeFreeSwitch",
           "FakeRegistration", "Fault", "_epoch", "api_response", "command_reply",
           "disconnect_notice", "fs_url_encode", "main", "serialize_event"]
