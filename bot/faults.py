"""Faults outside the admin's YAML: database, credentials, network, options, output.

A fault at start-up ends the program with ONE line that says what is wrong and what
to do, and a documented exit code (``ExitCode``, listed in ``docs/exit-codes.md`` and
in ``roundtable --help``). At run time the same classification decides whether an
error is transient (the database went away: tell the person to try again in a moment)
or a bug (log it, keep running).

Messages never contain a secret: database URLs are described by host, port, database
and user only, and every line is also passed through the log redaction filter.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.config import Config, Secrets


class ExitCode(IntEnum):
    """Exit codes of ``roundtable``; documented in docs/exit-codes.md and the CLI help."""

    OK = 0
    PROBLEMS = 1  # the config or a prompt set has problems, or the command was refused
    USAGE = 2  # bad command-line options or arguments
    SETUP = 3  # platform credentials missing, malformed or rejected
    DATABASE = 4  # the database cannot be reached, opened, created or migrated
    NETWORK = 5  # Slack or Discord cannot be reached, or a port is in use
    OUTPUT = 6  # an output file or folder cannot be written
    INTERNAL = 70  # an unexpected error (a bug): logged, please report it
    INTERRUPTED = 130  # stopped with Ctrl-C before start-up finished
    BROKEN_PIPE = 141  # the reader of our output went away (``roundtable preview | head``)


EXIT_CODES_HELP = """\
exit codes:
  0    success
  1    the config or a prompt set has problems (each printed as path:line:col: message)
  2    bad command-line options or arguments
  3    platform credentials missing, malformed or rejected (SLACK_*, DISCORD_BOT_TOKEN)
  4    the database cannot be reached, opened, created or migrated
  5    Slack or Discord cannot be reached, or a port is already in use
  6    an output file or folder cannot be written
  70   unexpected error (a bug; run with --log-level DEBUG and report it)
  130  interrupted (Ctrl-C) during start-up
  141  output pipe closed early (e.g. `roundtable preview | head`); nothing is printed
"""


class Fault(Exception):
    """Something outside the YAML stops the program: one line, and the exit code."""

    def __init__(self, message: str, code: ExitCode):
        super().__init__(message)
        self.message = message
        self.code = code


# ---- walking an exception ---------------------------------------------------------------


def chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``orig``), its causes and contexts."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.extend(
            x
            for x in (getattr(current, "orig", None), current.__cause__, current.__context__)
            if isinstance(x, BaseException)
        )
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)


def _is(exc: BaseException, *names: str) -> bool:
    """Is ``exc`` an instance of a class with one of these (qualified or bare) names?"""
    for cls in type(exc).__mro__:
        if cls.__name__ in names or f"{cls.__module__}.{cls.__qualname__}" in names:
            return True
    return False


def _find(exc: BaseException, *names: str) -> BaseException | None:
    return next((x for x in chain(exc) if _is(x, *names)), None)


def raised_in(exc: BaseException, *packages: str) -> bool:
    """Was this error (or one it wraps) raised inside one of these packages' code?"""
    for x in chain(exc):
        if type(x).__module__.split(".")[0] in packages:
            return True
        tb = x.__traceback__
        while tb is not None:
            module = tb.tb_frame.f_globals.get("__name__", "")
            if module.split(".")[0] in packages:
                return True
            tb = tb.tb_next
    return False


DATABASE_PACKAGES = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "alembic")
PLATFORM_PACKAGES = ("aiohttp", "discord", "slack_sdk", "slack_bolt", "websockets", "yarl")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# ---- the database -----------------------------------------------------------------------

_TRANSIENT_DB = (
    "OperationalError",  # SQLAlchemy: lost connection, server gone, database locked
    "InterfaceError",
    "DisconnectionError",
    "TimeoutError",
    "ConnectionError",
    "PostgresConnectionError",
    "ConnectionDoesNotExistError",
    "CannotConnectNowError",
    "TooManyConnectionsError",
    "ClientCannotConnectError",
    "ConnectionFailureError",
    "AdminShutdownError",
    "CrashShutdownError",
)


def is_transient_database_error(exc: BaseException) -> bool:
    """Would the same operation likely work in a moment (outage, lock, restart)?"""
    text = str(exc)
    if "no such table" in text or "no such column" in text or "syntax error" in text:
        return False  # SQLite reports schema and SQL bugs as OperationalError too
    for x in chain(exc):
        if _is(x, *_TRANSIENT_DB) or isinstance(x, ConnectionError | TimeoutError):
            return True
        if getattr(x, "connection_invalidated", False):
            return True
        if isinstance(x, OSError) and x.errno in (
            errno.ECONNREFUSED,
            errno.ECONNRESET,
            errno.ECONNABORTED,
            errno.EPIPE,
            errno.ETIMEDOUT,
            errno.EHOSTUNREACH,
            errno.ENETUNREACH,
        ):
            return True
        if "database is locked" in str(x) or "connection was closed" in str(x):
            return True
    return False


def describe_database(url: str) -> tuple[str, str, dict[str, str]]:
    """(backend, words for "where", parts) of a URL, without its password."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        return "unknown", "the configured database", {}
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = parsed.database or ":memory:"
        return backend, f"the SQLite database {path}", {"path": path}
    host = parsed.host or "localhost"
    where = f"PostgreSQL at {host}:{parsed.port or 5432}/{parsed.database or ''}"
    return (
        backend,
        where,
        {"host": host, "db": parsed.database or "", "user": parsed.username or ""},
    )


_URL_HINT = "check ROUNDTABLE_DATABASE_URL or database_url in the config"


def database_fault(exc: BaseException, url: str) -> Fault | None:
    """One line for a database that cannot be used at start-up, or None if not one."""
    backend, where, parts = describe_database(url)
    code = ExitCode.DATABASE
    if x := _find(exc, "InvalidCatalogNameError"):
        db = parts.get("db", "")
        return Fault(
            f"{where}: the database '{db}' does not exist; create it (createdb {db}) "
            f"or {_URL_HINT}",
            code,
        )
    if x := _find(exc, "InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
        return Fault(
            f"{where} refused the login ({_first_line(x)}); check the user and password "
            f"in the database URL ({_URL_HINT})",
            code,
        )
    if _find(exc, "gaierror"):
        return Fault(f"cannot find the database host '{parts.get('host', '?')}'; {_URL_HINT}", code)
    if isinstance(_find(exc, "ConnectionRefusedError"), ConnectionRefusedError):
        return Fault(
            f"cannot connect to {where}: connection refused; is the server running on that "
            f"host and port? ({_URL_HINT})",
            code,
        )
    if x := _find(exc, "OverflowError"):
        return Fault(f"the database URL is not usable ({_first_line(x)}); {_URL_HINT}", code)
    if _find(exc, "ArgumentError", "NoSuchModuleError", "ModuleNotFoundError"):
        return Fault(
            "the database URL is not usable: write it like sqlite:///data/roundtable.db "
            f"or postgresql://user@host/dbname ({_URL_HINT})",
            code,
        )
    if x := _find(exc, "CommandError"):  # alembic: e.g. a revision this version does not know
        return Fault(
            f"cannot migrate {where} ({_first_line(x)}); was it created by a newer "
            "Roundtable? Upgrade Roundtable or use another database",
            code,
        )
    for x in chain(exc):
        text = str(x)
        if "database is locked" in text:
            return Fault(
                f"{where} stayed locked by another process for 30 s; stop that process, or "
                "use PostgreSQL to run several bots on one database",
                code,
            )
        if "file is not a database" in text:
            return Fault(
                f"{where} is not a SQLite database file; point the database URL at a new "
                f"or the right file ({_URL_HINT})",
                code,
            )
        if "unable to open database file" in text:
            return Fault(
                f"cannot open {where}; make sure its folder exists and is writable ({_URL_HINT})",
                code,
            )
    if (x := _find(exc, "TimeoutError")) or isinstance(exc, TimeoutError):
        return Fault(f"{where} did not answer in time; is it reachable? ({_URL_HINT})", code)
    if isinstance(x := _find(exc, "OSError"), OSError):
        why = x.strerror or _first_line(x)
        if backend == "sqlite":
            return Fault(
                f"cannot create {where}: {why}; use a writable location ({_URL_HINT})", code
            )
        return Fault(f"cannot connect to {where}: {why} ({_URL_HINT})", code)
    if x := _find(exc, "DBAPIError", "SQLAlchemyError", "PostgresError"):
        inner = getattr(x, "orig", None) or x
        return Fault(f"{where}: {_first_line(inner)} ({_URL_HINT})", code)
    return None


# ---- credentials ------------------------------------------------------------------------


def discord_token_looks_valid(token: str) -> bool:
    """Three dot-separated base64url parts, the first the bot's numeric id."""
    import base64
    import binascii
    import re

    parts = token.split(".")
    if len(parts) != 3 or not all(re.fullmatch(r"[A-Za-z0-9_-]+", p) for p in parts):
        return False
    head = parts[0]
    try:
        text = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return False
    return text.isdigit()


def check_credentials(secrets: Secrets, config: Config) -> None:
    """Raise a Fault for credentials that cannot work, before anything connects."""
    code = ExitCode.SETUP
    if secrets.slack_app_token and not secrets.slack_bot_token:
        raise Fault(
            "SLACK_APP_TOKEN is set but SLACK_BOT_TOKEN is not; set the bot token "
            "(xoxb-…, Slack app → OAuth & Permissions) too",
            code,
        )
    if secrets.slack_signing_secret and not secrets.slack_bot_token:
        raise Fault(
            "SLACK_SIGNING_SECRET is set but SLACK_BOT_TOKEN is not; set the bot token "
            "(xoxb-…, Slack app → OAuth & Permissions) too",
            code,
        )
    if secrets.slack_bot_token:
        if not secrets.slack_bot_token.startswith("xoxb-"):
            raise Fault(
                "SLACK_BOT_TOKEN is malformed: a bot token starts with xoxb- (copy it from "
                "the Slack app → OAuth & Permissions → Bot User OAuth Token)",
                code,
            )
        if secrets.slack_app_token and not secrets.slack_app_token.startswith("xapp-"):
            raise Fault(
                "SLACK_APP_TOKEN is malformed: an app-level token starts with xapp- (Slack app "
                "→ Basic Information → App-Level Tokens, scope connections:write)",
                code,
            )
        socket_mode = bool(secrets.slack_app_token) and config.slack.mode != "http"
        if not socket_mode and not secrets.slack_signing_secret:
            if config.slack.mode == "http":
                raise Fault(
                    "slack.mode is http but SLACK_SIGNING_SECRET is not set; set it (Slack app "
                    "→ Basic Information → Signing Secret)",
                    code,
                )
            raise Fault(
                "SLACK_BOT_TOKEN is set but neither SLACK_APP_TOKEN (Socket Mode) nor "
                "SLACK_SIGNING_SECRET (HTTP mode) is; set one of them",
                code,
            )
    token = secrets.discord_bot_token
    if token is not None and not discord_token_looks_valid(token):
        hint = ""
        if token != token.strip() or token.strip()[:1] in "'\"":
            hint = " (remove the spaces or quotes around it)"
        elif token.lower().startswith("bot "):
            hint = " (set the token alone, without 'Bot ')"
        raise Fault(
            "DISCORD_BOT_TOKEN is malformed: a bot token has three parts separated by dots"
            f"{hint}; copy it again from Developer Portal → Bot → Reset Token",
            code,
        )


# ---- platforms ------------------------------------------------------------------------


def platform_fault(exc: BaseException, config: Config | None = None) -> Fault | None:
    """One line for Slack or Discord refusing us or being out of reach, or None."""
    if x := _find(exc, "LoginFailure"):
        return Fault(
            f"Discord rejected DISCORD_BOT_TOKEN ({_first_line(x)}); reset the token in the "
            "Developer Portal (Bot → Reset Token) and set it again",
            ExitCode.SETUP,
        )
    if _find(exc, "PrivilegedIntentsRequired"):
        return Fault(
            "Discord refused a privileged intent; switch on Message Content in the Developer "
            "Portal (Bot → Privileged Gateway Intents) or set discord.read_thread_replies: false",
            ExitCode.SETUP,
        )
    if x := _find(exc, "SlackApiError"):
        error = ""
        response = getattr(x, "response", None)
        try:
            error = str(response["error"]) if response is not None else ""
        except Exception:
            error = ""
        if error in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
            return Fault(
                f"Slack rejected SLACK_BOT_TOKEN ({error}); copy the Bot User OAuth Token "
                "again (Slack app → OAuth & Permissions) and reinstall the app if needed",
                ExitCode.SETUP,
            )
        return Fault(f"Slack refused to start the bot ({error or _first_line(x)})", ExitCode.SETUP)
    if x := _find(exc, "SlackClientConfigurationError", "SlackClientNotConnectedError"):
        return Fault(f"cannot connect to Slack ({_first_line(x)})", ExitCode.NETWORK)
    if _find(exc, "GatewayNotFound"):
        return Fault(
            "cannot reach the Discord gateway; check the network, or discord.gateway_url",
            ExitCode.NETWORK,
        )
    x = _find(exc, "ClientConnectorError", "ClientConnectionError", "WSServerHandshakeError")
    if x is None and raised_in(exc, *PLATFORM_PACKAGES) and not raised_in(exc, *DATABASE_PACKAGES):
        x = next(
            (e for e in chain(exc) if isinstance(e, OSError) and e.errno != errno.EADDRINUSE),
            None,
        )
    if x is not None:
        host = getattr(x, "host", None)
        port = getattr(x, "port", None)
        target = f"{host}:{port}" if host else "the platform"
        name = (
            "Discord"
            if raised_in(exc, "discord")
            else "Slack"
            if raised_in(exc, "slack_sdk", "slack_bolt")
            else _platform_named(host, config)
        )
        why = getattr(x, "strerror", None) or _first_line(x)
        setting = _setting_for(host, port, config) or (
            f"{name.lower()}.api_url" if name else "the api_url settings"
        )
        return Fault(
            f"cannot reach {name or 'Slack/Discord'} at {target} ({why}); check the "
            f"network and proxy, or {setting} in the config",
            ExitCode.NETWORK,
        )
    for e in chain(exc):
        if isinstance(e, OSError) and e.errno == errno.EADDRINUSE:
            port = config.slack.port if config else "the"
            return Fault(
                f"port {port} is already in use; stop the other program or set slack.port "
                "in the config",
                ExitCode.NETWORK,
            )
    return None


def _platform_named(host: str | None, config: Config | None) -> str | None:
    if not host or config is None:
        return None
    from urllib.parse import urlsplit

    for name, urls in (
        ("Slack", [config.slack.api_url]),
        ("Discord", [config.discord.api_url, config.discord.gateway_url]),
    ):
        if any(urlsplit(u).hostname == host for u in urls):
            return name
    return None


def _setting_for(host: str | None, port: object, config: Config | None) -> str | None:
    """The config setting whose URL points at host:port (the one to check)."""
    if not host or config is None:
        return None
    from urllib.parse import urlsplit

    for setting, url in (
        ("discord.api_url", config.discord.api_url),  # first: login comes before the gateway
        ("discord.gateway_url", config.discord.gateway_url),
        ("slack.api_url", config.slack.api_url),
    ):
        parts = urlsplit(url)
        default = 443 if parts.scheme in ("https", "wss") else 80
        try:
            same_port = (parts.port or default) == int(str(port))
        except ValueError:
            same_port = False
        if parts.hostname == host and same_port:
            return setting
    return None


# ---- output -----------------------------------------------------------------------------


def output_fault(exc: OSError, path: os.PathLike | str) -> Fault:
    why = exc.strerror or _first_line(exc)
    return Fault(f"cannot write {path}: {why}; choose another folder with --out", ExitCode.OUTPUT)
