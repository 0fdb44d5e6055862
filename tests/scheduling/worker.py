"""One scheduler process for the multi-process tests.

``python -m tests.scheduling.worker CONFIG DATABASE_URL INSTANT`` builds a full runtime
with a FakeClock at INSTANT, prints ``ready``, waits for ``go`` on stdin (so all workers
fire at the same moment), runs one tick and prints every round it posted as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime
from pathlib import Path

from bot.app import build_runtime
from bot.core.clock import FakeClock
from tests.support import RecordingPlatform


async def main(config: str, database: str, instant: str) -> None:
    clock = FakeClock(datetime.fromisoformat(instant))
    runtime = await build_runtime(Path(config), clock=clock, database=database)
    platform = RecordingPlatform()
    runtime.dispatcher.register(platform)
    scheduler = runtime.scheduler()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await scheduler.tick()
    for post in platform.rounds():
        print(json.dumps({"round_id": post.round_id, "channel": post.channel}), flush=True)
    print("done", flush=True)
    await runtime.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
