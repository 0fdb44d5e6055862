"""A channel that refuses for good (Slack ``not_in_channel``): the round fails with the
reason, is never attempted again, and answers there are told no round is open."""

from __future__ import annotations

from datetime import timedelta

from bot.core.handlers import NO_ROUND


async def test_not_in_channel_fails_the_round_for_good(slack):
    slack.fake.refuse["C1"] = "not_in_channel"
    assert await slack.command("now") == 200
    await slack.settle()
    [round_] = await slack.runtime.store.rounds(channel="slack:C1")
    assert round_.status == "failed" and "not_in_channel" in round_.status_reason
    # later sweeps (here and on any instance) never try again
    scheduler = slack.runtime.scheduler()
    clock = slack.runtime.clock
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        await scheduler.tick()
    assert len(slack.fake.calls_to("chat.postMessage")) == 1
    await slack.command("answer 1 hello", user="UBOB")
    await slack.settle()
    assert slack.replies()[-1] == NO_ROUND
