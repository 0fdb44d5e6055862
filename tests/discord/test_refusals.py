"""A channel the bot may not post in (Discord 403): the round fails with the reason, is
never attempted again, and ``/discuss answer`` there says no round is open."""

from __future__ import annotations

from datetime import timedelta

from bot.core.handlers import NO_ROUND
from tests.discord.conftest import ADMIN, MEMBER


async def test_a_forbidden_channel_fails_the_round_for_good(bot):
    blocked = bot.channels[0]
    bot.fake.forbidden.add(blocked)
    token = await bot.fake.slash(ADMIN, blocked, "now", prompt_id="alpha")
    [reply] = await bot.replies(token)
    assert reply.startswith(f"Could not post in discord:{blocked}") and "403" in reply
    [round_] = await bot.runtime.store.rounds(channel=f"discord:{blocked}")
    assert round_.status == "failed" and "403" in round_.status_reason
    scheduler = bot.runtime.scheduler()
    for _ in range(3):
        bot.clock.advance(timedelta(minutes=10))
        await scheduler.tick()
    assert len(bot.fake.sent("POST", rf"/channels/{blocked}/messages")) == 1  # never again
    token = await bot.fake.slash(MEMBER, blocked, "answer", text="hello")
    assert await bot.replies(token) == [NO_ROUND]
