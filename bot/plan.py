"""When schedules fire, and what the coming rounds will be.

Pure calendar arithmetic plus a read-only look at the database. The scheduler, the
``/discuss next`` command and ``roundtable plan`` all use these functions, so what the
plan prints is what the running bot will do.

Occurrences are computed on local wall-clock time: the cron expression is matched
against the wall clock of the schedule's zone, and the wall time (``2026-11-01T09:00``)
is the occurrence's key. A wall time that happens twice (clocks fall back) is one key
and fires once, at its first instant. A wall time that does not exist (clocks spring
forward) fires at the first valid instant after it (02:30 on a Berlin spring-forward
day fires at 03:00 CEST), keeping its own key.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from bot.config import Order, Schedule
from bot.prompts import LoadedSet, Prompt

if TYPE_CHECKING:
    from bot.library import Library
    from bot.storage.store import Store

KEY_FORMAT = "%Y-%m-%dT%H:%M"
# A clock change never moves wall time by more than this; used to bound searches.
_MAX_SHIFT = timedelta(hours=3)


@dataclass(frozen=True)
class Occurrence:
    """One firing of a schedule: its key (local wall time) and the UTC instant it fires."""

    key: str
    wall: datetime  # naive local wall time the cron matched
    at: datetime  # aware UTC instant it fires
    zone: ZoneInfo
    clock_note: str | None = None  # "nonexistent" or "repeated" on DST days

    @property
    def local(self) -> datetime:
        return self.at.astimezone(self.zone)


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def instant_of(wall: datetime, zone: ZoneInfo) -> tuple[datetime, str | None]:
    """The UTC instant a local wall time fires at, and a DST note if it is special."""
    if _exists(wall, zone):
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        return first, ("repeated" if first != second else None)
    probe = wall.replace(second=0, microsecond=0)
    while not _exists(probe, zone):  # at most the length of the gap, in minutes
        probe += timedelta(minutes=1)
    return probe.replace(tzinfo=zone).astimezone(UTC), "nonexistent"


def occurrences(
    schedule: Schedule, zone: ZoneInfo, after: datetime, until: datetime | None = None
) -> Iterator[Occurrence]:
    """Occurrences firing strictly after ``after`` and at or before ``until`` (UTC)."""
    # Match the cron against naive wall time (treated as UTC, which has no DST), so every
    # wall time is seen exactly once whatever the zone's clock changes do.
    trigger = CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    start_wall = after.astimezone(zone).replace(tzinfo=None) - _MAX_SHIFT
    cursor = start_wall.replace(tzinfo=UTC)
    previous = None
    while True:
        fire = trigger.get_next_fire_time(previous, cursor)
        if fire is None:
            return
        wall = fire.replace(tzinfo=None)
        at, note = instant_of(wall, zone)
        if until is not None and at > until:
            return  # instants never decrease as wall time increases
        if at > after:
            yield Occurrence(wall.strftime(KEY_FORMAT), wall, at, zone, note)
        previous, cursor = fire, fire + timedelta(seconds=1)


# ---- the policy: one decision per occurrence -------------------------------------------

EXHAUSTED = "no unused prompt left (when_exhausted: stop)"


@dataclass(frozen=True)
class Decision:
    """Whether an occurrence posts a round, and if not, why (recorded as ``skipped``)."""

    post: bool
    reason: str | None = None
    consume_skip: bool = False  # a pending ``/discuss skip`` is used up by this one


def decide_occurrence(
    schedule: Schedule, local_day, *, paused: bool, skips_pending: int, has_prompt: bool
) -> Decision:
    """The one copy of the policy the scheduler and the plan share. Holidays and skip
    dates come first (they do not use up a ``/discuss skip``), then pause, then pending
    skips, then an exhausted rotation (``when_exhausted: stop``)."""
    why = schedule.skip_reason(local_day)
    if why is not None:
        return Decision(False, why)
    if paused:
        return Decision(False, "paused")
    if skips_pending > 0:
        return Decision(False, "/discuss skip", consume_skip=True)
    if not has_prompt:
        return Decision(False, EXHAUSTED)
    return Decision(True)


# ---- rotation: which prompt comes next ----------------------------------------------------


@dataclass(frozen=True)
class NextPrompt:
    prompt_set: LoadedSet
    prompt: Prompt
    cycle: int
    remaining_after: int  # prompts left unused in this pass after this one


def rotation_order(loaded: LoadedSet, channel: str, cycle: int, order: Order) -> list[Prompt]:
    """The order a channel goes through a set in one pass; shuffles are reproducible."""
    prompts = list(loaded.prompts)
    if order is Order.shuffle:
        random.Random(f"{channel}|{loaded.id}|{cycle}").shuffle(prompts)
    return prompts


def rotation_of(
    library: Library, channel: str, schedule: Schedule | None
) -> tuple[LoadedSet, Schedule | None] | None:
    """The set a channel draws from: ``schedule``'s when a schedule fires, else the
    channel's own (its first schedule's, or the default)."""
    schedule = schedule or library.schedule_for_channel(channel)
    loaded = (
        library.prompt_sets.get(schedule.prompt_set)
        if schedule
        else library.set_for_channel(channel)
    )
    return None if loaded is None else (loaded, schedule)


def pick_next(
    loaded: LoadedSet, channel: str, schedule: Schedule | None, cycle: int, used: set[str]
) -> NextPrompt | None:
    """The next prompt given the current pass and what it used; None when the set is
    used up and the schedule says ``when_exhausted: stop``."""
    order = schedule.order if schedule else Order.sequential
    candidates = [p for p in rotation_order(loaded, channel, cycle, order) if p.id not in used]
    if not candidates:
        if schedule is not None and schedule.when_exhausted == "stop":
            return None  # nothing more until prompts are added
        cycle += 1  # a new pass; with order: shuffle, a new cycle is a new shuffle
        candidates = rotation_order(loaded, channel, cycle, order)
    return NextPrompt(loaded, candidates[0], cycle, len(candidates) - 1)


# ---- the plan -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRound:
    schedule: str
    channel: str
    occurrence: Occurrence
    prompt_id: str | None
    prompt_title: str | None
    skipped: str | None  # why no round will be posted: holiday, skip date, paused, skip
    dst_note: str | None

    def describe_time(self) -> str:
        local = self.occurrence.local
        utc = self.occurrence.at
        return (
            f"{local:%a %Y-%m-%d %H:%M} {self.occurrence.zone.key} "
            f"(UTC{_offset(local)}; {utc:%H:%M} UTC)"
        )


def _offset(local: datetime) -> str:
    off = local.utcoffset() or timedelta(0)
    sign = "-" if off < timedelta(0) else "+"
    minutes = abs(int(off.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _dst_note(previous: datetime | None, occ: Occurrence) -> str | None:
    notes = []
    local = occ.local
    if previous is not None and previous.utcoffset() != local.utcoffset():
        notes.append(f"clocks changed: UTC{_offset(previous)} → UTC{_offset(local)}")
    if occ.clock_note == "nonexistent":
        notes.append(
            f"{occ.wall:%H:%M} does not exist that day (clocks go forward); posts at {local:%H:%M}"
        )
    elif occ.clock_note == "repeated":
        notes.append(f"{occ.wall:%H:%M} happens twice that day (clocks go back); posts once")
    return "; ".join(notes) or None


async def plan_channel(
    library: Library,
    store: Store,
    channel: str,
    now: datetime,
    *,
    until: datetime,
    limit: int | None = None,
) -> list[PlannedRound]:
    """The coming scheduled rounds in one channel, in order, as the bot will run them.

    Mirrors the scheduler's decisions: holidays and skip dates first (they do not use up
    a ``/discuss skip``), then pause, then pending skips; only posted rounds advance the
    simulated rotation.
    """
    config = library.config
    merged: list[tuple[Occurrence, Schedule]] = []
    for schedule in config.schedules_for(channel):
        zone = config.zone_of(schedule)
        for i, occ in enumerate(occurrences(schedule, zone, now, until)):
            if limit is not None and i >= limit:
                break
            merged.append((occ, schedule))
    merged.sort(key=lambda pair: (pair[0].at, pair[1].name))
    if limit is not None:
        merged = merged[:limit]

    state = await store.channel_state(channel)
    paused = bool(state and state.paused)
    skips = state.skips_pending if state else 0
    rotations: dict[str, tuple[int, set[str]]] = {}  # set id → simulated (cycle, used)
    previous_local: datetime | None = now.astimezone(merged[0][0].zone) if merged else None
    out: list[PlannedRound] = []
    for occ, schedule in merged:
        nxt = None
        found = rotation_of(library, channel, schedule)
        if found is not None:
            loaded, _ = found
            if loaded.id not in rotations:
                rotations[loaded.id] = await store.rotation(channel, loaded.id)
            cycle, used = rotations[loaded.id]
            nxt = pick_next(loaded, channel, schedule, cycle, used)
        decision = decide_occurrence(
            schedule,
            occ.local.date(),
            paused=paused,
            skips_pending=skips,
            has_prompt=nxt is not None,
        )
        reason = decision.reason
        if decision.consume_skip:
            skips -= 1
        if nxt is not None and decision.post:  # only posted rounds advance the rotation
            cycle, used = rotations[nxt.prompt_set.id]
            used = set(used) if cycle == nxt.cycle else set()
            rotations[nxt.prompt_set.id] = (nxt.cycle, used | {nxt.prompt.id})
        out.append(
            PlannedRound(
                schedule=schedule.name,
                channel=channel,
                occurrence=occ,
                prompt_id=nxt.prompt.id if nxt else None,
                prompt_title=nxt.prompt.title if nxt else None,
                skipped=reason,
                dst_note=_dst_note(previous_local, occ),
            )
        )
        previous_local = occ.local
    return out


def scheduled_channels(library: Library) -> list[str]:
    seen: dict[str, None] = {}
    for schedule in library.config.schedules:
        for channel in schedule.channels:
            seen.setdefault(channel, None)
    return list(seen)


def format_plan(channel: str, rounds: list[PlannedRound]) -> str:
    lines = [f"{channel}:"]
    if not rounds:
        lines.append("  (no scheduled rounds in this period)")
    for planned in rounds:
        what = f"{planned.prompt_title} ({planned.prompt_id})" if planned.prompt_id else "-"
        if planned.skipped:
            what = f"SKIPPED — {planned.skipped}"
        line = f"  {planned.describe_time()}  [{planned.schedule}]  {what}"
        lines.append(line)
        if planned.dst_note:
            lines.append(f"      DST: {planned.dst_note}")
    return "\n".join(lines)


# ---- /discuss next -------------------------------------------------------------------------


@dataclass(frozen=True)
class NextScheduled:
    text: str  # when, or why nothing is coming
    schedule: Schedule | None  # the schedule that fires next, if any


async def describe_next(
    library: Library, store: Store, channel: str, now: datetime
) -> NextScheduled | None:
    """When the next scheduled round here is, or None if no schedule targets the channel."""
    if not library.config.schedules_for(channel):
        return None
    coming = await plan_channel(
        library, store, channel, now, until=now + timedelta(days=400), limit=60
    )
    skipped = []
    for planned in coming:
        if planned.skipped == "paused":
            return NextScheduled(
                "Scheduled rounds are paused here (`/discuss resume` restarts them).", None
            )
        if planned.skipped:
            skipped.append(f"{planned.occurrence.local:%a %d %b} ({planned.skipped})")
            continue
        text = f"Next scheduled round here: {planned.describe_time()}."
        if skipped:
            text += " Skipped before it: " + "; ".join(skipped) + "."
        return NextScheduled(text, library.config.schedule_named(planned.schedule))
    return NextScheduled("No scheduled round here in the coming year.", None)
