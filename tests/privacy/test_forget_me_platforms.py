"""``/discuss forget-me`` through the real Slack and Discord adapters: the confirm step,
the reply with the count, and the dedup rows of the deleted thread replies."""

from __future__ import annotations

from sqlalchemy import select

from bot.storage.models import InboxEntry, ProcessedEvent
from tests.discord.conftest import ADMIN, MEMBER, make_bot
from tests.discord.conftest import fake as fake_discord  # noqa: F401  (fixture)
from tests.slack.conftest import fake, message_event, slack  # noqa: F401  (fixtures)


async def test_slack_forget_me_asks_then_deletes_and_clears_dedup_rows(slack):  # noqa: F811
    assert await slack.command("now") == 200
    await slack.settle()
    round_ = await slack.runtime.store.open_round_in("slack:C1")
    thread = round_.message_ref
    for user, ts in (("UBOB", "1700000100.000001"), ("UCAROL", "1700000100.000002")):
        event = message_event(f"reply by {user}", user=user, ts=ts, thread_ts=thread)
        assert await slack.event(event, f"Ev{ts}") == 200
        await slack.settle()
    await slack.command("answer --anonymous bob hides", user="UBOB")
    await slack.settle()
    await slack.command("forget-me", user="UBOB")
    await slack.settle()
    assert "/discuss forget-me confirm" in slack.fake.responses[-1]["text"]
    assert len(await slack.runtime.store.responses(round_.id)) == 3
    await slack.command("forget-me confirm", user="UBOB")
    await slack.settle()
    assert "deleted 2 answers" in slack.fake.responses[-1]["text"]
    left = await slack.runtime.store.responses(round_.id)
    assert [r.text for r in left] == ["reply by UCAROL"]
    async with slack.runtime.store.session() as s:
        keys = set((await s.scalars(select(ProcessedEvent.key))).all())
        keys |= set((await s.scalars(select(InboxEntry.key))).all())
    assert "slack:C1:1700000100.000001" not in keys  # names bob's deleted message
    assert "slack:C1:1700000100.000002" in keys  # carol's stays


async def test_discord_forget_me_has_a_confirm_option(tmp_path, fake_discord):  # noqa: F811
    bot = await make_bot(tmp_path, fake_discord)
    try:
        await bot.open_round(bot.channels[0])
        for who, words in ((MEMBER, "bob's words"), (ADMIN, "ada's words")):
            token = await bot.fake.slash(who, bot.channels[0], "answer", text=words)
            await bot.replies(token)
        token = await bot.fake.slash(MEMBER, bot.channels[0], "forget-me")
        [ask] = await bot.replies(token)
        assert "forget-me confirm" in ask
        token = await bot.fake.slash(MEMBER, bot.channels[0], "forget-me", confirm=True)
        [done] = await bot.replies(token)
        assert "deleted 1 answer" in done
        round_ = await bot.runtime.store.open_round_in(f"discord:{bot.channels[0]}")
        assert [r.text for r in await bot.runtime.store.responses(round_.id)] == ["ada's words"]
    finally:
        await bot.stop()
