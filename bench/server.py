"""The server process of the benchmarks: esl-bridge's own `BridgeServer` (gevent WSGI, no
FreeSWITCH pool) over a seeded database, plus the bare baseline route.

Run by `bench/common.py`, never by hand: it prints `{"port": N}` on one line once it listens,
and stops on SIGTERM.
"""
from gevent import monkey

monkey.patch_all()  # before anything else imports socket or threading (DESIGN "gevent notes")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
from flask import Response, jsonify  # noqa: E402
from gevent.event import Event  # noqa: E402

from web.config import Settings  # noqa: E402
from web.server import BridgeServer  # noqa: E402

BARE_PATH = "/bench/bare"


def bare() -> Response:
    """The baseline: a Flask view returning a small JSON body, with no query and no auth."""
    return jsonify({"status": "success", "data": {"ok": True}})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--freeswitch-secret", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(database_url=args.database_url, bind="127.0.0.1", http_port=0,
                        freeswitch_secret=args.freeswitch_secret, log_level="warning")
    server = BridgeServer(settings, start_freeswitch=False)
    # On the same app (so through the same request hooks) and the same WSGI server.
    server.app.add_url_rule(BARE_PATH, "bench_bare", bare, methods=["GET", "POST"])
    server.start()
    print(json.dumps({"port": server.http_port}), flush=True)
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    stop.wait()
    server.stop(grace=2)


if __name__ == "__main__":
    main()
