"""The round service: opening and closing rounds, rotation, answers, results and digests.

This is the only place that decides what a round is; handlers translate commands into
calls here, and the scheduler calls the same methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial

from bot import metrics
from bot.anonymity import (
    Keyring,
    KeyUnavailable,
    RoundTags,
    count_authors,
    load_keyring,
    new_round_key,
)
from bot.config import Schedule
from bot.core.clock import Clock
from bot.core.events import (
    Actor,
    Answer,
    AnswerGroup,
    Outcome,
    PromptView,
    RoundPost,
    Summary,
    ThreadPost,
    platform_of,
)
from bot.core.lifecycle import Lifecycle
from bot.library import Library
from bot.plan import NextPrompt, pick_next, rotation_of, rotation_order
from bot.prompts import Prompt
from bot.storage.models import CLAIMED, POSTING, Response, RotationEntry, Round
from bot.storage.privacy import anonymous_tags, keyring_for, replace_round_key, set_answer_text
from bot.storage.store import ChannelBusy, Store

log = logging.getLogger(__name__)

MAX_ANSWER = 4000
# How long a process may take to post a round before another may take over.
POST_LEASE = timedelta(minutes=2)


class AnswerRejected(ValueError):
    """The answer cannot be stored; the message says why. Nothing was saved."""


class AnonymousLocked(Exception):
    """Anonymous answers of this round cannot be matched to their author any more: the
    server secret that sealed the round's key is gone. ``removed`` named answers went."""

    def __init__(self, removed: int):
        super().__init__(removed)
        self.removed = removed


class RotationExhausted(LookupError):
    """Every prompt of the channel's set was used and its schedule says ``when_exhausted: stop``."""


RUNNING_OUT = 2  # warn (log, /discuss next) when this many unused prompts or fewer are left


def prompt_view(prompt: Prompt) -> PromptView:
    return PromptView(
        prompt_id=prompt.id,
        title=prompt.title,
        source=prompt.source,
        url=str(prompt.url) if prompt.url else None,
        summary=prompt.summary,
        questions=tuple((q.text, q.origin.value) for q in prompt.questions),
    )


_NO_PROMPT = Prompt.model_construct(
    id="", title="(no prompt left)", source="", url=None, summary="", questions=[]
)


def round_key(round_: Round) -> str:
    """Stable per round: the idempotency key adapters attach to the round's post."""
    return f"rt-{round_.id}"


def round_post(round_: Round) -> RoundPost:
    return RoundPost(
        round_id=round_.id,
        round_key=round_key(round_),
        channel=round_.channel,
        prompt=PromptView.from_json(round_.prompt_snapshot),
        anonymous_allowed=round_.anonymous_allowed,
    )


class RoundService:
    def __init__(
        self,
        store: Store,
        library: Callable[[], Library],
        clock: Clock,
        keyring: Keyring | None = None,
    ):
        self.store = store
        self.library = library
        self.clock = clock
        if keyring is not None:
            store.keyring = keyring  # the store opens tags with it when rounds close

    @property
    def keyring(self) -> Keyring:
        """The server secret's keyring; loaded (the key file created) on first need."""
        if self.store.keyring is None:
            self.store.keyring = load_keyring(self.store.engine.url)
        return self.store.keyring

    # ---- rotation -----------------------------------------------------------------------

    async def next_prompt(
        self, channel: str, schedule: Schedule | None = None
    ) -> NextPrompt | None:
        """The prompt a channel gets next: from ``schedule``'s set when a schedule fires,
        else from the channel's own set (its first schedule's, or the default)."""
        found = rotation_of(self.library(), channel, schedule)
        if found is None:
            return None
        loaded, schedule = found
        cycle, used = await self.store.rotation(channel, loaded.id)
        return pick_next(loaded, channel, schedule, cycle, used)

    # ---- opening and closing ------------------------------------------------------------

    async def open_round(
        self,
        channel: str,
        *,
        prompt_id: str | None = None,
        schedule: Schedule | None = None,
        occurrence: str | None = None,
        due_at: datetime | None = None,
    ) -> tuple[Round, Outcome]:
        """Open a round now (closing the channel's open round first) and return its post.

        Raises LookupError for an unknown prompt id and ChannelBusy when another process
        opened a round in the channel at the same instant.
        """
        lib = self.library()
        now = self.clock.now()
        if prompt_id is not None:
            found = lib.find_prompt(prompt_id)
            if found is None:
                raise LookupError(prompt_id)
            loaded, prompt = found
            cycle, used = await self.store.rotation(channel, loaded.id)
            if used >= {p.id for p in loaded.prompts}:
                cycle += 1  # the pass is complete: an explicit pick starts the next one
        else:
            nxt = await self.next_prompt(channel)
            if nxt is None:
                if lib.set_for_channel(channel) is not None:
                    raise RotationExhausted(channel)
                raise LookupError("no prompt sets")
            loaded, prompt, cycle = nxt.prompt_set, nxt.prompt, nxt.cycle
            self._note_running_out([channel], {channel: nxt})
        schedule = schedule or lib.schedule_for_channel(channel)
        new = self._new_round(
            channel, loaded.id, prompt, schedule, occurrence, due_at or now, POSTING, now
        )
        entry = RotationEntry(
            channel=channel, prompt_set=loaded.id, cycle=cycle, prompt_id=prompt.id, used_at=now
        )
        round_, closed = await self.store.open_round(new, rotation=entry, now=now)
        outcome = Outcome()
        for old in closed:
            outcome.posts.append(await self.summary(old, final=True))
            self.store.on_commit(partial(metrics.round_closed, platform_of(old.channel)))
        outcome.posts.append(round_post(round_))
        log.info("opened round %s in %s with prompt %s", round_.id, channel, prompt.id)
        return round_, outcome

    def _new_round(
        self,
        channel: str,
        prompt_set: str,
        prompt: Prompt,
        schedule: Schedule | None,
        occurrence: str | None,
        due_at: datetime,
        status: str,
        now: datetime,
    ) -> Round:
        """A round row; reminder and close times count from when it actually opens."""
        return Round(
            channel=channel,
            schedule_name=schedule.name if schedule and occurrence else None,
            occurrence=occurrence,
            status=status,
            lease_until=now + POST_LEASE,
            prompt_set=prompt_set,
            prompt_id=prompt.id,
            prompt_snapshot=prompt_view(prompt).to_json(),
            anonymous_allowed=(schedule is None or schedule.anonymous_answers == "allowed"),
            min_anonymous_group=schedule.min_anonymous_group if schedule else 3,
            anon_key=None,  # created, sealed, at the round's first anonymous answer
            created_at=now,
            due_at=due_at,
            remind_at=(now + schedule.reminder_after)
            if schedule and schedule.reminder_after
            else None,
            close_at=(now + schedule.close_after) if schedule and schedule.close_after else None,
        )

    async def claim_scheduled(
        self, schedule: Schedule, channel: str, occurrence: str, due_at: datetime
    ) -> tuple[Round | None, Outcome]:
        """Claim a scheduled occurrence and open its round, unless it is already taken.

        The database decides (unique key on schedule, channel, occurrence): at most one
        caller, in any process, gets the round back; everyone else gets None. The
        returned outcome holds the digests of rounds this closed and the round's post.
        """
        now = self.clock.now()
        nxt = await self.next_prompt(channel, schedule)
        if nxt is None:
            if schedule.prompt_set in self.library().prompt_sets:
                raise RotationExhausted(channel)
            raise LookupError("no prompt sets")
        new = self._new_round(
            channel, nxt.prompt_set.id, nxt.prompt, schedule, occurrence, due_at, CLAIMED, now
        )
        entry = RotationEntry(
            channel=channel,
            prompt_set=nxt.prompt_set.id,
            cycle=nxt.cycle,
            prompt_id=nxt.prompt.id,
            used_at=now,
        )
        round_, closed = await self.store.claim_occurrence(new, rotation=entry, now=now)
        outcome = Outcome()
        if round_ is None:
            return None, outcome
        for old in closed:
            outcome.posts.append(await self.summary(old, final=True))
            self.store.on_commit(partial(metrics.round_closed, platform_of(old.channel)))
        outcome.posts.append(round_post(round_))
        log.info(
            "claimed %s/%s in %s: round %s with prompt %s",
            schedule.name,
            occurrence,
            channel,
            round_.id,
            nxt.prompt.id,
        )
        self._note_running_out([channel], {channel: nxt}, schedule)
        return round_, outcome

    async def claim_many(
        self,
        schedule: Schedule,
        occurrence: str,
        due_at: datetime,
        picks: dict[str, NextPrompt],
    ) -> tuple[list[Round], Outcome]:
        """Claim one occurrence in many channels at once (the prompt per channel already
        picked): a handful of statements for all of them, in the caller's transaction.
        The outcome holds the digests of the rounds this closed, then the new posts."""
        now = self.clock.now()
        news, entries = [], []
        for channel, nxt in picks.items():
            news.append(
                self._new_round(
                    channel,
                    nxt.prompt_set.id,
                    nxt.prompt,
                    schedule,
                    occurrence,
                    due_at,
                    CLAIMED,
                    now,
                )
            )
            entries.append(
                RotationEntry(
                    channel=channel,
                    prompt_set=nxt.prompt_set.id,
                    cycle=nxt.cycle,
                    prompt_id=nxt.prompt.id,
                    used_at=now,
                )
            )
        claimed, closed = await self.store.claim_many(news, entries, now)
        outcome = Outcome()
        answers = await self.store.responses_of([r.id for r in closed])
        for old in closed:
            outcome.posts.append(build_summary(old, answers.get(old.id, []), final=True))
            self.store.on_commit(partial(metrics.round_closed, platform_of(old.channel)))
        outcome.posts.extend(round_post(r) for r in claimed)
        self._note_running_out([r.channel for r in claimed], picks, schedule)
        log.info("claimed %s/%s in %d channel(s)", schedule.name, occurrence, len(claimed))
        return claimed, outcome

    def _note_running_out(
        self, channels: list[str], picks: dict[str, NextPrompt], schedule: Schedule | None = None
    ) -> None:
        """Tell the log when channels are about to run out of unused prompts: one line
        for all the channels of one occurrence that are in the same state."""
        groups: dict[tuple[str, int, str], list[str]] = {}
        for channel in channels:
            nxt = picks[channel]
            if nxt.remaining_after > RUNNING_OUT:
                continue
            rule = schedule or self.library().schedule_for_channel(channel)
            then = (
                "scheduled rounds stop (when_exhausted: stop)"
                if rule is not None and rule.when_exhausted == "stop"
                else "the rotation starts over"
            )
            groups.setdefault((nxt.prompt_set.id, nxt.remaining_after, then), []).append(channel)
        for (set_id, left, then), names in groups.items():
            where = names[0] if len(names) == 1 else f"{len(names)} channels ({names[0]}, …)"
            log.warning(
                "%s %s %d unused prompt%s left in set %s; add prompts, or %s",
                where,
                "has" if len(names) == 1 else "have",
                left,
                "s" * (left != 1),
                set_id,
                then,
            )

    async def record_unposted(
        self,
        schedule: Schedule,
        channel: str,
        occurrence: str,
        due_at: datetime,
        status: str,
        reason: str,
        *,
        consume_skip: bool = False,
    ) -> bool:
        """Record a skipped or missed occurrence (once); the rotation does not advance."""
        now = self.clock.now()
        nxt = await self.next_prompt(channel, schedule)
        if nxt is not None:
            row = self._new_round(
                channel, nxt.prompt_set.id, nxt.prompt, schedule, occurrence, due_at, status, now
            )
        else:  # no prompt left to name: record the occurrence with an empty placeholder
            row = self._new_round(
                channel, schedule.prompt_set, _NO_PROMPT, schedule, occurrence, due_at, status, now
            )
        row.anon_key, row.lease_until, row.remind_at, row.close_at = None, None, None, None
        row.status_reason, row.closed_at = reason, now
        return await self.store.record_occurrence(row, consume_skip=consume_skip)

    async def reminder(self, round_: Round) -> ThreadPost:
        """A nudge in the round's thread: how many shared so far, never who did not."""
        n = (await self.store.count_respondents([round_.id])).get(round_.id, 0)
        people = "Nobody has" if n == 0 else f"{n} {'person has' if n == 1 else 'people have'}"
        return ThreadPost(
            round_id=round_.id,
            channel=round_.channel,
            thread_ref=round_.thread_ref,
            kind="reminder",
            text=f"Reminder: {people} shared their thoughts on this round so far. "
            "There's still time to add yours.",
        )

    async def close_round(
        self, round_: Round, *, why: str = "missed: closed before it was posted"
    ) -> Outcome:
        """Close a posted round with its digest (one outbox row, in the caller's
        transaction); a round never posted ends missed with ``why`` and no digest."""
        closed = await Lifecycle(self.store).close(round_.id, self.clock.now(), why=why)
        outcome = Outcome()
        if closed is not None:
            outcome.posts.append(await self.summary(closed, final=True))
            log.info("closed round %s in %s", closed.id, closed.channel)
            self.store.on_commit(partial(metrics.round_closed, platform_of(closed.channel)))
        return outcome

    async def mark_posted(
        self, round_id: int, message_ref: str | None, thread_ref: str | None
    ) -> None:
        await self.store.mark_posted(round_id, message_ref, thread_ref, self.clock.now())

    # ---- answers ------------------------------------------------------------------------

    @staticmethod
    def check_text(text: str) -> str:
        text = text.strip()
        if not text:
            raise AnswerRejected("Your answer is empty, so nothing was saved.")
        if len(text) > MAX_ANSWER:
            raise AnswerRejected(
                f"Your answer is {len(text):,} characters; the limit is {MAX_ANSWER:,}. "
                "Nothing was saved — please shorten it and try again."
            )
        return text

    def check_question(self, round_: Round, question: int | None) -> int | None:
        n = len(round_.prompt_snapshot["questions"])
        if question is not None and not 1 <= question <= n:
            raise AnswerRejected(
                f"This round has {n} question{'s' if n != 1 else ''}; there is no question {question}."
            )
        return question

    async def record_answer(
        self,
        round_: Round,
        actor: Actor,
        text: str,
        *,
        question: int | None = None,
        anonymous: bool = False,
        message_ref: str | None = None,
    ) -> tuple[Response, bool, Outcome]:
        """Validate and commit one answer. Returns (response, was_update, posts).

        Raises AnswerRejected (with a user-facing reason) when nothing was stored.
        """
        text = self.check_text(text)
        question = self.check_question(round_, question)
        if anonymous and not round_.anonymous_allowed:
            raise AnswerRejected("Anonymous answers are turned off for this round.")
        if not round_.is_open:
            raise AnswerRejected("This round is closed, so answers are no longer collected.")
        now = self.clock.now()
        if anonymous:
            tags = RoundTags(round_.id, await self._anon_key(round_))
            row = Response(
                round_id=round_.id,
                anonymous=True,
                pseudonym=tags.tag(actor.key),
                question=question,
                text=text,
                message_ref=None,
                late=False,
                created_at=now,
            )
            # the same person's earlier anonymous answer to the same question is replaced
            saved, updated = await self._save_anonymous(round_, row, tags, actor)
        else:
            row = Response(
                round_id=round_.id,
                anonymous=False,
                author_id=actor.key,
                author_name=actor.display_name,
                question=question,
                text=text,
                message_ref=message_ref,
                late=False,
                created_at=now,
            )
        if not anonymous:
            saved, updated = await self.store.save_response(row, replace_same_question=True)
        stored = partial(metrics.answer_stored, platform_of(round_.channel), anonymous=anonymous)
        self.store.on_commit(stored)
        outcome = Outcome()
        if anonymous:
            label = f"Anonymous answer to Q{question}:" if question else "Anonymous answer:"
            outcome.posts.append(
                ThreadPost(
                    round_id=round_.id,
                    channel=round_.channel,
                    thread_ref=round_.thread_ref,
                    kind="anonymous_answer",
                    text=label,
                    quote=text,
                    question=question,
                )
            )
        return saved, updated, outcome

    async def withdraw(self, round_: Round, actor: Actor) -> int:
        """Remove the actor's answers in an open round. Raises AnonymousLocked (after
        removing the named ones) when the round's key can no longer be opened."""
        async with self.store.transaction():
            try:
                mine = [rid for rid, _, _ in await self.anonymous_rows_of(round_, actor)]
            except KeyUnavailable:
                n = await self.store.delete_responses_of(round_.id, author_id=actor.key)
                raise AnonymousLocked(n) from None
            return await self.store.delete_responses_of(
                round_.id, author_id=actor.key, anonymous_ids=mine
            )

    async def anonymous_rows_of(
        self, round_: Round, actor: Actor, tags: RoundTags | None = None
    ) -> list[tuple[int, int | None, str | None]]:
        """(id, question, tag) of the actor's anonymous answers in an open round: the
        round's tags are loaded and opened here (they are randomised, so SQL cannot
        compare them). Raises KeyUnavailable when the server secret that sealed the
        round's key is gone."""
        if tags is None:
            if round_.anon_key is None:
                return []
            tags = RoundTags(round_.id, self.keyring.open(round_.id, round_.anon_key))
        async with self.store.session() as s:
            rows = await anonymous_tags(s, round_.id)
        mine = tags.alias(actor.key)
        return [(rid, q, tag) for rid, q, tag in rows if tags.open(tag) == mine]

    async def _save_anonymous(
        self, round_: Round, row: Response, tags: RoundTags, actor: Actor
    ) -> tuple[Response, bool]:
        """Insert an anonymous answer, or update the same person's earlier one to the same
        question (found by opening the round's tags). Returns (row, was_update).
        The same person's answers to this round are saved one at a time, even by two
        instances: the lock's key is their alias in the round, linked to nobody."""
        async with self.store.transaction():
            await self.store.exclusive(tags.alias(actor.key))
            mine = await self.anonymous_rows_of(round_, actor, tags)
            earlier = next(((rid, tag) for rid, q, tag in mine if q == row.question), None)
            if earlier is None:
                return await self.store.save_response(row, replace_same_question=False)
            row.id, row.pseudonym, row.edited_at = earlier[0], earlier[1], row.created_at
            async with self.store.session() as s:
                await set_answer_text(s, row.id, row.text, row.created_at)
            return row, True

    async def _anon_key(self, round_: Round) -> bytes:
        """The round's key, created (sealed under the server secret) when first needed.

        If the sealed key cannot be opened (the key file was lost), the round gets a new
        key: new anonymous answers still work; earlier ones can no longer be updated or
        withdrawn by their authors (docs/privacy.md)."""
        if round_.anon_key is not None:
            try:
                return self.keyring.open(round_.id, round_.anon_key)
            except KeyUnavailable:
                log.warning(
                    "round %s: its anonymity key was sealed with another server secret "
                    "(lost key file?); starting a new key for this round",
                    round_.id,
                )
        fresh = new_round_key()
        async with self.store.session() as s:
            stored = await replace_round_key(
                s, round_.id, round_.anon_key, self.keyring.seal(round_.id, fresh)
            )
        if stored is None:
            raise AnswerRejected("This round is closed, so answers are no longer collected.")
        round_.anon_key = stored
        return self.keyring.open(round_.id, stored)

    # ---- views --------------------------------------------------------------------------

    async def summary(self, round_: Round, *, final: bool) -> Summary:
        responses = await self.store.responses(round_.id)
        tags = None
        if round_.respondents is None and any(r.anonymous for r in responses):
            async with self.store.session() as s:  # an open round: its tags are opened
                fresh = await s.get(Round, round_.id, populate_existing=True)
                if fresh is not None:
                    round_ = fresh  # its key now (or its counts, if it closed meanwhile)
                if round_.anon_key is not None:
                    try:
                        key = keyring_for(s).open(round_.id, round_.anon_key)
                        tags = RoundTags(round_.id, key)
                    except KeyUnavailable:
                        tags = None
        return build_summary(round_, responses, final=final, tags=tags)


def respondent_counts(
    round_: Round, responses: list[Response], tags: RoundTags | None = None
) -> tuple[int, int]:
    """(people who answered, people who answered anonymously). Open rounds count named
    authors by id and anonymous ones by opening their tags (``tags``: the round's key;
    without it each anonymous answer counts as one person); a closed round's tags are
    erased, so it uses the counts taken in its closing transaction."""
    if round_.respondents is not None and round_.anonymous_respondents is not None:
        return round_.respondents, round_.anonymous_respondents
    anon = count_authors(tags, [r.pseudonym for r in responses if r.anonymous])
    return len({r.author_id for r in responses if not r.anonymous}) + anon, anon


def build_summary(
    round_: Round, responses: list[Response], *, final: bool, tags: RoundTags | None = None
) -> Summary:
    """Group answers per question without exposing who was anonymous.

    Anonymous answers are listed after named ones, sorted by text rather than by time,
    so their order says nothing about who wrote them. When fewer people answered
    anonymously than the round's ``min_anonymous_group``, their answers are pooled in
    one group and no per-question counts are shown, so a lone anonymous answer cannot
    be singled out by which question it went to.
    """
    prompt = PromptView.from_json(round_.prompt_snapshot)
    respondents, anon_people = respondent_counts(round_, responses, tags)
    pool_anonymous = 0 < anon_people < round_.min_anonymous_group
    numbers: list[int | None] = [*range(1, len(prompt.questions) + 1), None]
    groups = []
    for number in numbers:
        named = [r for r in responses if not r.anonymous and r.question == number]
        anon = (
            [] if pool_anonymous else [r for r in responses if r.anonymous and r.question == number]
        )
        answers = [Answer(r.text, r.author_name or "someone", r.late) for r in named]
        answers += [Answer(r.text, None, r.late) for r in sorted(anon, key=lambda r: r.text)]
        if answers:
            question = prompt.questions[number - 1][0] if number else "Other thoughts"
            groups.append(AnswerGroup(number, question, tuple(answers)))
    if pool_anonymous:
        pooled = sorted((r for r in responses if r.anonymous), key=lambda r: r.text)
        groups.append(
            AnswerGroup(None, "Shared anonymously", tuple(Answer(r.text, None) for r in pooled))
        )
    note = None
    if not responses:
        note = (
            "No answers yet." if not final else "Nobody shared an answer this time — that's fine."
        )
    return Summary(
        round_id=round_.id,
        channel=round_.channel,
        thread_ref=round_.thread_ref,
        title=prompt.title,
        respondents=respondents,
        groups=tuple(groups),
        final=final,
        show_counts=not pool_anonymous,
        note=note,
    )


__all__ = [
    "MAX_ANSWER",
    "AnonymousLocked",
    "AnswerRejected",
    "ChannelBusy",
    "NextPrompt",
    "RotationExhausted",
    "RoundService",
    "build_summary",
    "prompt_view",
    "rotation_order",
    "round_key",
    "round_post",
]
