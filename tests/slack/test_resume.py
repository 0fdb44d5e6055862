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


def paginate_replies(fake) -> None:
    """conversations.replies as documented: oldest first, ``limit`` per page, the rest
    behind ``response_metadata.next_cursor`` (https://api.slack.com/methods/conversations.replies)."""
    whole = fake._conversations_replies

    def paged(p: dict) -> dict:
        messages = whole(p)["messages"]
        start, limit = int(p.get("cursor") or 0), int(p.get("limit") or 1000)
        page = messages[start : start + limit]
        more = start + limit < len(messages)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    fake._conversations_replies = paged


async def test_a_resumed_digest_is_found_behind_hundreds_of_thread_replies(slack):
    fake, adapter = slack.fake, slack.adapter
    paginate_replies(fake)
    thread = (await adapter.client.chat_postMessage(channel="C1", text="round"))["ts"]
    for i in range(450):  # the answers come first, the digest after them
        fake.messages["C1"].append({"ts": f"1700000500.{i:06d}", "thread_ts": thread})
    digest = long_digest(thread)
    await adapter.post(digest)
    posted = len(fake.calls_to("chat.postMessage"))
    await adapter.post(replace(digest, resume=True))  # e.g. the sent mark was lost
    assert len(fake.calls_to("chat.postMessage")) == posted  # found: nothing sent again
    assert len(fake.calls_to("conversations.replies")) >= 3  # paged past the answers
