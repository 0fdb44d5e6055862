"""Re-sending a digest on Discord never doubles it.

Every chunk carries its own nonce (≤ 25 characters) and discord.py sends it with
``enforce_nonce`` (https://discord.com/developers/docs/resources/message#create-message:
"If true and nonce is present, it will be checked for uniqueness in the past few
minutes"), so a quick re-send gets the earlier message back. After longer, a re-send
(``resume``, set by the outbox) skips the chunks found in the channel's history.
"""

from __future__ import annotations

from dataclasses import replace

from bot.adapters.discord.embeds import summary_texts
from bot.core.events import Answer, AnswerGroup, Summary
from tests.discord.conftest import Bot


def long_digest(bot: Bot, thread: int) -> Summary:
    answers = tuple(Answer(f"answer {i} " + "y" * 900, f"Person {i}") for i in range(40))
    return Summary(
        round_id=1,
        channel=f"discord:{bot.channels[0]}",
        thread_ref=str(thread),
        title="Long round",
        respondents=40,
        groups=(AnswerGroup(1, "Why?", answers),),
        final=True,
        key="rt-12345678-digest",
    )


async def test_each_chunk_has_its_own_enforced_nonce_and_a_late_resend_resumes(bot):
    message = await bot.open_round(bot.channels[0])
    thread = int(message["id"])
    digest = long_digest(bot, thread)
    texts = summary_texts(digest)
    assert len(texts) >= 11  # two-digit chunk numbers still fit Discord's nonce limit

    await bot.adapter.post(digest)
    sent = bot.fake.sent("POST", rf"/channels/{thread}/messages")
    nonces = [r.body["nonce"] for r in sent]
    assert all(r.body["enforce_nonce"] is True for r in sent)
    assert len(set(nonces)) == len(texts) and max(map(len, nonces)) <= 25

    # a quick re-send: Discord answers every chunk with the earlier message
    await bot.adapter.post(replace(digest, resume=False))
    assert [m["content"] for m in bot.fake.channel_messages(thread)] == texts

    # long after (Discord forgot the nonces), a re-send cut short before: only the
    # chunks missing from the channel are posted
    for m in bot.fake.channel_messages(thread):
        m["nonce"] = None
    for m in bot.fake.channel_messages(thread)[3:]:
        bot.fake.messages.pop(int(m["id"]))
    await bot.adapter.post(replace(digest, resume=True))
    assert [m["content"] for m in bot.fake.channel_messages(thread)] == texts
