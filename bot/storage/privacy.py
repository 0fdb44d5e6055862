"""Database work for privacy: counting and erasing anonymous answers' tags on close, forgetting a person, purging
old rounds. Kept out of ``store.py`` so the write path can change independently; the
store calls ``close_anonymity`` in every transaction that closes rounds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from bot.anonymity import Keyring, KeyUnavailable, RoundTags, count_authors, load_keyring
from bot.storage.models import (
    OPEN_STATUSES,
    InboxEntry,
    ProcessedEvent,
    PurgeLog,
    Response,
    Round,
)

log = logging.getLogger(__name__)


# ---- closing ------------------------------------------------------------------------------


def keyring_for(s: AsyncSession) -> Keyring:
    """The server secret of the store this session belongs to (loaded on first need)."""
    store = s.info["store"]
    if store.keyring is None:
        store.keyring = load_keyring(store.engine.url)
    return store.keyring


async def anonymous_tags(
    s: AsyncSession, round_id: int
) -> list[tuple[int, int | None, str | None]]:
    """(id, question, tag) of every anonymous answer of a round: tags are randomised, so
    a person's rows are found by opening them in Python (``RoundTags.rows_of``), never
    by comparing in SQL. Rounds hold at most a few hundred answers."""
    return [
        tuple(row)
        for row in (
            await s.execute(
                select(Response.id, Response.question, Response.pseudonym).where(
                    Response.round_id == round_id, Response.anonymous.is_(True)
                )
            )
        ).all()
    ]


def round_tags(s: AsyncSession, round_id: int, sealed: bytes | None) -> RoundTags | None:
    """The round's tags opener; None when it has no key or the key cannot be opened."""
    if sealed is None:
        return None
    try:
        return RoundTags(round_id, keyring_for(s).open(round_id, sealed))
    except KeyUnavailable:
        return None


async def set_answer_text(s: AsyncSession, response_id: int, text: str, now: datetime) -> None:
    """An anonymous answer replaced by its author's new one to the same question."""
    await s.execute(
        update(Response)
        .where(Response.id == response_id)
        .values(text=text, edited_at=now)
        .execution_options(synchronize_session=False)
    )


async def respondent_counts(s: AsyncSession, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """(people, people anonymously) per round: named authors by id, anonymous authors by
    opening their tags with the round key (a tag that cannot be opened counts as one)."""
    named = dict(
        (
            await s.execute(
                select(Response.round_id, func.count(func.distinct(Response.author_id)))
                .where(Response.round_id.in_(ids), Response.author_id.is_not(None))
                .group_by(Response.round_id)
            )
        ).all()
    )
    tags: dict[int, list[str | None]] = {}
    for rid, tag in (
        await s.execute(
            select(Response.round_id, Response.pseudonym).where(
                Response.round_id.in_(ids), Response.anonymous.is_(True)
            )
        )
    ).all():
        tags.setdefault(rid, []).append(tag)
    keys = {}
    if tags:
        keys = dict(
            (await s.execute(select(Round.id, Round.anon_key).where(Round.id.in_(tags)))).all()
        )
    out = {}
    for rid in ids:
        anon = count_authors(round_tags(s, rid, keys.get(rid)), tags[rid]) if rid in tags else 0
        out[rid] = (named.get(rid, 0) + anon, anon)
    return out


async def close_anonymity(
    s: AsyncSession, rounds: Sequence[Round | int], *, rows: Sequence[Round] = ()
) -> None:
    """In the closing transaction: count respondents (the last moment anonymous answers
    can be told apart by author: their tags are opened with the round key), then erase
    the round key and every tag, so no one can group or link the round's anonymous
    answers afterwards. The closing statements leave ``anon_key`` to this function.
    ``rounds`` are ORM rows or ids; ``rows`` are loaded rows to update in memory too."""
    if not rounds:
        return
    loaded = [r for r in [*rounds, *rows] if isinstance(r, Round)]
    ids = sorted({r if isinstance(r, int) else r.id for r in rounds})
    await s.flush()
    counts = await respondent_counts(s, ids)
    for rid in ids:
        n, anon = counts[rid]
        await s.execute(
            update(Round)
            .where(Round.id == rid)
            .values(respondents=n, anonymous_respondents=anon, anon_key=None)
            .execution_options(synchronize_session=False)
        )
    for r in loaded:  # keep callers' objects in step without marking them dirty
        n, anon = counts[r.id]
        set_committed_value(r, "respondents", n)
        set_committed_value(r, "anonymous_respondents", anon)
        set_committed_value(r, "anon_key", None)
    await s.execute(
        update(Response)
        .where(Response.round_id.in_(ids), Response.pseudonym.is_not(None))
        .values(pseudonym=None)
        .execution_options(synchronize_session=False)
    )


async def truncate_wal(engine: AsyncEngine) -> None:
    """SQLite: copy the WAL into the database file and truncate it to zero bytes, so the
    erased key and pseudonyms survive in neither file (``secure_delete`` zeroes them in
    the database pages). A no-op on PostgreSQL (see docs/privacy.md for what remains)."""
    if engine.dialect.name != "sqlite":
        return
    async with engine.connect() as conn:
        # On the driver connection itself: outside any transaction (the engine's "begin"
        # hook would wrap a SQLAlchemy-level statement in BEGIN IMMEDIATE).
        raw = await conn.get_raw_connection()
        cursor = await raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        busy, _, _ = await cursor.fetchone()
        await cursor.close()
    if busy:  # a reader held the WAL; the next close (or restart) truncates it
        log.warning("could not truncate the SQLite WAL after closing a round (busy)")


# ---- forgetting a person ----------------------------------------------------------------


@dataclass(frozen=True)
class Forgotten:
    named: int  # named answers deleted (open and closed rounds)
    anonymous: int  # anonymous answers deleted (open rounds only: nothing else links)
    dedup_rows: int  # inbox/dedup rows that named one of the deleted messages
    unreadable_rounds: int = 0  # open rounds whose key could not be opened (lost secret)

    @property
    def answers(self) -> int:
        return self.named + self.anonymous


async def forget_answers(
    s: AsyncSession, author_id: str, anonymous_ids: Sequence[int]
) -> tuple[int, int, list[tuple[str, str]]]:
    """Delete every named answer of ``author_id`` and the given anonymous answers (found
    by opening their tags in their open rounds). Returns (named, anonymous, message refs
    of deleted answers as (channel, message_ref)) so the caller can drop dedup rows."""
    named_rows = (
        await s.execute(
            select(
                Response.id, Response.round_id, Response.message_ref, Round.channel, Round.status
            )
            .join(Round)
            .where(Response.author_id == author_id)
        )
    ).all()
    refs = [(ch, ref) for _, _, ref, ch, _ in named_rows if ref]
    # A closed round's stored respondent count included this person once (by author id).
    closed_rounds = {rid for _, rid, _, _, status in named_rows if status not in OPEN_STATUSES}
    if closed_rounds:
        await s.execute(
            update(Round)
            .where(Round.id.in_(closed_rounds), Round.respondents > 0)
            .values(respondents=Round.respondents - 1)
        )
    named = 0
    if named_rows:
        named = (
            await s.execute(delete(Response).where(Response.id.in_([r[0] for r in named_rows])))
        ).rowcount
    anonymous = 0
    if anonymous_ids:
        anonymous = (
            await s.execute(
                delete(Response).where(
                    Response.id.in_(list(anonymous_ids)), Response.anonymous.is_(True)
                )
            )
        ).rowcount
    return named, anonymous, refs


async def forget_dedup_rows(s: AsyncSession, refs: Iterable[tuple[str, str]]) -> int:
    """Delete inbox/dedup rows that name a deleted message (its channel and timestamp).

    Today that is ``processed_events`` keyed ``"<platform>:<channel id>:<message id>"``
    (our channel refs are ``"<platform>:<channel id>"``). When an inbox table lands,
    extend this function: it is the one place forget-me clears what arrived.
    """
    keys = [f"{channel}:{ref}" for channel, ref in refs]
    n = 0
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        n += (await s.execute(delete(ProcessedEvent).where(ProcessedEvent.key.in_(chunk)))).rowcount
        # The inbox keys a thread reply the same way (Slack: channel + ts).
        n += (await s.execute(delete(InboxEntry).where(InboxEntry.key.in_(chunk)))).rowcount
    return n


# ---- retention ----------------------------------------------------------------------------


async def purge_candidates(s: AsyncSession, before: datetime) -> list[Round]:
    """Ended rounds created before ``before`` (open rounds are never purged)."""
    return list(
        (
            await s.scalars(
                select(Round)
                .where(Round.status.not_in(OPEN_STATUSES), Round.created_at < before)
                .order_by(Round.id)
            )
        ).all()
    )


async def purge_rounds(
    s: AsyncSession, round_ids: list[int], *, now: datetime, cutoff: datetime
) -> tuple[int, int]:
    """Delete rounds and their answers; log the counts (never what or whose). Counts come
    from the deletes themselves, so two processes purging at once log each row once."""
    rounds = answers = 0
    if round_ids:
        answers = (
            await s.execute(delete(Response).where(Response.round_id.in_(round_ids)))
        ).rowcount
        rounds = (await s.execute(delete(Round).where(Round.id.in_(round_ids)))).rowcount
    # Dedup rows older than the cutoff name channels and message times; drop them too.
    await s.execute(delete(ProcessedEvent).where(ProcessedEvent.seen_at < cutoff))
    if rounds:
        s.add(PurgeLog(ran_at=now, cutoff=cutoff, rounds=rounds, answers=answers))
    return rounds, answers


async def purge_log(s: AsyncSession) -> list[PurgeLog]:
    return list((await s.scalars(select(PurgeLog).order_by(PurgeLog.ran_at))).all())


# ---- round keys ---------------------------------------------------------------------------


async def replace_round_key(
    s: AsyncSession, round_id: int, expected: bytes | None, sealed: bytes
) -> bytes | None:
    """Store a new sealed key unless another process stored one first; returns the
    round's sealed key now, or None when the round is no longer open."""
    await s.execute(
        update(Round)
        .where(
            Round.id == round_id,
            Round.status.in_(OPEN_STATUSES),
            Round.anon_key.is_(None) if expected is None else Round.anon_key == expected,
        )
        .values(anon_key=sealed)
    )
    return await s.scalar(
        select(Round.anon_key).where(Round.id == round_id, Round.status.in_(OPEN_STATUSES))
    )


async def open_rounds_with_keys(s: AsyncSession) -> list[Round]:
    return list(
        (
            await s.scalars(
                select(Round).where(Round.status.in_(OPEN_STATUSES), Round.anon_key.is_not(None))
            )
        ).all()
    )
