"""The console adapter: type what you would type in Slack or Discord.

Commands are ``/discuss …`` lines; any other line is an answer to the channel's open
round (``2: …`` answers question 2). ``/as NAME`` switches who you are, for demos with
several people. Works interactively and with piped input; it returns at end of input.

A line that starts with ``/`` is always a command: a typo gets a did-you-mean, never
becomes an answer published under your name. On a terminal, lines are read with
readline (arrow keys, history; kept in memory only, since answers may be anonymous).
Nothing typed ends the console: undecodable bytes are replaced, and a database that is
away for a moment gets "try again in a moment".
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import re
import sys
import threading
import uuid
from typing import TextIO

from bot.config import ConsoleSettings
from bot.core import commands, render
from bot.core.dispatch import ChannelPost, Dispatcher, Posted
from bot.core.events import (
    Actor,
    CommandInvoked,
    MessagePosted,
    Reply,
    RoundPost,
    Summary,
    ThreadPost,
)
from bot.faults import is_transient_database_error

log = logging.getLogger(__name__)

PLATFORM = "console"
_ESCAPE_SEQUENCE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)?")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
CONSOLE_COMMANDS = ("/discuss", "/as", "/quit", "/exit")
READ_ONLY = frozenset({"help", "results", "next", "sets", "preview"})  # safe to retry
DATABASE_AWAY = (
    "The database did not answer, so that may not have been saved. Try again in a moment."
)


class ConsoleAdapter:
    name = PLATFORM

    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
    ):
        self.channel = f"{PLATFORM}:{settings.channel}"
        self.retry_delays: tuple[float, ...] = (0.25, 0.5, 1.0)  # backoff for read-only commands
        self.sleep = asyncio.sleep  # injected by tests
        self.user = settings.user
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = _isatty(self.stdin) if interactive is None else interactive
        if hasattr(self.stdin, "reconfigure"):  # invalid UTF-8 becomes U+FFFD, not a crash
            try:
                self.stdin.reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
        # readline edits lines only on the real terminal (input() reads sys.stdin)
        self.use_readline = (
            self.interactive and self.stdin is sys.stdin and _isatty(sys.stdout) and _readline()
        )

    # ---- output -------------------------------------------------------------------------

    def _print(self, text: str) -> None:
        self.stdout.write(text.rstrip("\n") + "\n")
        self.stdout.flush()

    async def post(self, message: ChannelPost) -> Posted | None:
        if isinstance(message, RoundPost):
            self._print(render.round_text(message))
            return Posted(message_ref=f"console-{message.round_key}")
        if isinstance(message, Summary):
            self._print(_indent(render.summary_text(message)))
        elif isinstance(message, ThreadPost):
            self._print(_indent(render.thread_post_text(message)))
        return None

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        return None  # the console keeps no history to search

    def show(self, reply: Reply | Summary | RoundPost) -> None:
        if isinstance(reply, Reply):
            self._print(reply.text)
        elif isinstance(reply, Summary):
            self._print(render.summary_text(reply))
        else:
            self._print(render.round_text(reply))

    # ---- input --------------------------------------------------------------------------

    def actor(self) -> Actor:
        return Actor(PLATFORM, self.user, self.user, is_admin=True)

    async def run(self, dispatcher: Dispatcher) -> None:
        """Handle lines until end of input (or ``/quit``)."""
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        next_prompt = threading.Event()  # readline: show the prompt after the last reply
        next_prompt.set()

        def pump() -> None:  # a daemon thread, so a blocked read never delays shutdown
            try:
                while True:
                    if self.use_readline:
                        next_prompt.wait()
                        next_prompt.clear()
                        try:
                            line = input(f"{self.user}> ") + "\n"
                        except EOFError:
                            break
                    else:
                        line = self.stdin.readline()
                        if not line:
                            break
                    loop.call_soon_threadsafe(lines.put_nowait, line)
            except Exception as exc:  # an unreadable stdin ends input, never the bot
                if not loop.is_closed():  # (a closed loop only means the bot is stopping)
                    log.error("cannot read the console input (%s: %s)", type(exc).__name__, exc)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        if self.interactive:
            self._print(
                f"Roundtable console — you are '{self.user}' in {self.channel}. "
                "Type /discuss help; Ctrl-D quits."
            )
        try:
            while True:
                if self.interactive and not self.use_readline:
                    self.stdout.write(f"{self.user}> ")
                    self.stdout.flush()
                line = await lines.get()
                if line is None:
                    return
                try:
                    if await self.handle_input(dispatcher, line) == "quit":
                        return
                finally:
                    next_prompt.set()
        finally:
            next_prompt.set()

    async def handle_input(self, dispatcher: Dispatcher, raw: str) -> str | None:
        """One line as typed; returns "quit" when the console should end."""
        # arrow keys typed without readline, NULs and other control bytes never reach an
        # answer (PostgreSQL cannot store a NUL; others would replay as terminal commands)
        line = _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", raw)).strip()
        if not line:
            return None
        if not line.startswith("/"):
            await self.handle_line(dispatcher, line)
            return None
        word, _, rest = line.partition(" ")
        word, rest = word.lower(), rest.strip()
        if word == "/discuss":
            await self.handle_line(dispatcher, f"/discuss {rest}".strip())
        elif word in ("/quit", "/exit"):
            if rest:
                self._print(f"`{word}` takes no arguments; type `{word}` alone to quit.")
                return None
            return "quit"
        elif word == "/as":
            if not rest:
                self._print(f"Usage: /as NAME (you are '{self.user}')")
                return None
            self.user = rest
            self._print(f"(you are now '{self.user}')")
        else:
            self._print(_unknown_command(word, rest))
        return None

    async def handle_line(self, dispatcher: Dispatcher, line: str) -> None:
        if commands.is_command(line):
            event = CommandInvoked(self.actor(), self.channel, line)
        else:
            event = MessagePosted(self.actor(), self.channel, line, f"console-{uuid.uuid4().hex}")
        try:
            replies = await self._handle_retrying(dispatcher, event)
        except Exception as exc:  # the console keeps running whatever one line ran into
            if is_transient_database_error(exc):
                log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
                self._print(DATABASE_AWAY)
            else:
                log.error("handling a console line failed: %s: %s", type(exc).__name__, exc)
                log.debug("traceback", exc_info=True)
                self._print("Something went wrong handling that (it was logged); try again.")
            return
        for reply in replies:
            self.show(reply)

    async def _handle_retrying(self, dispatcher: Dispatcher, event) -> list:
        """Handle an event; a read-only command is retried with backoff while the database
        is away for a moment. Writes are not retried here: the person is told to try again,
        so nothing is ever saved twice."""
        read_only = isinstance(event, CommandInvoked) and _command_name(event.text) in READ_ONLY
        delays = self.retry_delays if read_only else ()
        for delay in (*delays, None):
            try:
                return await dispatcher.handle(event)
            except Exception as exc:
                if delay is None or not is_transient_database_error(exc):
                    raise
                log.info("database unavailable (%s); retrying in %gs", type(exc).__name__, delay)
                await self.sleep(delay)
        raise AssertionError("unreachable")


def _command_name(text: str) -> str | None:
    try:
        return commands.parse(text).name
    except commands.CommandError:
        return None


def _unknown_command(word: str, rest: str) -> str:
    """What to say about ``/something`` that is not a console command."""
    name = word[1:]
    suggestion = None
    if name in commands.SPEC_BY_NAME:  # /help, /now, /results: the /discuss command
        suggestion = f"/discuss {name}"
    else:
        close = difflib.get_close_matches(word, CONSOLE_COMMANDS, n=1, cutoff=0.6)
        sub = difflib.get_close_matches(name, list(commands.SPEC_BY_NAME), n=1, cutoff=0.6)
        if close:
            suggestion = close[0]
        elif sub:
            suggestion = f"/discuss {sub[0]}"
    if suggestion is not None and rest:
        suggestion += f" {rest}"
    hint = f" Did you mean `{suggestion}`?" if suggestion else ""
    return (
        f"Unknown command `{word}`.{hint} Type `/discuss help` for the commands; to answer "
        "with text that starts with '/', use `/discuss answer <text>`."
    )


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False


def _readline() -> bool:
    """Load readline (line editing and in-memory history for input()) where it exists."""
    try:
        import readline  # noqa: F401
    except ImportError:
        return False
    return True


def _indent(text: str) -> str:
    return "\n".join("  | " + line if line else "  |" for line in text.splitlines())
