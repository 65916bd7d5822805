"""The command line: `esl-bridge init` and `esl-bridge serve` (SPEC §9)."""
from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import secrets  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

from web.config import Settings, SettingsError, add_flags, flag_values  # noqa: E402

log = logging.getLogger("esl_bridge")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esl-bridge", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="create the schema and the first account")
    init.add_argument("--account-name", required=True)
    init.add_argument("--realm", required=True)
    init.add_argument("--admin-username", default="admin")
    init.add_argument("--admin-password", default=None, help="default: a random one, printed")
    init.add_argument("--if-empty", action="store_true",
                      help="do nothing (successfully) when the database already holds an account")
    add_flags(init, ["database_url", "log_level", "http_port", "bind"])
    serve = sub.add_parser("serve", help="run the HTTP(S) server and the FreeSWITCH pool")
    add_flags(serve)
    return parser


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")


def init(settings: Settings, args: argparse.Namespace) -> int:
    """Create the first account, its admin user and API key; refuse to touch an existing one."""
    from models import account as accounts
    from models import schema
    from models import user as users
    from models.errors import ValidationFailed

    database = schema.connect(settings.database_url)
    with database.connection_context():
        if args.if_empty and accounts.has_accounts():
            log.info("the database already holds an account; nothing to do")
            return 0
        if accounts.find_account(name=args.account_name) or accounts.find_account(realm=args.realm):
            print(f"refusing: an account named {args.account_name!r} or with realm {args.realm!r} "
                  "already exists", file=sys.stderr)
            return 1
        password = args.admin_password or secrets.token_urlsafe(12)
        try:
            with database.atomic():
                account = accounts.create_account({"name": args.account_name, "realm": args.realm})
                admin = users.create_user(account.id, {
                    "first_name": "Account", "last_name": "Admin", "username": args.admin_username,
                    "password": password, "priv_level": "admin"})
        except ValidationFailed as exc:
            print(f"refusing: {exc.errors}", file=sys.stderr)
            return 1
        key = accounts.api_key(account)
    host = "127.0.0.1" if settings.bind in ("0.0.0.0", "::") else settings.bind
    base = f"http://{host}:{settings.http_port}"
    print(f"account id: {account.id}")
    print(f"api key:    {key}")
    print(f"admin user: {args.admin_username} (user id {admin.id})"
          + ("" if args.admin_password else f", password: {password}"))
    print("get a token:")
    print(f"  curl -s -X PUT {base}/v2/api_auth -d '{{\"data\":{{\"api_key\":\"{key}\"}}}}'")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.load(overrides=flag_values(args))
    except SettingsError as exc:
        print(f"esl-bridge: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    if args.command == "init":
        return init(settings, args)
    serve(settings)
    return 0


def serve(settings: Settings) -> None:
    """The master and its workers, until SIGINT or SIGTERM (`web.workers`)."""
    from web.multiprocess import shared_metrics_dir

    with shared_metrics_dir():
        from web.workers import run

        run(settings)


if __name__ == "__main__":
    sys.exit(main())
