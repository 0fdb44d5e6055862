"""Anonymous answers carry randomised author tags (bot.anonymity.RoundTags).

No two stored tags are equal, even two of one person's, so nothing compares them in SQL:
the bot finds a person's anonymous answers, and counts people, by opening the round's
tags with its key. These tests check each path that used to compare pseudonyms: the
same-question replacement, withdraw, forget-me, respondent counts while open (results,
reminders, history) and the counts taken at close.
"""

from __future__ import annotations

import asyncio
import contextlib

from sqlalchemy import select

from bot.anonymity import RoundTags, load_keyring, pseudonym
from bot.storage.models import Response, Round
from tests.support import make_chat


async def anonymous_rows(chat) -> list[Response]:
    async with chat.store.session() as s:
        return list(
            (
                await s.scalars(select(Response).where(Response.anonymous).order_by(Response.id))
            ).all()
        )


async def test_one_persons_anonymous_answers_share_no_stored_value_yet_count_once(both):
    chat = both
    await chat.say("/discuss now")
    assert "Saved" in await chat.say("/discuss answer --anonymous 1 first try", who="bob")
    assert "Saved" in await chat.say("/discuss answer --anonymous 2 second q", who="bob")
    # the same person, the same question: replaces the earlier answer
    assert "Updated" in await chat.say("/discuss answer --anonymous 1 final", who="bob")
    assert "Saved" in await chat.say("/discuss answer --anonymous 1 carol says", who="carol")
    await chat.say("named words", who="dave")

    rows = await anonymous_rows(chat)
    assert sorted(r.text for r in rows) == ["carol says", "final", "second q"]
    tags = [r.pseudonym for r in rows]
    assert len(set(tags)) == 3 and all(len(t) == 82 for t in tags)  # no two compare equal
    (round_,) = await chat.store.rounds()
    key = load_keyring(chat.store.engine.url).open(round_.id, round_.anon_key)
    assert pseudonym(key, "console:bob") not in tags  # never the bare keyed hash
    opener = RoundTags(round_.id, key)
    bob = opener.alias("console:bob")
    assert [opener.open(t) == bob for t in tags] == [True, True, False]  # the key groups

    # counts while open: bob once, carol, dave
    assert (await chat.store.count_respondents([round_.id]))[round_.id] == 3
    assert "3 people have shared" in (await chat.dispatcher.service.reminder(round_)).text
    results = await chat.dispatcher.service.summary(round_, final=False)
    assert results.respondents == 3

    assert "deleted 2 answers" in await chat.say("/discuss forget-me confirm", who="bob")
    assert [r.text for r in await anonymous_rows(chat)] == ["carol says"]

    await chat.say("/discuss close")
    async with chat.store.session() as s:
        closed = await s.scalar(select(Round))
    assert (closed.respondents, closed.anonymous_respondents) == (2, 1)
    assert chat.platform.summaries()[-1].respondents == 2


async def test_withdraw_finds_every_anonymous_answer_of_its_author_only(both):
    chat = both
    await chat.say("/discuss now")
    await chat.say("/discuss answer --anonymous 1 mine one", who="bob")
    await chat.say("/discuss answer --anonymous 2 mine two", who="bob")
    await chat.say("/discuss answer --anonymous 1 hers", who="carol")
    assert "Removed your 2 answers" in await chat.say("/discuss withdraw", who="bob")
    assert [r.text for r in await anonymous_rows(chat)] == ["hers"]
    await chat.say("/discuss close")
    assert chat.platform.summaries()[-1].respondents == 1


async def test_closing_counts_each_person_once_across_questions(both):
    chat = both
    await chat.say("/discuss now")
    for who in ("bob", "carol"):
        for q in (1, 2):
            await chat.say(f"/discuss answer --anonymous {q} {who} on {q}", who=who)
    await chat.say("/discuss close")
    async with chat.store.session() as s:
        closed = await s.scalar(select(Round))
        left = (await s.scalars(select(Response.pseudonym))).all()
    assert (closed.respondents, closed.anonymous_respondents) == (2, 2)
    assert set(left) == {None} and closed.anon_key is None


async def test_two_instances_save_one_persons_anonymous_answer_once(config_path, pg_url):
    """Two instances on one PostgreSQL database each get an anonymous answer from bob
    to question 1 at the same moment: the second waits for the first and replaces it,
    so the round holds one answer of his to that question, not two."""
    first, second = await make_chat(config_path, pg_url), await make_chat(config_path, pg_url)
    try:
        await first.say("/discuss now")
        await first.say("/discuss answer --anonymous 2 the round's key exists", who="carol")
        real = first.store.save_response
        second_saving = asyncio.Event()

        async def first_saves_slowly(row, **kwargs):
            # hold the first transaction open until the second one is saving as well
            # (it never is when it waits for the first: then after a moment)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(second_saving.wait(), 0.5)
            return await real(row, **kwargs)

        async def second_saves(row, **kwargs):
            second_saving.set()
            return await second_real(row, **kwargs)

        second_real = second.store.save_response
        first.store.save_response = first_saves_slowly
        second.store.save_response = second_saves
        replies = await asyncio.gather(
            first.say("/discuss answer --anonymous 1 from the first", who="bob"),
            second.say("/discuss answer --anonymous 1 from the second", who="bob"),
        )
        assert sorted(r.split()[0] for r in replies) == ["Saved", "Updated"]
        assert [r.question for r in await anonymous_rows(first)] == [2, 1]
    finally:
        await first.store.close()
        await second.store.close()
