"""Scheduled rounds: open, remind and close on time, each exactly once.

APScheduler (``AsyncIOScheduler``, cron triggers in each schedule's zone) is only an
in-memory alarm clock here: every job just calls ``tick``. ``tick`` looks at the
database, which is the source of truth, and does whatever is due:

* each (schedule, channel, occurrence) is claimed with ``INSERT … ON CONFLICT DO
  NOTHING`` on a unique key, and only the claimant posts, so restarts, misfires and
  several bot processes on one database never double-post;
* a round moves claimed → posting → posted under a lease; a round whose lease ran out
  is taken over by exactly one process, which asks the platform whether the post exists
  (``Platform.find_post``) before posting it again;
* after downtime, the newest missed occurrence opens once if it is within
  ``catch_up_within``; every other missed occurrence is recorded as ``missed``;
* holidays, skip dates, pause and ``/discuss skip`` are recorded as ``skipped`` with the
  reason, and are never made up later;
* reminders and closing digests are claimed with conditional updates, so they too go
  out once.

Tests drive ``tick(now)`` directly with a FakeClock; nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Schedule
from bot.core.clock import Clock
from bot.core.dispatch import Dispatcher
from bot.core.events import platform_of
from bot.core.rounds import RoundService
from bot.library import Library, LibraryHolder
from bot.plan import NextPrompt, Occurrence, decide_occurrence, occurrences, pick_next
from bot.privacy import add_retention_job
from bot.storage.models import MISSED, SKIPPED, OutboxEntry, Round

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=6)  # recovery window for rounds opened by hand
MAX_MISSED_RECORDED = 100  # after a very long outage, older occurrences are only counted
PRUNE_EVERY = timedelta(hours=1)
KEEP_DELIVERED = timedelta(days=7)  # inbox/outbox/dedup rows: well past any redelivery


@dataclass
class TickReport:
    """What one tick did (for logs and tests)."""

    opened: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # channel, key, why
    missed: list[tuple[str, str]] = field(default_factory=list)  # channel, key
    recovered: list[int] = field(default_factory=list)
    reminded: list[int] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)


def _since_key(schedule: str, channel: str) -> str:
    return f"schedule-since:{schedule}:{channel}"


def _schedule_shape(library: Library, schedule: Schedule) -> tuple:
    return (schedule.cron, library.config.zone_of(schedule).key, tuple(schedule.channels))


class Scheduler:
    def __init__(
        self,
        *,
        library: LibraryHolder,
        service: RoundService,
        dispatcher: Dispatcher,
        clock: Clock,
        sweep_every: timedelta = timedelta(seconds=30),
        concurrency: int = 8,
    ):
        self.library = library
        self.service = service
        self.store = service.store
        self.dispatcher = dispatcher
        self.outbox = dispatcher.outbox
        self.outbox.grace_for = self.grace_for
        self.clock = clock
        self.sweep_every = sweep_every
        self._limit = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._aps: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task] = set()
        self._stopping = False
        self._pruned_at: datetime | None = None
        library.subscribe(self._on_reload)

    # ---- the in-memory clock -------------------------------------------------------------

    async def start(self) -> None:
        """Start APScheduler's jobs; the first tick (catch-up) runs right away."""
        # APScheduler logs every job run at INFO (every sweep); keep its warnings only.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._aps = AsyncIOScheduler(timezone="UTC")
        self._aps.add_job(
            self._job,
            IntervalTrigger(seconds=self.sweep_every.total_seconds()),
            id="sweep",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        self._aps.add_job(self._job, id="startup", misfire_grace_time=None)
        add_retention_job(self._aps, self.store, self.library, self.clock)  # bot.privacy
        self._sync_jobs(self.library.current)
        self._aps.start()
        log.info(
            "scheduler started with %d schedule(s)", len(self.library.current.config.schedules)
        )

    async def stop(self) -> None:
        """Stop the clock and let a tick in progress finish (it may be mid-transaction)."""
        self._stopping = True
        if self._aps is None:
            return
        self._aps.pause()  # no new jobs; shutting down would cancel the running one
        running = [t for t in self._running if not t.done()]
        if running:
            await asyncio.wait(running, timeout=30)
        self._aps.shutdown(wait=False)
        self._aps = None

    def jobs(self) -> dict[str, str]:
        """Schedule jobs by id, with their trigger (for tests and logs)."""
        if self._aps is None:
            return {}
        return {j.id: str(j.trigger) for j in self._aps.get_jobs() if j.id.startswith("schedule:")}

    def _sync_jobs(self, library: Library) -> None:
        if self._aps is None:
            return
        wanted = {f"schedule:{s.name}": s for s in library.config.schedules}
        for job in self._aps.get_jobs():
            if job.id.startswith("schedule:"):
                job.remove()
        for job_id, schedule in wanted.items():
            trigger = CronTrigger.from_crontab(
                schedule.cron, timezone=library.config.zone_of(schedule)
            )
            self._aps.add_job(
                self._job,
                trigger,
                id=job_id,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
            )

    async def _job(self) -> None:
        if self._stopping:
            return
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self.tick()
        except Exception:  # the clock must keep ticking whatever one tick ran into
            log.exception("scheduler tick failed")
        finally:
            self._running.discard(task)

    async def _on_reload(self, old: Library, new: Library) -> None:
        """Reschedule changed schedules; a change applies from now on, never backwards."""
        now = self.clock.now()
        before = {s.name: _schedule_shape(old, s) for s in old.config.schedules}
        for schedule in new.config.schedules:
            if before.get(schedule.name) != _schedule_shape(new, schedule):
                for channel in schedule.channels:
                    await self.store.set_value(
                        _since_key(schedule.name, channel), now.isoformat(), now
                    )
                log.info("schedule %s changed: rescheduled", schedule.name)
        self._sync_jobs(new)

    # ---- the work ------------------------------------------------------------------------

    async def tick(self, now: datetime | None = None) -> TickReport:
        """Do everything due at ``now``: close, remind, recover, then open new rounds."""
        async with self._lock:
            now = now or self.clock.now()
            report = TickReport()
            await self._close_due(now, report)
            await self._remind_due(now, report)
            await self._deliver_due(now, report)
            await self._prune(now)
            library = self.library.current
            pairs = [(s, ch) for s in library.config.schedules for ch in s.channels]
            lower = await self._lower_bounds(pairs, now)
            # one occurrence across all its channels is claimed in one transaction
            fires: dict[tuple[str, str], tuple[Schedule, Occurrence, list[str]]] = {}
            calendar: dict[tuple[str, datetime], list[Occurrence]] = {}  # shared by channels
            for schedule, channel in pairs:
                since = lower[(schedule.name, channel)]
                if (schedule.name, since) not in calendar:
                    zone = library.config.zone_of(schedule)
                    calendar[(schedule.name, since)] = list(
                        itertools.islice(occurrences(schedule, zone, since, now), 100_000)
                    )
                try:
                    occ = await self._due_in(
                        schedule, channel, calendar[(schedule.name, since)], now, report
                    )
                except Exception:
                    log.exception("scheduled work for %s failed", channel)
                    continue
                if occ is not None:
                    group = fires.setdefault((schedule.name, occ.key), (schedule, occ, []))
                    group[2].append(channel)
            for schedule, occ, channels in fires.values():
                await self._fire_group(schedule, occ, channels, now, report)
            return report

    async def fire(
        self, schedule: Schedule, occurrence: Occurrence, now: datetime | None = None
    ) -> TickReport:
        """Fire one occurrence in all the schedule's channels (as its cron job would)."""
        now = now or self.clock.now()
        report = TickReport()
        await self._fire_group(schedule, occurrence, list(schedule.channels), now, report)
        return report

    async def _lower_bounds(
        self, pairs: list[tuple[Schedule, str]], now: datetime
    ) -> dict[tuple[str, str], datetime]:
        """Per (schedule, channel): the instant after which occurrences are still to be
        decided. Two reads for all pairs; a write only the first time a pair is seen."""
        since = await self.store.values_with_prefix("schedule-since:")
        lasts = await self.store.last_dues()
        out: dict[tuple[str, str], datetime] = {}
        for schedule, channel in pairs:
            key = _since_key(schedule.name, channel)
            if key not in since:
                since[key] = await self.store.setdefault_value(
                    key, (now - schedule.catch_up_within).isoformat(), now
                )
            lower = datetime.fromisoformat(since[key])
            last = lasts.get((schedule.name, channel))
            out[(schedule.name, channel)] = last if last is not None and last > lower else lower
        return out

    async def _prune(self, now: datetime) -> None:
        """Drop inbox, outbox and dedup rows older than the redelivery window (hourly)."""
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        n = await self.store.prune(now - KEEP_DELIVERED)
        if n:
            log.info("pruned %d delivered or processed rows", n)

    async def _due_in(
        self,
        schedule: Schedule,
        channel: str,
        calendar: list[Occurrence],
        now: datetime,
        report: TickReport,
    ) -> Occurrence | None:
        """Record what was missed; return the occurrence to fire now, if any."""
        due: deque[Occurrence] = deque(maxlen=MAX_MISSED_RECORDED + 1)
        total = 0
        for occ in calendar:
            due.append(occ)
            total += 1
        if not due:
            return None
        if total > len(due):
            log.warning(
                "%s in %s: %d older occurrences were missed and are not recorded one by one",
                schedule.name,
                channel,
                total - len(due),
            )
        newest = due.pop()
        for occ in due:  # older than the newest: never caught up
            await self._record_missed(schedule, channel, occ, now, report)
        if now - newest.at > schedule.catch_up_within:
            await self._record_missed(schedule, channel, newest, now, report)
            return None
        return newest

    async def _record_missed(
        self, schedule: Schedule, channel: str, occ: Occurrence, now: datetime, report: TickReport
    ) -> None:
        why = schedule.skip_reason(occ.local.date())
        if why is not None:
            if await self.service.record_unposted(schedule, channel, occ.key, occ.at, SKIPPED, why):
                report.skipped.append((channel, occ.key, why))
            return
        reason = f"missed: the bot was not running at {occ.local:%Y-%m-%d %H:%M %Z}"
        if await self.service.record_unposted(schedule, channel, occ.key, occ.at, MISSED, reason):
            report.missed.append((channel, occ.key))
            log.warning("%s in %s at %s was %s", schedule.name, channel, occ.key, reason)

    async def _fire_group(
        self,
        schedule: Schedule,
        occ: Occurrence,
        channels: list[str],
        now: datetime,
        report: TickReport,
    ) -> None:
        """Decide and claim one occurrence in all its channels in one transaction (a few
        statements for all of them), then deliver the posts: digests of the rounds this
        closed, and the new rounds."""
        written: list[OutboxEntry] = []
        library = self.library.current
        loaded = library.prompt_sets.get(schedule.prompt_set)
        try:
            async with self.store.transaction() as session:
                await self.store.lock_occurrence(schedule.name, occ.key)
                taken = await self.store.occurrences_taken(schedule.name, occ.key, channels)
                todo = [ch for ch in channels if ch not in taken]
                if not todo:
                    return  # decided already (here, earlier, or by another process)
                states = await self.store.channel_states(todo)
                rotations = await self.store.rotations(todo, loaded.id) if loaded else {}
                picks: dict[str, NextPrompt] = {}
                for channel in todo:
                    nxt = None
                    if loaded is not None:
                        cycle, used = rotations.get(channel, (0, set()))
                        nxt = pick_next(loaded, channel, schedule, cycle, used)
                    state = states.get(channel)
                    decision = decide_occurrence(
                        schedule,
                        occ.local.date(),
                        paused=bool(state and state.paused),
                        skips_pending=state.skips_pending if state else 0,
                        has_prompt=nxt is not None,
                    )
                    if not decision.post:
                        why = decision.reason or "skipped"
                        async with session.begin_nested():
                            if await self.service.record_unposted(
                                schedule,
                                channel,
                                occ.key,
                                occ.at,
                                SKIPPED,
                                why,
                                consume_skip=decision.consume_skip,
                            ):
                                report.skipped.append((channel, occ.key, why))
                                log.info(
                                    "%s in %s at %s skipped (%s)",
                                    schedule.name,
                                    channel,
                                    occ.key,
                                    why,
                                )
                    elif nxt is not None and platform_of(channel) in self.dispatcher.platforms:
                        picks[channel] = nxt  # (not connected yet: left for a later tick)
                if picks:
                    claimed, outcome = await self.service.claim_many(
                        schedule, occ.key, occ.at, picks
                    )
                    report.opened.extend(r.id for r in claimed)
                    written = await self.outbox.write(outcome.posts)
        except Exception:
            log.exception(
                "firing %s at %s failed; the next sweep tries again", schedule.name, occ.key
            )
            return
        if written:
            await self.outbox.deliver(written)

    def grace_for(self, round_: Round) -> timedelta:
        """How long a scheduled round may wait to be posted: its catch-up window."""
        schedule = self.library.current.config.schedule_named(round_.schedule_name or "")
        return schedule.catch_up_within if schedule else DEFAULT_GRACE

    async def _deliver_due(self, now: datetime, report: TickReport) -> None:
        """Pay what is owed: inbox rows left pending, then posts nobody delivered (their
        sender died, or a transient failure is due for a retry)."""
        await self.dispatcher.inbox.process_due(now)
        delivery = await self.outbox.deliver_due(now)
        report.recovered.extend(delivery.rounds)

    async def _remind_due(self, now: datetime, report: TickReport) -> None:
        for round_ in await self.store.due_reminders(now):
            async with self.store.transaction():
                if not await self.store.claim_reminder(round_.id, now):
                    continue
                written = await self.outbox.write([await self.service.reminder(round_)])
            await self.outbox.deliver(written)
            report.reminded.append(round_.id)

    async def _close_due(self, now: datetime, report: TickReport) -> None:
        for round_ in await self.store.due_closes(now):
            async with self.store.transaction():
                outcome = await self.service.close_round(
                    round_, why="missed: its closing time came before it was posted"
                )
                written = await self.outbox.write(outcome.posts)
            if written:
                await self.outbox.deliver(written)
                report.closed.append(round_.id)
