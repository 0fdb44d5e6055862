"""Rounds, answers, rotation and anonymity, through the core with no platform at all."""

from sqlalchemy import select, text

from bot.storage.models import Response, Round
from tests.support import make_chat


async def test_now_posts_the_next_prompt_with_numbered_questions(chat):
    assert await chat.say("/discuss now") == ""
    (post,) = chat.platform.rounds()
    assert post.prompt.prompt_id == "alpha"
    assert post.prompt.questions[0] == ("What is alpha?", "article")
    assert post.prompt.url == "https://example.org/alpha"


async def test_a_plain_message_is_an_answer_and_is_confirmed_after_commit(both):
    chat = both
    await chat.say("/discuss now")
    reply = await chat.say("Teams need room to fail", who="bob")
    assert reply == "Saved your answer."
    (round_,) = await chat.store.rounds()
    (row,) = await chat.store.responses(round_.id)
    assert (row.text, row.author_id, row.question) == (
        "Teams need room to fail",
        "console:bob",
        None,
    )


async def test_numbered_answers_are_grouped_per_question(chat):
    await chat.say("/discuss now")
    await chat.say("2: because it matters", who="bob")
    await chat.say("/discuss answer 1 alpha is a letter", who="carol")
    await chat.say("general musing", who="dave")
    out = await chat.say("/discuss results", who="bob")
    assert "3 people shared" in out
    q1, q2, other = out.index("Q1. What is alpha?"), out.index("Q2."), out.index("Other thoughts")
    assert q1 < out.index("Carol: alpha is a letter") < q2 < out.index("Bob: because it matters")
    assert other < out.index("Dave: general musing")


async def test_a_number_beyond_the_questions_is_just_text(chat):
    await chat.say("/discuss now")
    assert await chat.say("7: seven dwarfs", who="bob") == "Saved your answer."
    (row,) = await chat.store.responses((await chat.store.rounds())[0].id)
    assert (row.question, row.text) == (None, "7: seven dwarfs")


async def test_answer_to_unknown_question_number_is_refused(chat):
    await chat.say("/discuss now")
    assert "there is no question 5" in await chat.say("/discuss answer 5 hi", who="bob")


async def test_empty_and_oversized_answers_store_nothing(chat):
    await chat.say("/discuss now")
    assert "empty" in await chat.say("/discuss answer", who="bob")
    assert "empty" in await chat.say("/discuss answer 2   ", who="bob")
    reply = await chat.say("/discuss answer " + "x" * 4001, who="bob")
    assert "4,001 characters; the limit is 4,000" in reply
    assert await chat.say("/discuss answer " + "x" * 4000, who="bob") == "Saved your answer."
    (round_,) = await chat.store.rounds()
    assert len(await chat.store.responses(round_.id)) == 1


async def test_answer_without_open_round_says_so(chat):
    assert "There is no open round here" in await chat.say("/discuss answer hi", who="bob")
    assert "There is no open round here" in await chat.say("hello", who="bob")
    assert await chat.store.rounds() == []


async def test_rotation_never_repeats_until_the_set_is_exhausted(both):
    chat = both
    seen = []
    for _ in range(4):
        await chat.say("/discuss now")
        seen.append(chat.platform.rounds()[-1].prompt.prompt_id)
    assert seen == ["alpha", "beta", "gamma", "alpha"]


async def test_explicit_prompt_counts_in_the_rotation(chat):
    await chat.say("/discuss now gamma")
    await chat.say("/discuss now")
    await chat.say("/discuss now")
    assert [p.prompt.prompt_id for p in chat.platform.rounds()] == ["gamma", "alpha", "beta"]


async def test_unknown_prompt_id_suggests_one(chat):
    reply = await chat.say("/discuss now gamm")
    assert "Unknown prompt id `gamm`" in reply and "Did you mean `gamma`?" in reply
    assert chat.platform.rounds() == []


async def test_now_closes_the_open_round_with_its_digest_first(chat):
    await chat.say("/discuss now")
    await chat.say("first answer", who="bob")
    await chat.say("/discuss now")
    (digest,) = chat.platform.summaries()
    assert digest.final and digest.respondents == 1
    kinds = [type(p).__name__ for p in chat.platform.posts]
    assert kinds == ["RoundPost", "Summary", "RoundPost"]
    rounds = await chat.store.rounds()
    assert [r.status for r in rounds] == ["closed", "posted"]


async def test_now_is_for_admins_only(chat):
    reply = await chat.say("/discuss now", who="bob")
    assert "for admins only" in reply
    assert chat.platform.rounds() == []


async def test_editing_and_deleting_a_message_updates_the_stored_answer(chat):
    await chat.say("/discuss now")
    await chat.say("first thought", who="bob")  # message m1
    await chat.edit("m1", "2: second thought")
    round_id = (await chat.store.rounds())[0].id
    (row,) = await chat.store.responses(round_id)
    assert (row.text, row.question) == ("second thought", 2)
    assert row.edited_at is not None
    await chat.delete("m1")
    assert await chat.store.responses(round_id) == []


async def test_the_same_message_delivered_twice_is_stored_once(chat):
    await chat.say("/discuss now")
    await chat.say("hello", who="bob")
    chat._n -= 1  # replay message id m1
    assert await chat.say("hello again", who="bob") == "Updated your answer."
    assert len(await chat.store.responses((await chat.store.rounds())[0].id)) == 1


async def test_form_answers_one_per_question_and_resubmission_updates(chat):
    await chat.say("/discuss now")
    round_id = chat.platform.rounds()[0].round_id
    reply = await chat.submit(round_id, {1: "a letter", 2: "", 3: " "}, who="bob")
    assert reply == "Saved your answer to question 1. Thank you!"
    await chat.submit(round_id, {1: "a Greek letter", 2: "it starts things"}, who="bob")
    rows = await chat.store.responses(round_id)
    assert sorted((r.question, r.text) for r in rows) == [
        (1, "a Greek letter"),
        (2, "it starts things"),
    ]


async def test_empty_form_saves_nothing(chat):
    await chat.say("/discuss now")
    round_id = chat.platform.rounds()[0].round_id
    assert "empty" in await chat.submit(round_id, {1: "  "}, who="bob")
    assert await chat.store.responses(round_id) == []


async def test_anonymous_answer_stores_no_author_and_is_reposted_without_one(both):
    chat = both
    await chat.say("/discuss now")
    reply = await chat.say("/discuss answer --anonymous 1 I am afraid to fail", who="bob")
    assert "anonymous answer to question 1" in reply
    (post,) = chat.platform.thread_posts()
    assert post.kind == "anonymous_answer" and post.quote == "I am afraid to fail"
    assert "bob" not in repr(post).lower()
    async with chat.store.engine.connect() as conn:
        dump = (await conn.execute(text("SELECT * FROM responses"))).all()
    # no value is bob or names him (a sealed tag is random base64: "bob" may occur in it)
    values = {str(value).lower() for row in dump for value in row}
    assert not values & {"bob", "console:bob"} and "console:bob" not in repr(dump).lower()
    out = await chat.say("/discuss results")
    assert "(anonymous) I am afraid to fail" in out and "Bob" not in out


async def test_closing_erases_the_key_that_links_pseudonyms_to_people(both):
    chat = both
    await chat.say("/discuss now")
    await chat.say("/discuss answer --anonymous secret", who="bob")
    (round_,) = await chat.store.rounds()
    assert round_.anon_key is not None
    await chat.say("/discuss close")
    async with chat.store.session() as s:
        stored = await s.scalar(select(Round))
        assert stored.anon_key is None
        (row,) = (await s.scalars(select(Response))).all()
    # Closing erases the pseudonyms too: nothing groups a closed round's answers by author.
    assert row.author_id is None and row.author_name is None and row.pseudonym is None
    assert (stored.respondents, stored.anonymous_respondents) == (1, 1)


async def test_anonymous_author_can_withdraw_while_the_round_is_open(chat):
    await chat.say("/discuss now")
    await chat.say("/discuss answer --anonymous secret", who="bob")
    await chat.say("/discuss answer --anonymous other", who="carol")
    assert (
        await chat.say("/discuss withdraw", who="bob") == "Removed your 1 answer from this round."
    )
    rows = await chat.store.responses((await chat.store.rounds())[0].id)
    assert [r.text for r in rows] == ["other"]


async def test_anonymous_resubmission_updates_the_same_answer(chat):
    await chat.say("/discuss now")
    await chat.say("/discuss answer --anonymous 1 draft", who="bob")
    assert "Updated" in await chat.say("/discuss answer --anonymous 1 final", who="bob")
    rows = await chat.store.responses((await chat.store.rounds())[0].id)
    assert [r.text for r in rows] == ["final"]


async def test_anonymous_answers_can_be_turned_off(tmp_path, sqlite_url):
    from tests.support import MINI_CONFIG, write_library

    path = write_library(tmp_path, MINI_CONFIG + "    anonymous_answers: 'off'\n")
    chat = await make_chat(path, sqlite_url)
    try:
        await chat.say("/discuss now")
        assert "turned off" in await chat.say("/discuss answer --anonymous x", who="bob")
    finally:
        await chat.store.close()


async def test_closed_round_refuses_commands_and_ignores_thread_talk(chat):
    await chat.say("/discuss now")
    await chat.say("/discuss close")
    assert "no open round" in await chat.say("/discuss answer late", who="bob")
    ref = chat.platform.rounds()[0]
    assert await chat.say("still chatting", who="bob", thread="msg-1") == ""
    assert await chat.store.responses(ref.round_id) == []


async def test_thread_reply_to_a_non_round_message_is_not_an_answer(chat):
    await chat.say("/discuss now")
    assert await chat.say("unrelated", who="bob", thread="some-other-message") == ""


async def test_next_sets_preview_and_help(chat):
    assert "Alpha article" in await chat.say("/discuss next", who="bob")
    sets = await chat.say("/discuss sets")
    assert "mini — Mini set (3 prompts)" in sets
    preview = await chat.say("/discuss preview beta", who="bob")
    assert "Preview" in preview and "Beta article" in preview
    assert chat.platform.posts == []
    assert "/discuss answer" in await chat.say("/discuss help", who="bob")


async def test_no_view_ever_lists_who_did_not_answer(chat):
    """Results and digests name only people who chose to answer with their name."""
    await chat.say("/discuss now")
    await chat.say("named answer", who="bob")
    await chat.say("/discuss answer --anonymous hidden", who="carol")
    out = await chat.say("/discuss results")
    await chat.say("/discuss close")
    digest = chat.platform.summaries()[0]
    names = {a.author for g in digest.groups for a in g.answers}
    assert names == {"Bob", None}
    assert "Carol" not in out and "Admin" not in out


async def test_failed_post_is_reported_and_does_not_lose_the_round(chat):
    chat.platform.fail_channels.add("console:general")
    reply = await chat.say("/discuss now")
    assert "Could not post in console:general" in reply
    (round_,) = await chat.store.rounds()
    assert round_.status == "posting"  # left for recovery, never silently dropped
