"""FreeSWITCH restarts under load: how soon esl-bridge serves again, and what it answers meanwhile.

The test FreeSWITCH is restarted (its restart fault: stop, down for a while, start on the same
port) N times while 50 clients keep sending HTTP actions to a real esl-bridge server:
``GET /devices/status``, ``POST /devices/{D}/sync`` and ``POST /devices/{D}/presence`` (a
reset), each needing FreeSWITCH. The downtimes cycle through ``--down``; every other restart
sends FreeSWITCH's shutdown notice first, the others cut the connections without a word.

    .venv/bin/python bench/restarts.py [--restarts 20] [--clients 50] [--down 0.2,0.5,1,2,5,10]

Three processes: the test FreeSWITCH (``tests/fake_freeswitch/``; it stamps the event
subscriptions and registration refreshes it receives), esl-bridge (``web.server.BridgeServer``
with its pool started from settings, SQLite in a temporary directory) and this one (the HTTP
clients). Times are CLOCK_MONOTONIC, shared by every process of the machine.

Reports, per restart, the time from "FreeSWITCH ready" (listening again) to the first 200, to
the event subscription and to the full registration refresh; overall, the answers by status,
the slowest answer, the connect attempts per second while FreeSWITCH was down, and whether a
greenlet or a connection was left over once the load stopped. Each restart also shows the
server's worst loop turn meanwhile: every step of a reconnect and of a request waits for one, so
on a machine short of CPU the figures grow with it. Targets: recovery (first 200)
at most 1 s after every restart, only 200 and 503 answers, none slower than the command
timeout (plus ``ANSWER_SLACK_S`` to answer once it has run out), nothing leaked. Prints a
table, then (last line) one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REALM = "acme.test"
DEVICES = 40
REGISTERED = 20  # the first devices' phones are registered (sync sends them a NOTIFY)
REFRESH = "api sofia xmlstatus profile internal reg"
SUBSCRIPTION = "event plain"
TARGET_RECOVERY_S = 1.0
#: An answer's own timeout is the command timeout; what it takes to answer after that (the
#: envelope, a loop turn) is allowed this much, as the pool's restart test allows.
ANSWER_SLACK_S = 0.25


# ---------------------------------------------------------------------------------------------
# Role: the test FreeSWITCH


def run_fake(users: list[str]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    import fake_freeswitch as module
    import gevent
    from common import orders, reply

    stamps: dict[str, list[float]] = {"event": [], "refresh": []}

    class Stamped(list):
        """``FakeFreeSwitch.commands``, stamping subscriptions and full refreshes on arrival."""

        def append(self, text: str) -> None:
            if text.startswith(SUBSCRIPTION):
                stamps["event"].append(time.monotonic())
            elif text == REFRESH:
                stamps["refresh"].append(time.monotonic())
            if len(self) < 1000:  # a long run would otherwise keep every command
                super().append(text)

    fake = module.FakeFreeSwitch(switchname="bench").start()
    fake.commands = Stamped()
    for user in users:
        fake.register(user, REALM)
    reply({"node": fake.node})
    for words in orders():
        if words and words[0] == "restart":
            stopping = time.monotonic()
            fake.restart(down_for=float(words[1]), notice=words[2] == "notice")
            reply({"stopping": stopping, "ready": time.monotonic()})
        elif words == ["stamps"]:
            reply(stamps)
            for times in stamps.values():
                times.clear()
        elif words == ["connections"]:
            gevent.sleep(0)
            reply({"command": len(fake.command_connections()),
                   "event": len(fake.event_connections()), "all": len(fake.connections)})
        elif words == ["quit"]:
            break
    fake.stop(notice=False)


# ---------------------------------------------------------------------------------------------
# Role: esl-bridge


def live_greenlets() -> int:
    import gc

    import gevent

    return sum(1 for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead)


def run_server(database_url: str, node: str, pool_options: dict[str, float]) -> None:
    import logging

    import gevent
    from common import FREESWITCH_SECRET, orders, reply

    from web.config import Settings
    from web.server import BridgeServer, start_pool

    logging.basicConfig(level=logging.WARNING)
    settings = Settings(database_url=database_url, bind="127.0.0.1", http_port=0,
                        freeswitch=(node,), freeswitch_secret=FREESWITCH_SECRET,
                        log_level="warning")
    # Overflow connections retire after 1 s unused rather than 30, so that the leak check at
    # the end need not wait for them.
    pool = start_pool(settings, overflow_idle=1.0, **pool_options)
    server = BridgeServer(settings, pool=pool).start()
    if not pool.wait_connected(10):
        raise SystemExit(f"the pool did not connect: {pool.health()}")
    # How late a 10 ms sleep wakes: the length of a loop turn, which every step of a reconnect
    # (TCP connect, auth/request, auth) and of a request waits for once.
    worst_lag = [0.0]

    def watch_loop() -> None:
        while True:
            started = time.monotonic()
            gevent.sleep(0.01)
            worst_lag[0] = max(worst_lag[0], time.monotonic() - started - 0.01)

    watcher = gevent.spawn(watch_loop)
    reply({"port": server.http_port, "pool_size": pool.pool_size,
           "command_timeout": pool.command_timeout})
    for words in orders():
        if words == ["state"]:
            gevent.sleep(0.05)
            reply({"greenlets": live_greenlets(), "health": pool.health()[pool.node_names()[0]],
                   "loop_lag_ms": round(worst_lag[0] * 1000)})
            worst_lag[0] = 0.0
        elif words == ["quit"]:
            break
    watcher.kill()
    server.stop(grace=2)
    reply({"greenlets_after_stop": live_greenlets()})


# ---------------------------------------------------------------------------------------------
# The driver


def seed(workdir: Path) -> Any:
    from seeding import seed as seed_database

    return seed_database(workdir / "bench.db", DEVICES)


def settle(server: Any, fake: Any, pool_size: int, timeout: float = 15.0) -> dict[str, Any]:
    """Wait until the pool is back to its own connections (overflow ones retired)."""
    deadline = time.monotonic() + timeout
    while True:
        state = server.ask("state")
        conns = fake.ask("connections")
        health = state["health"]
        if (health["overflow"] == 0 and health["connections"] == pool_size
                and health["event_connection"] and conns["command"] == pool_size
                and conns["event"] == 1) or time.monotonic() >= deadline:
            return {**state, "fake_connections": conns}
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--restarts", type=int, default=20, help="restarts (20)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent HTTP clients (50)")
    parser.add_argument("--down", default="0.2,0.5,1,2,5,10",
                        help="seconds down, cycled through (0.2,0.5,1,2,5,10)")
    parser.add_argument("--up", type=float, default=1.5,
                        help="seconds up between restarts, under load (1.5)")
    parser.add_argument("--reconnect-base", type=float,
                        help="override the pool's reconnect_base (to compare)")
    parser.add_argument("--reconnect-max", type=float,
                        help="override the pool's reconnect_max (to compare)")
    parser.add_argument("--role", choices=["fake", "server"], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--node", help=argparse.SUPPRESS)
    parser.add_argument("--users", help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = {name: value for name, value in (("reconnect_base", args.reconnect_base),
                                               ("reconnect_max", args.reconnect_max))
               if value is not None}
    if args.role is not None:
        from gevent import monkey

        monkey.patch_all()
        if args.role == "fake":
            run_fake(args.users.split(","))
        else:
            run_server(args.database_url, args.node, options)
        return
    downs = [float(d) for d in args.down.split(",")]
    drive(args.restarts, args.clients, downs, args.up, options)


def drive(restarts: int, clients: int, downs: list[float], up: float,
          options: dict[str, float]) -> None:
    from gevent import monkey

    monkey.patch_all()
    import gevent
    import gevent.event
    from common import Child, machine
    from load import Connection, auth_token, http_request

    workdir = Path(tempfile.mkdtemp(prefix="esl-bridge-bench-restarts-"))
    children: list[Any] = []
    try:
        seeded = seed(workdir)
        # Devices 0, 4, 8... own a presence id and a SIP user; the first ones are registered.
        owned = list(range(0, DEVICES, 4))
        users = [seeded.sip_usernames[d] for d in range(REGISTERED)]
        fake = Child(__file__, "--role", "fake", "--users", ",".join(users))
        children.append(fake)
        extra = [f"--{name.replace('_', '-')}={value}" for name, value in options.items()]
        server = Child(__file__, "--role", "server", "--database-url", seeded.url,
                       "--node", fake.hello["node"], *extra)
        children.append(server)
        port, pool_size = server.hello["port"], server.hello["pool_size"]
        timeout = server.hello["command_timeout"]
        token = auth_token(port, seeded.api_key)
        headers = {"X-Auth-Token": token}
        base = f"/v2/accounts/{seeded.account_id}"
        requests = [("status", http_request("GET", f"{base}/devices/status", headers))]
        requests += [("sync", http_request("POST", f"{base}/devices/{seeded.device_ids[d]}/sync",
                                           headers)) for d in owned if d < REGISTERED]
        requests += [("presence", http_request(
            "POST", f"{base}/devices/{seeded.device_ids[d]}/presence", headers)) for d in owned]

        before = settle(server, fake, pool_size)
        answers: list[tuple[float, float, int, str]] = []  # (sent, answered, status, what)
        stop = gevent.event.Event()

        def client(k: int) -> None:
            turn = itertools.count(k)
            conn = Connection(port)
            try:
                while not stop.is_set():
                    what, raw = requests[next(turn) % len(requests)]
                    sent = time.monotonic()
                    try:
                        status, _ = conn.request(raw)
                    except (ConnectionError, OSError):
                        conn.close()
                        conn = Connection(port)
                        status = 0  # no HTTP answer at all
                    answers.append((sent, time.monotonic(), status, what))
            finally:
                conn.close()

        greenlets = [gevent.spawn(client, k) for k in range(clients)]
        failures_before = server.ask("state")["health"]["connect_failures"]
        gevent.sleep(up)
        cycles = []
        for i in range(restarts):
            down = downs[i % len(downs)]
            notice = "notice" if i % 2 == 0 else "killed"
            times = fake.ask("restart", down, notice)
            gevent.sleep(up)
            cycles.append({"down_s": down, "notice": notice == "notice", **times,
                           "stamps": fake.ask("stamps"),
                           "loop_lag_ms": server.ask("state")["loop_lag_ms"]})
        failures_after = server.ask("state")["health"]["connect_failures"]
        stop.set()
        gevent.joinall(greenlets, timeout=timeout + 5)
        after = settle(server, fake, pool_size)
        stopped = server.ask("quit")  # the greenlets left once the server stopped
        server.proc.wait(timeout=15)
        children.remove(server)
        gevent.sleep(0.5)
        left = fake.ask("connections")
    finally:
        for child in children:
            child.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report(cycles, answers, before, after, stopped, left, failures_after - failures_before,
           clients, up, timeout, options, machine())


def _after(times: list[float], ready: float, until: float) -> float | None:
    later = [t - ready for t in times if ready <= t < until]
    return round(min(later), 3) if later else None


def report(cycles: list[dict[str, Any]], answers: list[tuple[float, float, int, str]],
           before: dict[str, Any], after: dict[str, Any], stopped: dict[str, Any],
           left: dict[str, Any], attempts: int, clients: int, up: float, timeout: float,
           options: dict[str, float], info: dict[str, Any]) -> None:
    oks = sorted(answered for _, answered, status, _ in answers if status == 200)
    rows = []
    for i, cycle in enumerate(cycles):
        ready = cycle["ready"]
        until = cycles[i + 1]["stopping"] if i + 1 < len(cycles) else float("inf")
        first = next((t for t in oks if ready <= t < until), None)
        rows.append({"down_s": cycle["down_s"], "notice": cycle["notice"],
                     "first_200_s": round(first - ready, 3) if first is not None else None,
                     "event_s": _after(cycle["stamps"]["event"], ready, until),
                     "refresh_s": _after(cycle["stamps"]["refresh"], ready, until),
                     "loop_lag_ms": cycle["loop_lag_ms"]})
    statuses: dict[str, int] = {}
    for _, _, status, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    sent, answered, status, what = max(answers, key=lambda a: a[1] - a[0],
                                       default=(0.0, 0.0, 0, "-"))
    slowest = answered - sent
    # Where it fell: seconds after the stop of the restart it followed (or before the first).
    stops = [c["stopping"] for c in cycles if c["stopping"] <= sent]
    slowest_answer = {"seconds": round(slowest, 3), "status": status, "request": what,
                      "sent_after_stop_s": round(sent - stops[-1], 3) if stops else None}
    recoveries = [r["first_200_s"] for r in rows]
    known = [r for r in recoveries if r is not None]
    serving = [max(r["first_200_s"], r["event_s"], r["refresh_s"]) for r in rows
               if None not in (r["first_200_s"], r["event_s"], r["refresh_s"])]
    down_total = sum(c["down_s"] for c in cycles)
    leaks = {"greenlets_before": before["greenlets"], "greenlets_after": after["greenlets"],
             "greenlets_after_stop": stopped["greenlets_after_stop"],
             "connections_after": after["fake_connections"], "connections_after_stop": left}
    leaked = (after["greenlets"] > before["greenlets"]
              or after["fake_connections"] != before["fake_connections"]
              or left["all"] != 0 or stopped["greenlets_after_stop"] > 1)
    misses = []
    if None in recoveries:
        misses.append(f"{recoveries.count(None)} restarts without a 200 within {up:g} s")
    if known and max(known) > TARGET_RECOVERY_S:
        misses.append(f"recovery max {max(known)} s > {TARGET_RECOVERY_S} s")
    if set(statuses) - {"200", "503"}:
        misses.append(f"answers other than 200/503: {statuses}")
    if slowest > timeout + ANSWER_SLACK_S:
        misses.append(f"slowest answer {slowest:.3f} s > command timeout {timeout:g} s "
                      f"+ {ANSWER_SLACK_S:g} s")
    if leaked:
        misses.append(f"leak: {leaks}")

    print(f"esl-bridge restarts benchmark: {len(cycles)} restarts of the test FreeSWITCH under "
          f"{clients} HTTP clients, {up:g} s up between them; {info['cpus']} CPUs, Python "
          f"{info['python']}" + (f"; pool options {options}" if options else ""))
    print()
    print(f"{'#':>3} {'down s':>7} {'how':<8} {'first 200 s':>12} {'events s':>9} {'refresh s':>10}"
          f" {'loop lag ms':>12}")
    for i, row in enumerate(rows, 1):
        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        print(f"{i:>3} {row['down_s']:>7g} {'notice' if row['notice'] else 'killed':<8} "
              f"{cell(row['first_200_s']):>12} {cell(row['event_s']):>9} "
              f"{cell(row['refresh_s']):>10} {row['loop_lag_ms']:>12}")
    print()
    print(f"answers by status: {statuses}; slowest {slowest:.3f} s (command timeout {timeout:g} s):"
          f" {slowest_answer}")
    if known:
        print(f"ready -> first 200: median {statistics.median(known):.3f} s, "
              f"max {max(known):.3f} s;"
              f" ready -> serving (200, events, refresh): max "
              f"{max(serving) if serving else float('nan'):.3f} s")
    print("(loop lag: the server's worst loop turn during the restart and the time up after it)")
    print(f"connect attempts while down: {attempts} in {down_total:g} s "
          f"({attempts / down_total if down_total else 0:.1f}/s)")
    print(f"leaks: {leaks}")
    print(f"targets (recovery <= {TARGET_RECOVERY_S:g} s, only 200/503, none slower than the "
          f"command timeout + {ANSWER_SLACK_S:g} s, nothing leaked): "
          f"{'met' if not misses else 'MISSED: ' + '; '.join(misses)}")
    print(json.dumps({
        "benchmark": "restarts", "machine": info,
        "settings": {"restarts": len(cycles), "clients": clients, "up_s": up,
                     "command_timeout_s": timeout, "pool_options": options},
        "restarts": rows, "answers": statuses, "requests": len(answers),
        "slowest_s": round(slowest, 3), "slowest": slowest_answer,
        "recovery_s": {"median": statistics.median(known) if known else None,
                       "max": max(known) if known else None},
        "serving_max_s": max(serving) if serving else None,
        "attempts_while_down": attempts, "attempts_per_s_down": (
            round(attempts / down_total, 2) if down_total else None),
        "leaks": leaks,
        "targets": {"recovery_max_s": TARGET_RECOVERY_S, "answer_slack_s": ANSWER_SLACK_S,
                    "met": not misses, "misses": misses},
    }, separators=(",", ":")))


if __name__ == "__main__":
    main()
