"""The console adapter: type what you would type in Slack or Discord.

Commands are ``/discuss …`` lines; any other line is an answer to the channel's open
round (``2: …`` answers question 2). ``/as NAME`` switches who you are, for demos with
several people. Works interactively and with piped input; it returns at end of input.
"""

from __future__ import annotations

import asyncio
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

PLATFORM = "console"


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
        self.user = settings.user
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.interactive = self.stdin.isatty() if interactive is None else interactive

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

        def pump() -> None:  # a daemon thread, so a blocked read never delays shutdown
            for line in iter(self.stdin.readline, ""):
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=pump, name="console-stdin", daemon=True).start()
        if self.interactive:
            self._print(
                f"Roundtable console — you are '{self.user}' in {self.channel}. "
                "Type /discuss help; Ctrl-D quits."
            )
        while True:
            if self.interactive:
                self.stdout.write(f"{self.user}> ")
                self.stdout.flush()
            line = await lines.get()
            if line is None:
                return
            line = line.strip()
            if not line:
                continue
            if line in ("/quit", "/exit"):
                return
            if line.startswith("/as "):
                self.user = line[4:].strip() or self.user
                self._print(f"(you are now '{self.user}')")
                continue
            await self.handle_line(dispatcher, line)

    async def handle_line(self, dispatcher: Dispatcher, line: str) -> None:
        if commands.is_command(line):
            event = CommandInvoked(self.actor(), self.channel, line)
        else:
            event = MessagePosted(self.actor(), self.channel, line, f"console-{uuid.uuid4().hex}")
        for reply in await dispatcher.handle(event):
            self.show(reply)


def _indent(text: str) -> str:
    return "\n".join("  | " + line if line else "  |" for line in text.splitlines())
