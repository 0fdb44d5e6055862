"""A multi-message digest whose sender died partway is resumed, not counted as sent.

Each chunk carries its own key in its message metadata (``<key>#<n>``; Slack returns
metadata with ``include_all_metadata``, https://api.slack.com/metadata/using), so a
re-send skips exactly the chunks that landed and posts the rest once each.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.adapters.slack import blocks
from bot.core.events import Answer, AnswerGroup, Summary


def long_digest(thread: str) -> Summary:
    answers = tuple(Answer(f"answer number {i} " + "x" * 2800, f"Person {i}") for i in range(120))
    return Summary(
        round_id=7,
        channel="slack:C1",
        thread_ref=thread,
        title="Long round",
        respondents=120,
        groups=(AnswerGroup(1, "Why?", answers),),
        final=True,
        key="rt-7-digest",
    )


def keys_in(fake) -> list[str]:
    return [
        (m.get("metadata") or {}).get("event_payload", {}).get("post_key")
        for m in fake.posted("C1")
        if m.get("thread_ts")
    ]


async def test_a_digest_cut_short_resumes_at_its_first_missing_chunk(slack):
    fake, adapter = slack.fake, slack.adapter
    thread = (await adapter.client.chat_postMessage(channel="C1", text="round"))["ts"]
    digest = long_digest(thread)
    chunks = len(blocks.summary_messages(digest))
    assert chunks >= 3

    # the process dies while the second chunk is in flight (it never lands)
    gate = fake.hold(
        "chat.postMessage",
        when=lambda p: "rt-7-digest#1" in str(p.get("metadata")),
    )
    first = asyncio.create_task(adapter.post(digest))
    await fake.wait_for(lambda: len(fake.calls_to("chat.postMessage")) == 3)
    first.cancel()
    del fake.gates["chat.postMessage"]  # that held call stays held: it never lands
    assert keys_in(fake) == ["rt-7-digest#0"]

    # the re-send (the outbox marks it ``resume``) finds chunk 0 and posts the rest once
    await adapter.post(replace(digest, resume=True))
    assert keys_in(fake) == [f"rt-7-digest#{n}" for n in range(chunks)]
    assert fake.calls_to("chat.postMessage")[-1]["metadata"]

    # a later re-send finds every chunk and posts nothing
    await adapter.post(replace(digest, resume=True))
    assert keys_in(fake) == [f"rt-7-digest#{n}" for n in range(chunks)]
    gate.set()  # let the dead process's held call finish, so the fake can shut down
