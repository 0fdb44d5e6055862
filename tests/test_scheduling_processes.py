"""Several bot processes on one database fire at the same instant: each round once.

Real subprocesses (``tests/scheduling/worker.py``), real SQLite and PostgreSQL; every
worker waits for "go" on stdin so the ticks really overlap.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.storage.models import Round
from bot.storage.store import Store
from tests.support import REPO, write_library

CONFIG = """\
timezone: Europe/Berlin
prompts_dir: ../prompts
schedules:
  - name: weekly
    prompt_set: mini
    cron: "0 10 * * mon"
    channels: [console:a, console:b, console:c, console:d, console:e]
"""
FIRE = datetime(2026, 11, 2, 10, 0, 30, tzinfo=ZoneInfo("Europe/Berlin"))


async def run_workers(n: int, config: str, url: str) -> list[dict]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.scheduling.worker",
            config,
            url,
            FIRE.isoformat(),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for proc in procs:  # every process is up and migrated before any fires
        assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
    for proc in procs:
        proc.stdin.write(b"go\n")
    for proc in procs:
        await proc.stdin.drain()
    posted = []
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        lines = out.decode().splitlines()
        assert lines[-1] == "done" and proc.returncode == 0
        posted += [json.loads(line) for line in lines[:-1]]
    return posted


@pytest.mark.parametrize("n", [2, 3])
async def test_concurrent_processes_post_each_round_once(tmp_path, database_url, n):
    config = write_library(tmp_path, CONFIG)
    store = await Store.open(database_url)  # migrate once up front, like a deploy would
    try:
        posted = await run_workers(n, str(config), database_url)
        assert sorted(p["channel"] for p in posted) == [f"console:{c}" for c in "abcde"]
        async with store.session() as s:
            rows = (await s.scalars(select(Round))).all()
        assert sorted((r.channel, r.occurrence, r.status) for r in rows) == [
            (f"console:{c}", "2026-11-02T10:00", "posted") for c in "abcde"
        ]
        assert sorted(p["round_id"] for p in posted) == sorted(r.id for r in rows)
    finally:
        await store.close()
