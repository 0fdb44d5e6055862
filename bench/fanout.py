"""Fan-out: one scheduled round into N Slack channels, against a floor measured alongside.

Run by hand: ``.venv/bin/python bench/fanout.py [N] [RUNS]`` (default 500 channels, 3 runs).
Everything runs on loopback against the Web API fake from tests/slack.

* roundtable: a real runtime (SQLite file, WAL; commits that precede "saved" or a post
  wait for the disk, synchronous=FULL) and the real Slack
  adapter; ``Scheduler.tick`` at the fire instant claims the occurrence in all channels
  and delivers the N round posts through the outbox (20 in flight).
* floor: one SQLite transaction writing one row per channel (same pragmas), then the same
  N ``chat.postMessage`` calls (same blocks) with one shared-session ``AsyncWebClient``,
  20 in flight.

Prints wall time and CPU time of each, and the ratio. Target: roundtable <= 2x the floor.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402

from bot.adapters.slack import SlackAdapter, blocks  # noqa: E402
from bot.app import build_runtime, freeze_startup_objects  # noqa: E402
from bot.config import Secrets  # noqa: E402
from bot.core.clock import FakeClock  # noqa: E402
from bot.core.events import RoundPost  # noqa: E402
from bot.core.rounds import prompt_view  # noqa: E402
from tests.slack.conftest import SECRET  # noqa: E402
from tests.slack.fake_slack import FakeSlack  # noqa: E402
from tests.support import write_library  # noqa: E402

TOKEN = "xoxb-bench"
IN_FLIGHT = 20
FIRE = datetime(2026, 11, 2, 10, 0, 5, tzinfo=UTC)  # a Monday, 5 s after 10:00

CONFIG = """\
timezone: UTC
prompts_dir: ../prompts
schedules:
  - name: weekly
    prompt_set: mini
    cron: "0 10 * * mon"
    channels: [{channels}]
slack:
  mode: http
  port: 3000
  api_url: {api_url}
"""


def channel_ids(n: int) -> list[str]:
    return [f"C{i:05d}" for i in range(n)]


async def ours(fake: FakeSlack, n: int, tmp: Path) -> tuple[float, float]:
    channels = ", ".join(f"slack:{c}" for c in channel_ids(n))
    config = write_library(tmp, CONFIG.format(channels=channels, api_url=fake.api_url))
    clock = FakeClock(datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
    runtime = await build_runtime(
        config,
        clock=clock,
        secrets=Secrets(slack_bot_token=TOKEN, slack_signing_secret=SECRET),
        database=f"sqlite+aiosqlite:///{tmp}/ours.db",
    )
    adapter = SlackAdapter(runtime.ports)
    await adapter.start(host="127.0.0.1", port=0)
    freeze_startup_objects()  # as `python -m bot run` does once started
    scheduler = runtime.scheduler()
    await scheduler.tick()  # first start, an hour early: nothing due (bounds recorded)
    clock.set(FIRE)
    before = len(fake.calls_to("chat.postMessage"))
    wall, cpu = time.perf_counter(), time.process_time()
    report = await scheduler.tick()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    posted = len(fake.calls_to("chat.postMessage")) - before
    assert len(report.opened) == n and posted == n, (len(report.opened), posted)
    await adapter.stop()
    await runtime.close()
    return wall, cpu


async def floor(fake: FakeSlack, n: int, tmp: Path, post: RoundPost) -> tuple[float, float]:
    db = sqlite3.connect(tmp / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE rounds (id INTEGER PRIMARY KEY, channel TEXT, status TEXT)")
    session = aiohttp.ClientSession()
    client = AsyncWebClient(token=TOKEN, base_url=fake.api_url, session=session)
    await client.auth_test()
    limit = asyncio.Semaphore(IN_FLIGHT)
    kwargs = {
        "text": post.prompt.title,
        "blocks": blocks.round_blocks(post),
        "metadata": blocks.round_metadata(post),
    }

    async def one(channel: str) -> None:
        async with limit:
            await client.chat_postMessage(channel=channel, **kwargs)

    wall, cpu = time.perf_counter(), time.process_time()
    db.execute("BEGIN IMMEDIATE")
    db.executemany(
        "INSERT INTO rounds (channel, status) VALUES (?, 'posted')",
        [(c,) for c in channel_ids(n)],
    )
    db.execute("COMMIT")
    await asyncio.gather(*(one(c) for c in channel_ids(n)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    await session.close()
    db.close()
    return wall, cpu


async def main(n: int, runs: int) -> None:
    from bot.library import load_library

    fake = FakeSlack()
    await fake.start()
    results: dict[str, list[tuple[float, float]]] = {"roundtable": [], "floor": []}
    with tempfile.TemporaryDirectory() as tmp:
        lib = load_library(
            write_library(
                Path(tmp) / "lib",
                CONFIG.format(channels="slack:C0", api_url="http://127.0.0.1:1/api/"),
            )
        )
        prompt = next(iter(lib.prompt_sets.values())).prompts[0]
        post = RoundPost(1, "rt-1", "slack:C0", prompt_view(prompt), True)
        for run in range(runs):  # interleaved, so both see the same machine load
            run_dir = Path(tmp) / f"run{run}"
            (run_dir / "ours").mkdir(parents=True)
            (run_dir / "floor").mkdir()
            results["floor"].append(await floor(fake, n, run_dir / "floor", post))
            results["roundtable"].append(await ours(fake, n, run_dir / "ours"))
    await fake.close()
    print(f"one scheduled round into {n} Slack channels, {IN_FLIGHT} in flight, {runs} runs")
    print(f"{'':<12}{'wall s (best)':>15}{'wall s (median)':>17}{'cpu s (median)':>16}")
    summary = {}
    for name, values in results.items():
        walls = sorted(w for w, _ in values)
        cpus = sorted(c for _, c in values)
        summary[name] = (walls[0], walls[len(walls) // 2], cpus[len(cpus) // 2])
        best, median, cpu = summary[name]
        print(f"{name:<12}{best:>15.3f}{median:>17.3f}{cpu:>16.3f}")
    ratio = summary["roundtable"][1] / summary["floor"][1]
    cpu_ratio = summary["roundtable"][2] / summary["floor"][2]
    print(
        f"ratio (median wall): {ratio:.2f}x   ratio (median cpu): {cpu_ratio:.2f}x   target <= 2x"
    )
    print(f"per channel: {summary['roundtable'][1] / n * 1000:.2f} ms wall")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(args[0] if args else 500, args[1] if len(args) > 1 else 3))
