"""The console takes typos, odd bytes and database outages calmly.

A line starting with ``/`` is never an answer; readline edits lines on a terminal;
invalid UTF-8 is replaced; a database that goes away (PostgreSQL behind a proxy that
drops and refuses connections, or a SQLite lock held past the busy timeout) gets "try
again in a moment" and the console keeps running until the database is back.
"""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import sqlite3
import subprocess
import sys
import time

import pytest

from bot.adapters.console import DATABASE_AWAY, ConsoleAdapter
from bot.config import ConsoleSettings
from bot.core.inbox import DELAYED, NOT_SAVED
from bot.storage import sqlite_driver
from tests.pgproxy import PgProxy
from tests.support import make_chat, write_library


class Screen:
    """The console's stdout: keeps the text and wakes whoever waits for a line."""

    def __init__(self):
        self.text = ""
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        self.text += text
        self.changed.set()
        return len(text)

    def flush(self) -> None:
        pass

    async def wait_for(self, needle: str | tuple[str, ...], since: int) -> str:
        """Wait until the text since ``since`` holds the needle (or one of them)."""
        needles = (needle,) if isinstance(needle, str) else needle
        async with asyncio.timeout(30):  # guards a hang only
            while not any(n in self.text[since:] for n in needles):
                self.changed.clear()
                await self.changed.wait()
        return self.text[since:]


class Keyboard:
    """A pipe the console reads lines from, written one line at a time by the test."""

    def __init__(self):
        r, w = os.pipe()
        self.reader = os.fdopen(r, "r", encoding="utf-8")
        self._writer = os.fdopen(w, "w", encoding="utf-8")

    def type(self, line: str) -> None:
        self._writer.write(line + "\n")
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


@pytest.fixture
async def console(tmp_path, sqlite_url):
    chat = await make_chat(write_library(tmp_path), sqlite_url)
    yield chat
    await chat.store.close()


async def run_script(chat, script: bytes | str) -> str:
    """Feed a whole input to a console bound to ``chat``'s runtime; return what it printed."""
    raw = script.encode() if isinstance(script, str) else script
    stdin = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8")
    screen = Screen()
    adapter = ConsoleAdapter(ConsoleSettings(), stdin=stdin, stdout=screen, interactive=False)
    await asyncio.wait_for(adapter.run(chat.dispatcher), 30)
    return screen.text


# ---- typos are commands, never answers ----------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("/discus help", "Unknown command `/discus`. Did you mean `/discuss help`?"),
        ("/help", "Unknown command `/help`. Did you mean `/discuss help`?"),
        ("/resluts", "Did you mean `/discuss results`?"),
        ("/quit now", "`/quit` takes no arguments"),
        ("/exit please", "`/exit` takes no arguments"),
        ("/as", "Usage: /as NAME"),
        ("/as   ", "Usage: /as NAME"),
        ("/wat is this", "Unknown command `/wat`. Type `/discuss help`"),
        ("/r/programming says hi", "use `/discuss answer <text>`"),
    ],
)
async def test_a_slash_typo_is_a_command_error_never_an_answer(console, line, expected):
    out = await run_script(console, f"/discuss now\n{line}\n/discuss results\n")
    assert expected in out
    assert "Saved your answer" not in out
    assert "0 people shared" in out  # nothing was published under your name


async def test_commands_are_case_insensitive_in_the_console(console):
    out = await run_script(console, "/DISCUSS HELP\n/Discuss Help\n")
    assert out.count("Roundtable commands:") == 2


async def test_slash_answers_are_still_possible_and_quit_ends(console):
    out = await run_script(
        console, "/discuss now\n/discuss answer /r/programming says hi\n/quit\nafter quit\n"
    )
    assert "Saved your answer" in out
    results = await console.say("/discuss results")
    assert "/r/programming says hi" in results and "after quit" not in results


async def test_invalid_utf8_on_stdin_is_replaced_not_fatal(console):
    out = await run_script(console, b"/discuss now\ncaf\xff\xfe answer\n/discuss results\n")
    assert "Saved your answer" in out
    assert "caf\ufffd\ufffd answer" in out


async def test_an_unexpected_handler_error_keeps_the_console_running(console, monkeypatch, caplog):
    async def broken(event, command):
        raise KeyError("a bug")

    console.dispatcher.handlers.commands["next"] = broken
    out = await run_script(console, "/discuss next\n/discuss help\n")
    assert "try again" in out  # said by the inbox (or the console, if it raises)
    assert "Roundtable commands:" in out
    assert "KeyError" in caplog.text


async def test_an_exception_out_of_the_dispatcher_keeps_the_console_running():
    screen = Screen()
    adapter = ConsoleAdapter(
        ConsoleSettings(), stdin=io.StringIO(), stdout=screen, interactive=False
    )

    class Broken:
        async def handle(self, event):
            raise KeyError("a bug")

    await adapter.handle_input(Broken(), "/discuss next")
    assert "Something went wrong handling that (it was logged); try again." in screen.text


# ---- readline on a terminal ----------------------------------------------------------------


def test_readline_edits_lines_and_keeps_history_on_a_terminal(tmp_path):
    write_library(tmp_path)
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DISCORD_"))}
    env.update(TERM="xterm", ROUNDTABLE_DATABASE_URL=f"sqlite:///{tmp_path / 'r.db'}")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "run"],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen = b""

    def expect(needle: bytes, after: bytes = b"") -> None:
        """Read until ``needle`` shows (after ``after``; readline redraws the prompt)."""
        nonlocal seen
        deadline = time.monotonic() + 30  # guards a hang only
        while after not in seen or needle not in seen[seen.index(after) + len(after) :]:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"timed out waiting for {needle!r}; got {seen[-500:]!r}"
            try:
                seen += os.read(master, 4096)
            except OSError:
                break

    try:
        expect(b"you> ")
        os.write(master, b"/discuss now\r")
        expect(b"you> ", after=b"Round ")
        seen = b""
        os.write(master, b"abc\x1b[D\x1b[DX\r")  # two steps left, insert X: "aXbc"
        expect(b"you> ", after=b"Saved your answer")
        seen = b""
        os.write(master, b"/discuss results\r")
        expect(b"you> ", after=b"Results so far")
        results = seen
        seen = b""
        os.write(master, b"\x1b[A\r")  # arrow up: the previous line again, from history
        expect(b"you> ", after=b"Results so far")
        os.write(master, b"\x04")  # Ctrl-D ends the console
        deadline = time.monotonic() + 30  # guards a hang only
        while process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:  # keep reading, so the bot never blocks writing to the terminal
                try:
                    os.read(master, 4096)
                except OSError:
                    pass
        process.wait(timeout=5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    assert b"you: aXbc" in results
    assert b"[D" not in results.split(b"Results so far", 1)[1]
    assert process.returncode == 0


# ---- the database goes away and comes back -------------------------------------------------


AWAY = (DATABASE_AWAY, NOT_SAVED, DELAYED)  # what a person waiting may be told


async def _console_session(chat):
    keyboard = Keyboard()
    screen = Screen()
    adapter = ConsoleAdapter(
        ConsoleSettings(), stdin=keyboard.reader, stdout=screen, interactive=False
    )
    slept: list[float] = []

    async def no_wait(delay: float) -> None:  # backoff without waiting
        slept.append(delay)

    adapter.sleep = no_wait
    chat.dispatcher.inbox._sleep = no_wait  # the inbox's own retries, without waiting
    chat.dispatcher.register(adapter)
    task = asyncio.create_task(adapter.run(chat.dispatcher))

    async def say(line: str, expect: str | tuple[str, ...]) -> str:
        """Type a line; return the output once ``expect`` shows and the line is fully handled."""
        since = len(screen.text)
        keyboard.type(line)
        await screen.wait_for(expect, since)
        keyboard.type("/as you")  # handled in order and without the database: marks the end
        out = await screen.wait_for("(you are now 'you')", since)
        return out[: out.rindex("(you are now 'you')")]

    return keyboard, task, say


async def test_console_survives_postgresql_going_away_and_coming_back(tmp_path, pg_url):
    proxy = await PgProxy.for_url(pg_url).start()  # the server behind it is never touched
    chat = await make_chat(write_library(tmp_path), proxy.url(pg_url))
    keyboard, task, say = await _console_session(chat)
    try:
        await say("/discuss now", "Round ")
        await say("before the outage", "Saved your answer")

        await proxy.down()  # connections dropped, new ones refused
        during = await say("during the outage", AWAY)
        assert "Saved your answer" not in during
        await say("/discuss results", AWAY)
        assert not task.done(), "the console ended"

        await proxy.up()  # the database is back
        await say("after the outage", "Saved your answer")
        results = await say("/discuss results", "Results so far")
        assert "before the outage" in results and "after the outage" in results
        if DELAYED not in during:  # told it was not saved: then it is not there
            assert "during the outage" not in results
    finally:
        keyboard.close()
        await asyncio.wait_for(task, 30)
        await proxy.close()
        await chat.store.close()
    assert task.exception() is None


async def test_console_survives_a_sqlite_lock_held_past_the_busy_timeout(tmp_path, monkeypatch):
    path = tmp_path / "locked.db"
    chat = await make_chat(write_library(tmp_path), f"sqlite+aiosqlite:///{path}")
    # the real wait for a busy database is 30 s; the same error arrives after 0.2 s here
    monkeypatch.setattr(sqlite_driver, "BUSY_WAIT", 0.2)
    keyboard, task, say = await _console_session(chat)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await say("/discuss now", "Round ")
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        during = await say("while locked", AWAY)
        assert "Saved your answer" not in during
        assert not task.done()
        holder.execute("COMMIT")
        await say("after the lock", "Saved your answer")
        results = await say("/discuss results", "Results so far")
        assert "after the lock" in results
        if DELAYED not in during:  # told it was not saved: then it is not there
            assert "while locked" not in results
    finally:
        holder.close()
        keyboard.close()
        await asyncio.wait_for(task, 30)
        await chat.store.close()


async def test_escape_sequences_and_nul_bytes_never_reach_an_answer(console):
    out = await run_script(console, b"/discuss now\nab\x1b[Dc\x00d\x1b[A\x07\n/discuss results\n")
    assert "Saved your answer" in out
    assert "you: abcd" in out


class FlakyDispatcher:
    """Fails the first ``failures`` calls the way a lost PostgreSQL connection does."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0

    async def handle(self, event):
        from sqlalchemy.exc import OperationalError

        from bot.core.events import Reply

        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("SELECT 1", {}, ConnectionResetError("connection lost"))
        return [Reply("done")]


@pytest.mark.parametrize(
    ("failures", "shown", "waits"), [(2, "done", [0.25, 0.5]), (9, DATABASE_AWAY, [0.25, 0.5, 1.0])]
)
async def test_read_only_commands_are_retried_with_backoff(failures, shown, waits):
    screen = Screen()
    adapter = ConsoleAdapter(
        ConsoleSettings(), stdin=io.StringIO(), stdout=screen, interactive=False
    )
    slept: list[float] = []

    async def no_wait(delay: float) -> None:
        slept.append(delay)

    adapter.sleep = no_wait
    dispatcher = FlakyDispatcher(failures)
    await adapter.handle_input(dispatcher, "/discuss results")
    assert shown in screen.text and slept == waits


async def test_answers_are_not_retried_so_nothing_is_saved_twice():
    screen = Screen()
    adapter = ConsoleAdapter(
        ConsoleSettings(), stdin=io.StringIO(), stdout=screen, interactive=False
    )
    dispatcher = FlakyDispatcher(1)
    await adapter.handle_input(dispatcher, "my answer")
    assert DATABASE_AWAY in screen.text and dispatcher.calls == 1


def test_which_database_errors_are_transient():
    import sqlite3 as sq

    from sqlalchemy.exc import IntegrityError, OperationalError

    from bot.faults import is_transient_database_error

    assert is_transient_database_error(
        OperationalError("x", {}, sq.OperationalError("database is locked"))
    )
    assert is_transient_database_error(ConnectionRefusedError(111, "refused"))
    assert not is_transient_database_error(
        OperationalError("x", {}, sq.OperationalError("no such table: t"))
    )
    assert not is_transient_database_error(IntegrityError("x", {}, sq.IntegrityError("UNIQUE")))
    assert not is_transient_database_error(KeyError("bug"))
