"""Ack latency of /discuss: our bot vs a bare slack-bolt AsyncApp vs two floors.

Run by hand: ``.venv/bin/python bench/slack_ack.py [N]`` (default 1000). Everything runs
on loopback. The servers share this process and its event loop; the requests come from
a second process, as Slack's do from its own machines, so the time measured is the
sender's: request out, HTTP 200 back. The Web API fake from tests/slack runs in a third
process, as Slack's servers are not ours: the confirmations and ``users.info`` calls our
bot makes after its acks cost it their own work, not the fake's.

* roundtable: the real runtime (SQLite file) and the real Slack adapter, HTTP mode.
* bare AsyncApp: slack-bolt with a listener that only acks.
* floor: a raw aiohttp handler that only verifies the signature.
* floor+insert: the same, plus what an inbox-before-ack design cannot skip: one INSERT
  of the command, committed with our ack's durability (SQLite WAL, synchronous=NORMAL:
  it survives the process being killed; docs/performance.md, "Durability"), and, as
  ours, no WAL checkpoint run inside the ack. The cheapest way there is: sqlite3
  called in the loop's thread, one statement that is its own transaction, no thread
  hand-off, no ORM.

``help`` changes nothing: it is answered in the ack itself and stores nothing. ``answer``
and ``now`` are stored in the inbox before the ack. One request at a time (each meets a
server with nothing left to do from the one before), then 20 in flight, on 20
connections to each server opened beforehand (a steady stream, not 20 TCP handshakes).
The requests go to the four servers in turn, so a slow moment of the machine hits them
all: one at a time, request by request; 20 in flight, in blocks of 100 per server, the
server that starts a turn changing from turn to turn (N is rounded down to whole blocks).
Target: our p99 <= 1.5x the floor. With 20 in flight every server is bound by one core,
so the p99 follows the CPU time each request costs: that is printed too (this process's
CPU time during the requests, divided by N; our processing left for after them is not
in it). The sender's own garbage collector is paused while it times
(``bench.common.sender_gc_paused``): its pauses are not the servers' latency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request  # noqa: E402
from slack_bolt.app.async_app import AsyncApp  # noqa: E402
from slack_sdk.signature import SignatureVerifier  # noqa: E402
from slack_sdk.web.async_client import AsyncWebClient  # noqa: E402

from tests.slack.conftest import SECRET, sign  # noqa: E402

TOKEN = "xoxb-bench"
IN_FLIGHT = 20
BLOCK = 100  # requests sent to one server in a turn, with IN_FLIGHT in flight
ANSWER = "answer 1 a thought"
SEQUENTIAL = ("help", ANSWER, "now")
CONCURRENT = ("help", ANSWER)
STORED = {ANSWER, "now"}  # commands the inbox stores before the ack


# ---- the servers (this process) ---------------------------------------------------------


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


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


async def floor(db_path: Path | None = None) -> tuple[web.AppRunner, str]:
    """Verify the signature (and with ``db_path``, INSERT the command) and answer 200."""
    verifier = SignatureVerifier(SECRET)
    app = web.Application()
    db = None
    if db_path is not None:
        db = sqlite3.connect(db_path, isolation_level=None)  # autocommit
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA wal_autocheckpoint=0")
        db.execute("CREATE TABLE inbox (key TEXT PRIMARY KEY, body TEXT)")

        async def close(_: web.Application) -> None:
            db.close()

        app.on_cleanup.append(close)

    async def handler(request: web.Request) -> web.Response:
        body = await request.text()
        if not verifier.is_valid_request(body, dict(request.headers)):
            return web.Response(status=401)
        if db is not None:
            key = parse_qs(body)["trigger_id"][0]
            db.execute("INSERT INTO inbox VALUES (?, ?)", (key, body))  # commits
        return web.Response(status=200)

    app.router.add_post("/slack/events", handler)
    return await serve(app)


async def control(drain) -> tuple[web.AppRunner, str]:
    """``POST /drain`` returns once our bot has nothing left to do (the sender waits);
    ``POST /cpu`` answers this process's CPU time so far (all the servers' work)."""

    async def handler(_: web.Request) -> web.Response:
        await drain()
        return web.Response(status=200)

    async def cpu(_: web.Request) -> web.Response:
        return web.Response(text=repr(time.process_time()))

    app = web.Application()
    app.router.add_post("/drain", handler)
    app.router.add_post("/cpu", cpu)
    return await serve(app)


async def main(n: int) -> None:
    from bench.common import web_api_process

    logging.getLogger("bot").setLevel(logging.ERROR)  # 300 rounds run low on prompts
    async with web_api_process() as (api_url, response_url):
        await measure(n, api_url, response_url)


async def measure(n: int, api_url: str, response_url: str) -> None:
    from bench.common import in_second_process, start_roundtable

    with tempfile.TemporaryDirectory() as tmp:
        runtime, ours = await start_roundtable(Path(tmp), api_url)
        runners = []
        urls = {"roundtable": f"http://127.0.0.1:{ours.port}"}
        for name, server in (
            ("bare AsyncApp", bare_bolt(api_url)),
            ("floor", floor()),
            ("floor+insert", floor(Path(tmp) / "floor.db")),
        ):
            runner, urls[name] = await server
            runners.append(runner)
        control_runner, control_url = await control(ours.drain)
        plan = {
            "targets": {name: f"{url}/slack/events" for name, url in urls.items()},
            "drain": f"{control_url}/drain",
            "response_url": response_url,
            "n": n,
        }
        results = await in_second_process(__file__, plan)
        await ours.stop()
        for runner in (*runners, control_runner):
            await runner.cleanup()
        await runtime.close()
    report(n, results)


def report(n: int, results: dict[str, dict[str, list[float]]]) -> None:
    cpu = results.pop("cpu")
    print(f"ack latency over {n} signed /discuss commands each, sent from another process (ms)")
    print(
        f"{'command':<21}{'server':<15}{'p50':>7}{'p99':>7}{'p99/floor':>10}{'/floor+insert':>14}"
    )
    for label, by_server in results.items():
        floor_p99 = pct(by_server["floor"], 99)
        stored_p99 = pct(by_server["floor+insert"], 99)
        for name, values in by_server.items():
            p99 = pct(values, 99)
            print(
                f"{label:<21}{name:<15}{pct(values, 50):>7.2f}{p99:>7.2f}"
                f"{p99 / floor_p99:>9.2f}x{p99 / stored_p99:>13.2f}x"
            )
        print(f"{'':21}mean floor {statistics.mean(by_server['floor']) * 1000:.2f} ms")
    print(f"server CPU per request with {IN_FLIGHT} in flight, while the requests come (ms):")
    for label, by_server in cpu.items():
        floor_cpu = by_server["floor"][0]
        figures = "  ".join(
            f"{name} {value[0] * 1000:.2f} ({value[0] / floor_cpu:.2f}x)"
            for name, value in by_server.items()
        )
        print(f"  {label:<21}{figures}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


# ---- the sender (a second process) ------------------------------------------------------


def form(plan: dict, text: str, n: int) -> str:
    return urlencode(
        {
            "team_id": "T1",
            "channel_id": "C1",
            "user_id": f"U{n:06d}" if text == ANSWER else "UADMIN",  # distinct people
            "user_name": "admin",
            "command": "/discuss",
            "text": text,
            "response_url": f"{plan['response_url']}b{n}",
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


async def send(plan: dict) -> dict[str, dict[str, list[float]]]:
    from bench.common import sender_gc_paused

    targets: dict[str, str] = plan["targets"]
    n = plan["n"]
    results: dict[str, dict[str, list[float]]] = {}
    count = iter(range(1, 10**9))
    async with aiohttp.ClientSession() as session:

        async def drain() -> None:
            async with session.post(plan["drain"]) as r:
                await r.read()

        async def cpu_time() -> float:
            async with session.post(plan["drain"].replace("/drain", "/cpu")) as r:
                return float(await r.text())

        for text in SEQUENTIAL:
            label = f"/discuss {text.split()[0]}"
            for url in targets.values():  # warm-up (auth.test, connections)
                await timed_post(session, url, form(plan, text, next(count)))
            await drain()
            with sender_gc_paused():
                for _ in range(n):
                    for name, url in targets.items():  # interleaved
                        elapsed = await timed_post(session, url, form(plan, text, next(count)))
                        results.setdefault(label, {}).setdefault(name, []).append(elapsed)
                        await drain()
        limit = asyncio.Semaphore(IN_FLIGHT)
        for text in CONCURRENT:
            label = f"/discuss {text.split()[0]} x{IN_FLIGHT}"

            async def one(name: str, url: str, text: str = text, label: str = label) -> None:
                async with limit:
                    elapsed = await timed_post(session, url, form(plan, text, next(count)))
                results.setdefault(label, {}).setdefault(name, []).append(elapsed)

            for url in targets.values():
                warm = [form(plan, text, next(count)) for _ in range(IN_FLIGHT)]
                await asyncio.gather(*(timed_post(session, url, body) for body in warm))
            await drain()  # IN_FLIGHT connections open to each, as in a steady stream
            used = dict.fromkeys(targets, 0.0)
            names = list(targets)
            block = min(BLOCK, n)
            for turn in range(n // block):  # in turns: a slow moment hits them all
                for name in names[turn % len(names) :] + names[: turn % len(names)]:
                    with sender_gc_paused():  # and collected after the CPU time is read
                        started = await cpu_time()
                        await asyncio.gather(*(one(name, targets[name]) for _ in range(block)))
                        used[name] += await cpu_time() - started  # not the work left after
                    await drain()
            for name, seconds in used.items():
                count_sent = len(results[label][name])
                results.setdefault("cpu", {}).setdefault(label, {})[name] = [seconds / count_sent]
    return results


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--send":
        print(json.dumps(asyncio.run(send(json.loads(sys.argv[2])))))
    else:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
