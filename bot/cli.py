"""The command line: ``roundtable`` and ``python -m bot`` are the same program."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from bot.config import Config, Secrets, default_data_dir, resolve_config_path
from bot.faults import EXIT_CODES_HELP, ExitCode, Fault
from bot.yamlsource import ProblemsFound

log = logging.getLogger("bot")
MAX_PRINTED_PROBLEMS = 500  # a pathological file can have thousands; the count says how many


def _print_problems(problems) -> None:
    for problem in problems[:MAX_PRINTED_PROBLEMS]:
        print(problem, file=sys.stderr)
    if len(problems) > MAX_PRINTED_PROBLEMS:
        print(f"… and {len(problems) - MAX_PRINTED_PROBLEMS} more.", file=sys.stderr)


def _load(args: argparse.Namespace):
    """The validated library, or None after printing every problem to stderr."""
    from bot.library import load_library

    try:
        return load_library(resolve_config_path(args.config))
    except ProblemsFound as exc:
        _print_problems(exc.problems)
        n = len(exc.problems)
        print(f"{n} problem{'s' * (n != 1)} found.", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    library = _load(args)
    if library is None:
        return 1
    print(f"OK: {library.summary()}.")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from bot.core import render
    from bot.core.events import RoundPost
    from bot.core.rounds import prompt_view

    library = _load(args)
    if library is None:
        return 1
    if args.prompt_id:
        found = library.find_prompt(args.prompt_id)
        if found is None:
            ids = ", ".join(library.all_prompt_ids())
            print(f"unknown prompt id '{args.prompt_id}' (known: {ids})", file=sys.stderr)
            return 1
        prompt = found[1]
    else:
        channel = f"console:{library.config.console.channel}"
        loaded = library.set_for_channel(channel)
        prompt = loaded.prompts[0]
    post = RoundPost(0, "preview", "preview", prompt_view(prompt), True, preview=True)
    print(render.round_text(post))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from bot.faults import output_fault
    from bot.prompts import PromptSet

    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise output_fault(exc if isinstance(exc, OSError) else OSError(str(exc)), out) from None
    for name, model in (("config", Config), ("prompt-set", PromptSet)):
        path = out / f"{name}.schema.json"
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "http://json-schema.org/draft-07/schema#"
        try:
            path.write_text(
                json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise output_fault(exc, path) from None
        print(f"wrote {path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bot.anonymity import SecretProblem
    from bot.app import build_runtime, run
    from bot.config import database_url
    from bot.faults import (
        DATABASE_PACKAGES,
        check_credentials,
        database_fault,
        platform_fault,
        raised_in,
    )

    library = _load(args)
    if library is None:
        print("Refusing to start: fix the problems above (roundtable validate).", file=sys.stderr)
        return ExitCode.PROBLEMS
    secrets = Secrets.from_env()
    check_credentials(secrets, library.config)  # raises Fault before anything connects

    async def main() -> int:
        asyncio.get_running_loop().set_exception_handler(_log_loop_error)
        url = database_url(library.config, config_path=library.config_path)
        try:
            runtime = await build_runtime(resolve_config_path(args.config), secrets=secrets)
        except ProblemsFound as exc:  # the files changed since they were checked above
            _print_problems(exc.problems)
            print(
                "Refusing to start: fix the problems above (roundtable validate).", file=sys.stderr
            )
            return ExitCode.PROBLEMS
        except SecretProblem as exc:  # ROUNDTABLE_SECRET: its own one line (docs/privacy.md)
            print(f"Refusing to start: {exc}", file=sys.stderr)
            # the key file lives beside the SQLite database: an unwritable folder is code 4
            return ExitCode.DATABASE if "key file" in str(exc) else ExitCode.PROBLEMS
        except Exception as exc:
            raise (database_fault(exc, url) or exc) from None
        from bot.adapters import StartupError

        try:
            await run(runtime)
        except StartupError as exc:  # the adapter's own one line: keep it, add the code
            code = ExitCode.NETWORK if "cannot reach" in str(exc) else ExitCode.SETUP
            raise Fault(str(exc), code) from None
        except Exception as exc:
            config = runtime.library.current.config
            fault = None
            if raised_in(exc, *DATABASE_PACKAGES):
                fault = database_fault(exc, url)
            raise (fault or platform_fault(exc, config) or exc) from None
        finally:
            try:
                await runtime.close()
            except Exception as exc:  # closing after a fault must not hide the fault
                log.warning("closing the database failed: %s: %s", type(exc).__name__, exc)
        return 0

    return asyncio.run(main())


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Errors nobody awaited: one line through the configured log format, never a traceback."""
    exc = context.get("exception")
    what = context.get("message") or "error in a background task"
    if exc is None:
        log.error("%s", what)
        return
    log.error("%s: %s: %s", what, type(exc).__name__, exc)
    log.debug("traceback", exc_info=(type(exc), exc, exc.__traceback__))


async def _open_store(url: str, config_path: Path, keyring: object | None = None):
    """The store, or a Fault naming what is wrong with the database or the server secret.

    The store always gets the server secret's keyring (from the config-relative data
    folder), so migrations and counts of anonymous answers never look for a key file
    relative to the working directory."""
    from bot.anonymity import SecretProblem, load_keyring
    from bot.faults import database_fault
    from bot.storage.store import Store

    try:
        keyring = keyring or load_keyring(url, data_dir=default_data_dir(config_path))
    except SecretProblem as exc:
        raise Fault(f"error: {exc}", ExitCode.PROBLEMS) from None
    try:
        return await Store.open(url, keyring)
    except Exception as exc:
        raise (database_fault(exc, url) or exc) from None


def cmd_history(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from bot.config import database_url, load_config
    from bot.history import format_purges, format_rows, history, parse_since
    from bot.privacy import purge_history

    config_path = resolve_config_path(args.config)
    try:
        config, _ = load_config(config_path)
    except ProblemsFound as exc:
        _print_problems(exc.problems)
        return 1
    zone = ZoneInfo(config.timezone)
    try:
        since = parse_since(args.since, zone) if args.since else None
    except ValueError:
        print(f"--since: '{args.since}' is not a date; write it as 2026-11-01", file=sys.stderr)
        return 2

    async def main() -> str:
        store = await _open_store(database_url(config, config_path=config_path), config_path)
        try:
            text = format_rows(await history(store, channel=args.channel, since=since), zone)
            purged = format_purges(await purge_history(store), zone)
            return f"{text}\n\n{purged}" if purged else text
        finally:
            await store.close()

    print(asyncio.run(main()))
    return 0


def _privacy_service(args: argparse.Namespace):
    """(config, an async factory of (store, service)) for the privacy commands; the
    service reads the server secret like the bot does. None after printing problems."""
    from bot.config import database_url, load_config

    config_path = resolve_config_path(args.config)
    try:
        config, _ = load_config(config_path)
    except ProblemsFound as exc:
        _print_problems(exc.problems)
        return None

    async def open_service():
        from bot.anonymity import load_keyring
        from bot.core.clock import SystemClock
        from bot.core.rounds import RoundService

        url = database_url(config, config_path=config_path)
        keyring = load_keyring(url, data_dir=default_data_dir(config_path))
        store = await _open_store(url, config_path, keyring)
        return store, RoundService(store, lambda: None, SystemClock(), keyring=keyring)

    return config, open_service


def cmd_forget(args: argparse.Namespace) -> int:
    from bot.anonymity import SecretProblem
    from bot.core.forgetting import forget_person

    platform, _, user = args.person.partition(":")
    if platform not in ("slack", "discord", "console") or not user:
        print(
            f"'{args.person}' is not PLATFORM:USER_ID; write e.g. slack:U0123 or discord:1234",
            file=sys.stderr,
        )
        return 2
    opened = _privacy_service(args)
    if opened is None:
        return 1
    _, open_service = opened

    async def main():
        store, service = await open_service()
        try:
            return await forget_person(service, args.person)
        finally:
            await store.close()

    try:
        done = asyncio.run(main())
    except SecretProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"Deleted {done.answers} answer(s) of {args.person}: {done.named} named, "
        f"{done.anonymous} anonymous in open rounds; {done.dedup_rows} dedup row(s)."
    )
    if done.unreadable_rounds:
        print(
            f"{done.unreadable_rounds} open round(s) have anonymous answers sealed with a "
            "lost server secret; they link to nobody and were left.",
            file=sys.stderr,
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from bot.anonymity import SecretProblem
    from bot.history import parse_since
    from bot.privacy import digests, export_text

    opened = _privacy_service(args)
    if opened is None:
        return 1
    config, open_service = opened
    try:
        since = parse_since(args.since, ZoneInfo(config.timezone)) if args.since else None
    except ValueError:
        print(f"--since: '{args.since}' is not a date; write it as 2026-11-01", file=sys.stderr)
        return 2

    async def main() -> str:
        store, service = await open_service()
        try:
            found = await digests(service, round_id=args.round, channel=args.channel, since=since)
            return export_text(found, args.format)
        finally:
            await store.close()

    try:
        sys.stdout.write(asyncio.run(main()))
    except SecretProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_prompts_draft(args: argparse.Namespace) -> int:
    from bot.config import load_config
    from bot.drafting import DraftError, draft_command

    prompts_dir = None
    if args.append is None:  # ids and tags in use come from the configured prompts folder
        try:
            config, _ = load_config(resolve_config_path(args.config))
            prompts_dir = (resolve_config_path(args.config).parent / config.prompts_dir).resolve()
        except (ProblemsFound, OSError):
            prompts_dir = None
    try:
        entry, appended = asyncio.run(
            draft_command(
                args.source,
                append=Path(args.append) if args.append else None,
                prompts_dir=prompts_dir,
                fetch_timeout=args.timeout,
                allow_duplicate=args.allow_duplicate,
            )
        )
    except DraftError as exc:
        print(getattr(exc, "entry", ""), end="")  # a draft that was not appended
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(entry, end="")
    if appended:
        print(
            f"Appended to {appended}. Review it, then run `roundtable validate`.", file=sys.stderr
        )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from bot.config import check_channel, database_url
    from bot.core.clock import SystemClock
    from bot.plan import format_plan, plan_channel, scheduled_channels

    library = _load(args)
    if library is None:
        return 1
    scheduled = scheduled_channels(library)
    if args.channel:
        try:
            check_channel(args.channel)
        except ValueError as exc:
            print(f"--channel: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        if args.channel not in scheduled:
            known = ", ".join(scheduled) or "none: the config has no schedules"
            print(
                f"--channel: no schedule posts in {args.channel} (scheduled channels: {known})",
                file=sys.stderr,
            )
            return ExitCode.USAGE
    channels = [args.channel] if args.channel else scheduled

    async def main() -> str:
        now = SystemClock().now()
        url = database_url(library.config, config_path=library.config_path)
        store = await _open_store(url, library.config_path)
        try:
            blocks = []
            for channel in channels:
                coming = await plan_channel(
                    library, store, channel, now, until=now + timedelta(days=args.days)
                )
                blocks.append(format_plan(channel, coming))
            return "\n\n".join(blocks) or "No schedules are configured."
        finally:
            await store.close()

    print(asyncio.run(main()))
    return 0


def cmd_discord_invite_url(args: argparse.Namespace) -> int:
    from bot.adapters.discord.client import application_id_from_token, invite_url

    app_id = args.application_id
    token = Secrets.from_env().discord_bot_token
    if app_id is None and token:
        app_id = application_id_from_token(token)
        if app_id is None:
            raise Fault(
                "DISCORD_BOT_TOKEN is malformed, so it does not name the application; copy it "
                "again (Developer Portal → Bot → Reset Token) or pass --application-id",
                ExitCode.SETUP,
            )
    if app_id is None:
        print(
            "Pass --application-id (Developer Portal → General Information → Application ID) "
            "or set DISCORD_BOT_TOKEN.",
            file=sys.stderr,
        )
        return 1
    print(invite_url(app_id))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), not a usage block."""

    def error(self, message: str):
        self.exit(ExitCode.USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _log_level(value: str) -> str:
    level = value.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise argparse.ArgumentTypeError(
            f"'{value}' is not a log level; use DEBUG, INFO, WARNING or ERROR"
        )
    return level


def _days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of days") from None
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError(f"{days} is not between 1 and 3650 days")
    return days


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="roundtable",
        description="Roundtable runs recurring team discussions in Slack, Discord and the console.",
        epilog=EXIT_CODES_HELP + "\nSee docs/exit-codes.md for what to do about each.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the bot (console adapter when no tokens are set)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="check the config and every prompt set")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser(
        "history", help="list past rounds: what was asked where, and how many answered"
    )
    p.add_argument("--channel", help="only this channel, e.g. console:general or slack:C0123")
    p.add_argument("--since", help="only rounds from this date on (YYYY-MM-DD, config time zone)")
    p.set_defaults(func=cmd_history)
    p = sub.add_parser(
        "forget", help="delete a person's answers (named; anonymous ones in open rounds)"
    )
    p.add_argument("person", metavar="PLATFORM:USER_ID", help="e.g. slack:U0123 or discord:1234")
    p.set_defaults(func=cmd_forget)
    p = sub.add_parser("export", help="write the closed rounds' digests (md, csv or json)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--round", type=int, metavar="ID", help="only this round")
    which.add_argument("--channel", help="only this channel, e.g. slack:C0123")
    p.add_argument("--since", help="only rounds from this date on (YYYY-MM-DD, config time zone)")
    p.add_argument("--format", choices=("md", "csv", "json"), default="md")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("plan", help="list the coming scheduled rounds per channel")
    p.add_argument("--days", type=_days, default=28, help="how far ahead (default: 28 days)")
    p.add_argument("--channel", help="only this channel, e.g. console:general or slack:C0123")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("prompts", help="work with prompt sets")
    prompts_sub = p.add_subparsers(dest="prompts_command", required=True, metavar="ACTION")
    d = prompts_sub.add_parser(
        "draft", help="draft a prompt entry from an article (text file, HTML file or URL)"
    )
    d.add_argument("source", help="a .txt or .html file, or an http(s) URL")
    d.add_argument(
        "--append",
        metavar="prompts/SET.yaml",
        help="add the draft to this set, keeping its comments and formatting",
    )
    d.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for a URL (default: 15)"
    )
    d.add_argument(
        "--allow-duplicate",
        action="store_true",
        help="append even when the set already has this article (same URL or title)",
    )
    d.set_defaults(func=cmd_prompts_draft)
    p = sub.add_parser("preview", help="print a prompt exactly as a round would post it")
    p.add_argument("prompt_id", nargs="?", help="prompt id (default: the first prompt)")
    p.set_defaults(func=cmd_preview)
    p = sub.add_parser("schema", help="write JSON Schemas for the config and prompt-set files")
    p.add_argument("--out", default="schemas", help="directory to write into (default: schemas)")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("discord", help="Discord helpers")
    discord_sub = p.add_subparsers(dest="discord_command", required=True, metavar="ACTION")
    d = discord_sub.add_parser(
        "invite-url", help="print the OAuth2 URL that adds the bot with minimal permissions"
    )
    d.add_argument(
        "--application-id", type=int, help="default: read from DISCORD_BOT_TOKEN (no network)"
    )
    d.set_defaults(func=cmd_discord_invite_url)
    for command in subcommand_parsers(parser):
        add_global_options(command, after_command=True)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """``--config``, ``--log-format`` and ``--log-level``, accepted before or after a command.

    Each subcommand gets a copy whose defaults are SUPPRESS, so a value given before the
    command is not overwritten by the copy's default, and its ``--help`` lists them.
    """

    def default(value: str | None) -> str | None:
        return argparse.SUPPRESS if after_command else value

    group = parser.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--config",
        default=default(None),
        help="config file (default: $ROUNDTABLE_CONFIG, else config/roundtable.yaml)",
    )
    group.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default("text"),
        help="text (default) or json, one object per line",
    )
    group.add_argument(
        "--log-level",
        default=default("INFO"),
        type=_log_level,
        help="DEBUG, INFO (default), WARNING or ERROR",
    )


def subcommand_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below ``parser``: commands and their actions (``prompts draft``)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *subcommand_parsers(child)]
    return found


def main(argv: list[str] | None = None) -> int:
    """Run one command; whatever happens, end with an exit code, never a traceback."""
    from bot.logsetup import install_excepthooks, setup_logging

    for stream in (sys.stdout, sys.stderr):  # text we cannot encode is escaped, not fatal
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, args.log_level, [*Secrets.from_env().values(), *_db_password()])
    install_excepthooks()
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows up here rather than at interpreter exit
        return int(code)
    except Fault as fault:
        log.error("%s", fault.message)
        return fault.code
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return ExitCode.BROKEN_PIPE
    except Exception as exc:
        log.error(
            "unexpected error: %s: %s (this is a bug: please report it; "
            "--log-level DEBUG shows the details)",
            type(exc).__name__,
            exc,
        )
        log.debug("traceback", exc_info=True)
        return ExitCode.INTERNAL


def _db_password() -> list[str]:
    """The password in ROUNDTABLE_DATABASE_URL, so no log line can show it."""
    import os

    from sqlalchemy.engine import make_url

    try:
        password = make_url(os.environ.get("ROUNDTABLE_DATABASE_URL", "")).password
    except Exception:
        return []
    return [str(password)] if password else []


def _silence_stdout() -> None:
    """The reader went away: point stdout at /dev/null so exiting does not complain again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
