"""What the Slack benchmarks share: our bot, started the way ``python -m bot run`` is."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from bot.adapters.slack import SlackAdapter
from bot.app import Runtime, build_runtime, freeze_startup_objects
from bot.config import Secrets
from tests.slack.conftest import CONFIG, SECRET
from tests.support import write_library

TOKEN = "xoxb-bench"
ROOT = Path(__file__).resolve().parent.parent


async def start_roundtable(folder: Path, api_url: str) -> tuple[Runtime, SlackAdapter]:
    """A runtime on a SQLite file in ``folder`` and its Slack adapter (HTTP mode) on a
    loopback port, against the Web API at ``api_url``."""
    config = CONFIG.format(admin="UADMIN", mode="http", port=3000, api_url=api_url)
    runtime = await build_runtime(
        write_library(folder, config=config),
        secrets=Secrets(slack_bot_token=TOKEN, slack_signing_secret=SECRET),
        database=f"sqlite+aiosqlite:///{folder}/roundtable.db",
    )
    adapter = SlackAdapter(runtime.ports)
    await adapter.start(host="127.0.0.1", port=0)
    freeze_startup_objects()  # as `python -m bot run` does once started
    return runtime, adapter


async def in_second_process(script: str, plan: dict) -> Any:
    """Run ``script --send PLAN`` (the people or Slack sending requests, in a process of
    their own) and return the JSON it prints."""
    sender = await asyncio.create_subprocess_exec(
        sys.executable, script, "--send", json.dumps(plan), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await sender.communicate()
    if sender.returncode:
        raise SystemExit(f"the sending process failed ({sender.returncode})")
    return json.loads(out)


@contextlib.asynccontextmanager
async def web_api_process() -> AsyncIterator[tuple[str, str]]:
    """The Web API fake from tests/slack in a process of its own, as Slack's servers are:
    the confirmations and ``users.info`` calls our bot makes cost it its own work only.
    Yields its API base URL and a ``response_url`` prefix."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, bench.common as c; asyncio.run(c.serve_web_api())",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        api_url, response_url = json.loads(await process.stdout.readline())
        yield api_url, response_url
    finally:
        process.stdin.close()
        await process.wait()


async def serve_web_api() -> None:
    from tests.slack.fake_slack import FakeSlack

    fake = FakeSlack()
    await fake.start()
    print(json.dumps([fake.api_url, fake.response_url("")]), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    await fake.close()


@contextlib.contextmanager
def sender_gc_paused() -> Iterator[None]:
    """For the sending process while it times requests: its garbage collector paused,
    and run once after. A full collection of the sender's heap takes about 90 ms here;
    it would stop the clock of every request in flight, of whichever server was being
    measured at that moment: the sender's pause, not the server's latency. The servers'
    process keeps its collector as it runs in production."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()
