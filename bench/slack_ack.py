"""Ack latency of /discuss: our bot vs a bare slack-bolt AsyncApp vs the signature floor.

Run by hand: ``.venv/bin/python bench/slack_ack.py [N]``. Everything runs on loopback
(127.0.0.1) against the Web API fake from tests/slack; prints p50/p99 per server and the
ratios to the floor (a raw aiohttp handler that only verifies the signature), once with
requests one after another and once with 20 in flight. Our ack comes after the command
is committed to the inbox (SQLite, synchronous=FULL), which the floor does not do.
Target: our p99 <= 1.5x the floor.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request  # noqa: E402
from slack_bolt.app.async_app import AsyncApp  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402

from bot.adapters.slack import SlackAdapter  # noqa: E402
from bot.app import build_runtime, freeze_startup_objects  # noqa: E402
from bot.config import Secrets  # noqa: E402
from tests.slack.conftest import CONFIG, SECRET, sign  # noqa: E402
from tests.slack.fake_slack import FakeSlack  # noqa: E402
from tests.support import write_library  # noqa: E402

TOKEN = "xoxb-bench"
IN_FLIGHT = 20
ANSWER = "answer 1 a thought"
SEQUENTIAL = ("help", ANSWER, "now")
CONCURRENT = ("help", ANSWER)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"


async def bare_bolt(api_url: str) -> tuple[web.AppRunner, str]:
    client = AsyncWebClient(token=TOKEN, base_url=api_url)
    bolt = AsyncApp(name="bare", client=client, signing_secret=SECRET)

    @bolt.command("/discuss")
    async def ack_only(ack) -> None:
        await ack()

    async def handler(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", handler)
    return await serve(app)


async def floor() -> tuple[web.AppRunner, str]:
    verifier = SignatureVerifier(SECRET)

    async def handler(request: web.Request) -> web.Response:
        body = await request.text()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", handler)
    return await serve(app)


def form(fake: FakeSlack, text: str, n: int) -> str:
    return urlencode(
        {
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": f"U{n:06d}" if text == ANSWER else "UADMIN",  # distinct people
            "user_name": "admin",
            "command": "/discuss",
            "text": text,
            "response_url": fake.response_url(f"b{n}"),
            "trigger_id": f"t{n}",  # unique: the inbox key of a slash command
        }
    )


async def timed_post(session: aiohttp.ClientSession, url: str, body: str) -> float:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
    start = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as r:
        await r.read()
        status = r.status
    elapsed = time.perf_counter() - start
    if status != 200:
        raise RuntimeError(f"{url} answered {status}")
    return elapsed


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


async def main(n: int) -> None:
    fake = FakeSlack()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        config = CONFIG.format(admin="UADMIN", mode="http", port=3000, api_url=fake.api_url)
        runtime = await build_runtime(
            write_library(Path(tmp), config=config),
            secrets=Secrets(slack_bot_token=TOKEN, slack_signing_secret=SECRET),
            database=f"sqlite+aiosqlite:///{tmp}/bench.db",
        )
        ours = SlackAdapter(runtime.ports)
        await ours.start(host="127.0.0.1", port=0)
        freeze_startup_objects()  # as `python -m bot run` does once started
        ours_url = f"http://127.0.0.1:{ours.port}/slack/events"
        bare_runner, bare_url = await bare_bolt(fake.api_url)
        floor_runner, floor_url = await floor()
        targets = {"roundtable": ours_url, "bare AsyncApp": bare_url, "floor": floor_url}
        results: dict[tuple[str, str], list[float]] = {}
        count = iter(range(1, 10**9))
        async with aiohttp.ClientSession() as session:
            for text in SEQUENTIAL:
                for url in targets.values():  # warm-up (auth.test, connections)
                    await timed_post(session, url, form(fake, text, next(count)))
                await ours.drain()
                for _ in range(n):
                    for name, url in targets.items():  # interleaved
                        elapsed = await timed_post(session, url, form(fake, text, next(count)))
                        results.setdefault((text, name), []).append(elapsed)
                        # one at a time: each request meets a server with nothing left
                        # to do from the one before (the floor has nothing left anyway)
                        await ours.drain()
            limit = asyncio.Semaphore(IN_FLIGHT)

            async def one(text: str, name: str, url: str) -> None:
                async with limit:
                    elapsed = await timed_post(session, url, form(fake, text, next(count)))
                results.setdefault((f"{text} x{IN_FLIGHT}", name), []).append(elapsed)

            for text in CONCURRENT:
                for name, url in targets.items():
                    await asyncio.gather(*(one(text, name, url) for _ in range(n)))
                    await ours.drain()
        print(f"ack latency over {n} signed /discuss commands each (ms)")
        print(f"{'command':<14}{'server':<16}{'p50':>8}{'p99':>8}{'p99/floor':>11}")
        for text in [*SEQUENTIAL, *(f"{t} x{IN_FLIGHT}" for t in CONCURRENT)]:
            floor_p99 = pct(results[(text, "floor")], 99)
            for name in targets:
                values = results[(text, name)]
                p99 = pct(values, 99)
                print(
                    f"/discuss {text[:9]:<9}{name:<16}{pct(values, 50):>8.2f}{p99:>8.2f}"
                    f"{p99 / floor_p99:>10.2f}x"
                )
            print(f"{'':14}mean floor {statistics.mean(results[(text, 'floor')]) * 1000:.2f} ms")
        await ours.stop()
        await bare_runner.cleanup()
        await floor_runner.cleanup()
        await runtime.close()
    await fake.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 300))
