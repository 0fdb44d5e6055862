"""Forget-me: delete everything that still names or links one person.

``/discuss forget-me confirm`` and ``roundtable forget`` both call ``forget_person``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.anonymity import KeyUnavailable
from bot.core.events import Actor
from bot.storage import privacy as db

if TYPE_CHECKING:
    from bot.core.rounds import RoundService

log = logging.getLogger(__name__)


async def forget_person(service: RoundService, author_id: str) -> db.Forgotten:
    """Delete every named answer of ``author_id`` ("platform:user") in open and closed
    rounds, their anonymous answers in open rounds (closed ones link to nobody), and
    the dedup rows naming the deleted messages. One transaction."""
    platform, _, user = author_id.partition(":")
    actor = Actor(platform, user, "")
    async with service.store.transaction() as s:
        anonymous_ids: list[int] = []
        unreadable = 0
        for round_ in await db.open_rounds_with_keys(s):
            try:  # tags are randomised: the round's are opened to find this person's
                mine = await service.anonymous_rows_of(round_, actor)
            except KeyUnavailable:
                unreadable += 1
                continue
            anonymous_ids += [rid for rid, _, _ in mine]
        named, anonymous, refs = await db.forget_answers(s, actor.key, anonymous_ids)
        dedup = await db.forget_dedup_rows(s, refs)
    log.info("forget-me: deleted %d answer(s) and %d dedup row(s)", named + anonymous, dedup)
    return db.Forgotten(named, anonymous, dedup, unreadable)


def forgotten_text(done: db.Forgotten) -> str:
    n = done.answers
    text = (
        f"Done: deleted {n} answer{'s' * (n != 1)} of yours "
        f"({done.named} with your name, {done.anonymous} anonymous in open rounds)."
    )
    if done.unreadable_rounds:
        text += (
            f" {done.unreadable_rounds} open round(s) have anonymous answers that can no "
            "longer be matched to anyone (the server's key was replaced), so any of yours "
            "there stay, linked to nobody."
        )
    return text + " Anonymous answers in closed rounds are linked to nobody and stay."
