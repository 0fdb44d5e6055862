"""What the Slack benchmarks share: our bot, started the way ``python -m bot run`` is."""

from __future__ import annotations

from pathlib import Path

from bot.adapters.slack import SlackAdapter
from bot.app import Runtime, build_runtime, freeze_startup_objects
from bot.config import Secrets
from tests.slack.conftest import CONFIG, SECRET
from tests.support import write_library

TOKEN = "xoxb-bench"


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
