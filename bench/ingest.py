"""Ingest: N people answer at once with a signed ``/discuss answer``; our bot vs a floor.

Run by hand: ``.venv/bin/python bench/ingest.py [N] [IN_FLIGHT]`` (default 500 and 50).
Everything runs on loopback. The two servers share this process; the people answering
are a second process (its collector notes when each confirmation arrives at its
``response_url``), and the Web API fake from tests/slack is a third, as Slack is not in
our process: what our bot does for an answer is all that its process does.

* roundtable: a real runtime (SQLite file, WAL; commits that precede "saved" or a post
  wait for the disk, synchronous=FULL) and the real Slack
  adapter in HTTP mode, with a round open in the channel.
* floor: a minimal aiohttp endpoint that verifies the signature, INSERTs the answer into
  SQLite (same pragmas, one commit), answers 200 and posts the confirmation to the
  ``response_url`` with one shared session.

Prints throughput (answers/s until the last confirmation) and time-to-confirmation
percentiles, and the ratios. Targets: throughput >= 0.5x, p99 <= 3x the floor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import aiosqlite  # noqa: E402
from aiohttp import web  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402

from bench.common import sender_gc_paused, start_roundtable  # noqa: E402
from tests.slack.conftest import SECRET, sign  # noqa: E402


class Collector:
    """Receives confirmations; remembers when each one arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Event] = {}
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/confirm/{name}", self._confirm)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}/confirm/"

    async def _confirm(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await request.read()
        self.arrived.setdefault(name, time.perf_counter())
        self.waiters.setdefault(name, asyncio.Event()).set()
        return web.Response(text="ok")

    async def wait(self, name: str) -> float:
        await self.waiters.setdefault(name, asyncio.Event()).wait()
        return self.arrived[name]


async def floor_server(db_path: Path) -> tuple[web.AppRunner, str, aiohttp.ClientSession]:
    verifier = SignatureVerifier(SECRET)
    db = await aiosqlite.connect(db_path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("CREATE TABLE answers (id INTEGER PRIMARY KEY, user TEXT, text TEXT)")
    session = aiohttp.ClientSession()
    tasks: set[asyncio.Task] = set()

    async def confirm(url: str) -> None:
        async with session.post(
            url, json={"text": "Saved your answer.", "response_type": "ephemeral"}
        ) as r:
            await r.read()

    async def handler(request: web.Request) -> web.Response:
        body = await request.text()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        form = {k: v[0] for k, v in parse_qs(body).items()}
        await db.execute(
            "INSERT INTO answers (user, text) VALUES (?, ?)", (form["user_id"], form["text"])
        )
        await db.commit()
        task = asyncio.create_task(confirm(form["response_url"]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", handler)
    app.on_cleanup.append(lambda _: db.close())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events", session


def form(confirm_base: str, name: str, user: str, text: str) -> str:
    return urlencode(
        {
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/discuss",
            "text": text,
            "response_url": confirm_base + name,
            "trigger_id": f"trigger-{name}",
        }
    )


async def burst(
    url: str, collector: Collector, tag: str, n: int, in_flight: int
) -> tuple[float, list[float]]:
    limit = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> None:
            name = f"{tag}-{i}"
            body = form(
                collector.base, name, f"U{tag}{i:05d}", f"answer 1 thoughts from person {i}"
            )
            headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
            async with limit:
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, r.status
                arrived = await collector.wait(name)
            latencies.append(arrived - start)

        with sender_gc_paused():  # its pauses are not the servers' latency
            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(n)))
            return time.perf_counter() - start, latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


async def main(n: int, in_flight: int) -> None:
    from bench.common import in_second_process, web_api_process

    logging.getLogger("bot").setLevel(logging.ERROR)  # the prompt set runs low
    async with web_api_process() as (api_url, _):
        with tempfile.TemporaryDirectory() as tmp:
            runtime, ours = await start_roundtable(Path(tmp), api_url)
            ours_url = f"http://127.0.0.1:{ours.port}/slack/events"
            floor_runner, floor_url, floor_session = await floor_server(Path(tmp) / "floor.db")
            async with aiohttp.ClientSession() as session:  # open the round
                body = form("http://127.0.0.1:9/", "open", "UADMIN", "now")
                headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
                async with session.post(ours_url, data=body, headers=headers) as r:
                    assert r.status == 200
            await ours.drain()  # the round is posted
            plan = {"floor": floor_url, "roundtable": ours_url, "n": n, "in": in_flight}
            results = await in_second_process(__file__, plan)
            await ours.stop()
            await floor_runner.cleanup()
            await floor_session.close()
            await runtime.close()
    print(f"{n} distinct people, {in_flight} in flight, signed /discuss answer")
    print(f"{'':<12}{'answers/s':>11}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (wall, lat) in results.items():
        print(f"{name:<12}{n / wall:>11.0f}{pct(lat, 50):>9.1f}{pct(lat, 99):>9.1f}")
    (fw, fl), (ow, ol) = results["floor"], results["roundtable"]
    print(
        f"throughput ratio {fw / ow:.2f}x (target >= 0.5x)   "
        f"p99 ratio {pct(ol, 99) / pct(fl, 99):.2f}x (target <= 3x)"
    )


async def answer(plan: dict) -> dict[str, tuple[float, list[float]]]:
    """The people (a second process): warm-up both, then the floor and ours in turn."""
    collector = Collector()
    await collector.start()
    n, in_flight = plan["n"], plan["in"]
    try:
        await burst(plan["floor"], collector, "wf", 20, in_flight)
        await burst(plan["roundtable"], collector, "wo", 20, in_flight)
        return {
            "floor": await burst(plan["floor"], collector, "f", n, in_flight),
            "roundtable": await burst(plan["roundtable"], collector, "o", n, in_flight),
        }
    finally:
        await collector.runner.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--send":
        print(json.dumps(asyncio.run(answer(json.loads(sys.argv[2])))))
    else:
        args = [int(a) for a in sys.argv[1:]]
        asyncio.run(main(args[0] if args else 500, args[1] if len(args) > 1 else 50))
