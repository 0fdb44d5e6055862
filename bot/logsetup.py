"""One configured logger for the whole process: readable on a terminal, JSON on request,
and never a secret in any line (tokens are replaced before a record is written)."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

# Shapes of platform credentials, redacted even if we were never told their values.
TOKEN_SHAPES = re.compile(
    r"xox[a-z]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|[MNO][A-Za-z\d_-]{23,25}\.[A-Za-z\d_-]{6}\.[A-Za-z\d_-]{27,}"
)
REDACTED = "[redacted]"
PAYLOAD_LOGGERS = ("slack_sdk", "slack_bolt", "discord", "aiohttp.client", "websockets")


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return TOKEN_SHAPES.sub(REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        clean = self.scrub(message)
        record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        return True


class OneLineErrors(logging.Filter):
    """Below DEBUG, an exception is told on its record's line, never as a traceback.

    Libraries log tracebacks for things that are not bugs (discord.py on every gateway
    reconnect, for example); admins get one line each, and ``--log-level DEBUG`` brings
    the tracebacks back.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            told = " ".join(str(exc).split())
            if len(told) > 300:
                told = told[:299] + "…"
            name = type(exc).__name__
            record.msg = (
                f"{record.getMessage()} ({name}: {told})"
                if told
                else f"{record.getMessage()} ({name})"
            )
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, ensure_ascii=False)


def setup_logging(fmt: str = "text", level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if level.upper() != "DEBUG":
        handler.addFilter(OneLineErrors())  # before redaction, which then sees the line
    handler.addFilter(RedactSecrets(secrets))
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiosqlite", "alembic", "asyncio", "discord.gateway", "discord.http"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # These print whole request and response bodies at DEBUG: an anonymous re-post right
    # next to the private confirmation naming its author. Never below INFO, whatever the
    # level (docs/privacy.md; tests/privacy/test_logs.py).
    for wire in PAYLOAD_LOGGERS:
        logging.getLogger(wire).setLevel(max(logging.INFO, root.level))


def install_excepthooks() -> None:
    """Uncaught errors (main thread or any other) become one log line, never a bare traceback.

    They go through the configured handler, so ``--log-format json`` stays JSON and the
    redaction filter sees them; the traceback itself is logged at DEBUG.
    """
    import threading

    log = logging.getLogger("bot")

    def report(exc_type, exc, tb, where: str = "") -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            return
        log.error("unexpected error%s: %s: %s", where, exc_type.__name__, exc)
        log.debug("traceback", exc_info=(exc_type, exc, tb))

    sys.excepthook = report
    threading.excepthook = lambda a: report(
        a.exc_type, a.exc_value, a.exc_traceback, f" in thread {a.thread.name if a.thread else '?'}"
    )
