"""Memory of the Discord adapter on a large server: 10,000 members vs 100, side by side.

Run by hand: ``.venv/bin/python bench/discord_footprint.py [N]``. The real adapter and
discord.py client run against the loopback fake from tests/discord. Each run floods the
bot with one message per distinct member, the way a busy server does:

- ``channel``: messages in a plain channel (read_thread_replies on, so Discord sends them);
- ``pointer``: replies in a round's thread while Message Content is not granted, so each
  member gets the "cannot read" pointer once (the adapter remembers whom it told).

Memory is what ``tracemalloc`` still holds after the flood and a full collection, counted
from just before the flood. "Flat" means the N-member figure stays close to the
100-member floor measured in the same run (no per-member cache).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.discord import fake_discord  # noqa: E402
from tests.discord.conftest import ADMIN, make_bot  # noqa: E402
from tests.discord.fake_discord import FakeDiscord, FakeUser  # noqa: E402

fake_discord.SAFETY_TIMEOUT = 900  # a flood of thousands takes longer than a test

MiB = 1024 * 1024
# People reply over minutes, not all in one instant: the flood comes in waves of 500.
# (An instant burst of 10,000 unreadable replies is answered too: 10,000 pointers in about
# two minutes, paced by the fake's rate limits, measured on 2026-11-26.)
BATCH = 500


async def flood(kind: str, members: int) -> float:
    """MiB held after ``members`` distinct people each sent one message."""
    fake = await FakeDiscord().start()
    fake.grant_message_content = kind != "pointer"
    with tempfile.TemporaryDirectory() as tmp:
        bot = await make_bot(Path(tmp), fake, read_replies=True)
        try:
            message = await bot.open_round(bot.channels[0])
            target = int(message["id"]) if kind == "pointer" else bot.channels[1]
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            path = f"/channels/{target}/messages"
            for start in range(0, members, BATCH):
                for i in range(start, min(start + BATCH, members)):
                    user = FakeUser(10_000_000 + i, f"member{i}")
                    await fake.user_message(user, target, "hi")
                done = min(start + BATCH, members)
                while kind == "pointer" and len(fake.sent("POST", path)) < done:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # polled: a check on every fake event is quadratic
            token = await fake.slash(ADMIN, bot.channels[0], "help")  # handled after the flood
            await bot.replies(token)
            fake.requests.clear()  # the fake's own records are not the bot's memory
            fake.messages = {int(message["id"]): message}
            gc.collect()
            held = (tracemalloc.get_traced_memory()[0] - base) / MiB
            tracemalloc.stop()
            return held
        finally:
            await bot.stop()
            await fake.stop()


async def main(n: int) -> None:
    print("Discord adapter memory held after one message from each of N members (MiB)")
    print(f"{'flood':10} {'100 (floor)':>12} {f'{n:,}':>10} {'difference':>11}")
    for kind in ("channel", "pointer"):
        floor = await flood(kind, 100)
        big = await flood(kind, n)
        print(f"{kind:10} {floor:12.2f} {big:10.2f} {big - floor:+11.2f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000))
