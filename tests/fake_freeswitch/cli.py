"""Run the test FreeSWITCH alone, in its own process (the benchmarks do)."""
from __future__ import annotations

import argparse
import os
import signal

import gevent
import gevent.event
from gevent import monkey

from .server import FakeFreeSwitch


def main() -> None:
    """Serve a fake FreeSWITCH until killed; print ``host:port:password`` on stdout.

    ``--workers N`` forks N processes that accept on the one listening socket, so that each
    connection is served by one of them: a model of FreeSWITCH's thread per connection, whose
    connections run on separate cores (each worker keeps its own state, so it is only fit for
    stateless commands such as the benchmark's ``api status`` and ``api msleep``). The first
    line names the workers' process ids after the node: ``host:port:password pid pid ...``.
    """
    monkey.patch_all()
    parser = argparse.ArgumentParser(
        description="A test FreeSWITCH: an event socket that speaks the recorded wire format.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--password", default="ClueCon")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes accepting on the one socket (default 1)")
    options = parser.parse_args()
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    fake = FakeFreeSwitch(options.password, host=options.host, port=options.port).start()
    children = []
    for _ in range(options.workers - 1):
        pid = os.fork()  # gevent's fork: the child's loop is re-initialised, the server kept
        if pid == 0:
            children = []
            break
        children.append(pid)
    else:
        print(" ".join([fake.node, str(os.getpid()), *map(str, children)]),  # noqa: T201
              flush=True)  # the one line a parent process reads

    def end(*_: object) -> None:
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
                os.waitpid(child, 0)  # gone (and reaped) before the parent says it is
            except (ProcessLookupError, ChildProcessError):
                pass
        os._exit(0)

    # The handler runs in the event loop, where waitpid may not block: end in a greenlet.
    gevent.signal_handler(signal.SIGTERM, gevent.spawn, end)
    try:
        gevent.event.Event().wait()
    except KeyboardInterrupt:
        fake.stop()
        end()
