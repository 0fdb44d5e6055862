"""A PostgreSQL outage while people answer, through a real TCP proxy (tests/pgproxy.py)
in front of the shared server, which keeps running: the proxy drops every connection
and refuses new ones, then comes back. Every answer sent meanwhile is either refused
with "not saved" or stored exactly once after recovery; nothing is lost silently and
the bot keeps working without a restart."""

from __future__ import annotations

from sqlalchemy import select

from bot.core.events import MessagePosted
from bot.core.inbox import DELAYED, NOT_SAVED
from bot.storage.models import InboxEntry
from tests.pgproxy import PgProxy
from tests.support import make_chat

SAVED = "Saved your answer."


async def test_answers_during_a_database_outage_are_refused_or_stored_once(pg_url, config_path):
    proxy = await PgProxy.for_url(pg_url).start()
    chat = await make_chat(config_path, proxy.url(pg_url))
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:  # the retries' backoff, without sleeping
        waits.append(seconds)

    chat.dispatcher.inbox._sleep = no_wait
    try:
        await chat.say("/discuss now")
        assert await chat.say("before", who="bob") == SAVED
        assert proxy.connections >= 1  # the bot really talks through the proxy
        # stored before the outage, processed during it: the person hears it is delayed
        inbox = chat.dispatcher.inbox
        early = MessagePosted(chat.actor("erin"), chat.channel, "accepted early", "m-early")
        ticket = await inbox.accept("console:m-early", early)

        await proxy.down()
        assert [r.text for r in await inbox.process(ticket)] == [DELAYED]
        during = {f"p{i}": await chat.say(f"during {i}", who=f"p{i}") for i in range(4)}
        assert set(during.values()) <= {NOT_SAVED, DELAYED}  # never "saved"
        assert waits  # retried (with backoff) before giving the answer up

        await proxy.up()
        await inbox.process_due()
        assert await chat.say("after", who="carol") == SAVED  # no restart needed

        round_ = await chat.store.open_round_in(chat.channel)
        texts = sorted(r.text for r in await chat.store.responses(round_.id))
        kept = [f"during {i}" for i, said in enumerate(during.values()) if said == DELAYED]
        assert texts == sorted(["before", "accepted early", "after", *kept])
        async with chat.store.session() as s:
            statuses = {r.key: r.status for r in (await s.scalars(select(InboxEntry))).all()}
        assert statuses["console:m-early"] == "done"
        assert set(statuses.values()) == {"done"}  # nothing left behind
    finally:
        await chat.store.close()
        await proxy.close()
