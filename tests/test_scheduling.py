"""Scheduled rounds under an injected clock: DST, restarts, crashes, outages, reminders,
closing digests, skip/pause, holidays, reload and the plan. Nothing here sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.core.dispatch import Posted
from bot.core.rounds import build_summary
from bot.library import load_library
from bot.plan import format_plan, occurrences, plan_channel
from bot.scheduling import Scheduler
from bot.storage.models import Response, Round
from tests.support import MINI_SET, Chat, RecordingPlatform, make_chat, write_library

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def config(
    cron: str = "0 10 * * mon",
    zone: str = "Europe/Berlin",
    channels: str = "[console:general]",
    extra: str = "",
) -> str:
    text = (
        f"timezone: {zone}\nprompts_dir: ../prompts\nschedules:\n"
        f'  - name: weekly\n    prompt_set: mini\n    cron: "{cron}"\n'
        f"    channels: {channels}\n"
    )
    return text + "".join(f"    {line}\n" for line in extra.splitlines() if line)


class FindingPlatform(RecordingPlatform):
    """A recording platform that, like Slack and Discord, can find a post by its key."""

    def __init__(self, name: str = "console"):
        super().__init__(name)
        self.remote: dict[str, Posted] = {}  # posts the platform has, by round key

    async def post(self, message):
        posted = await super().post(message)
        if posted is not None:
            self.remote[message.round_key] = posted
        return posted

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        return self.remote.get(round_key)


async def setup(tmp_path: Path, url: str, text: str, start: datetime) -> tuple[Chat, Scheduler]:
    chat = await make_chat(write_library(tmp_path, text), url, start)
    platform = FindingPlatform()
    chat.dispatcher.register(platform)
    chat.platform = platform
    return chat, scheduler_for(chat)


def scheduler_for(chat: Chat) -> Scheduler:
    return Scheduler(
        library=chat.library,
        service=chat.dispatcher.service,
        dispatcher=chat.dispatcher,
        clock=chat.clock,
    )


async def tick_at(chat: Chat, scheduler: Scheduler, when: datetime):
    chat.clock.set(when)
    return await scheduler.tick()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def rows(chat: Chat) -> list[Round]:
    return await chat.store.rounds()


# ---- DST --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "before", "after"),
    [
        # Mondays around the spring-forward and fall-back changes of 2026
        (BERLIN, datetime(2026, 3, 23, 10), datetime(2026, 3, 30, 10)),
        (BERLIN, datetime(2026, 10, 19, 10), datetime(2026, 10, 26, 10)),
        (NEW_YORK, datetime(2026, 3, 2, 10), datetime(2026, 3, 9, 10)),
        (NEW_YORK, datetime(2026, 10, 26, 10), datetime(2026, 11, 2, 10)),
    ],
)
async def test_monday_ten_oclock_opens_at_ten_local_on_both_sides_of_dst(
    tmp_path, sqlite_url, zone, before, after
):
    start = before.replace(tzinfo=zone) - timedelta(hours=1)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(zone=zone.key), start)
    try:
        for local in (before, after):
            instant = local.replace(tzinfo=zone)
            assert (await tick_at(chat, scheduler, instant - timedelta(minutes=1))).opened == []
            report = await tick_at(chat, scheduler, instant)
            assert len(report.opened) == 1
        opened = [r for r in await rows(chat) if r.status != "skipped"]
        assert [r.due_at.astimezone(zone).strftime("%H:%M") for r in opened] == ["10:00", "10:00"]
        offsets = {r.due_at.astimezone(zone).utcoffset() for r in opened}
        assert len(offsets) == 2  # the UTC instants really differ by the clock change
        assert [r.occurrence for r in opened] == [
            before.strftime("%Y-%m-%dT%H:%M"),
            after.strftime("%Y-%m-%dT%H:%M"),
        ]
    finally:
        await chat.store.close()


@pytest.mark.parametrize(
    ("zone", "day", "fires_at_utc"),
    [
        (BERLIN, datetime(2026, 3, 29, 2, 30), utc(2026, 3, 29, 1, 0)),  # 03:00 CEST
        (NEW_YORK, datetime(2026, 3, 8, 2, 30), utc(2026, 3, 8, 7, 0)),  # 03:00 EDT
    ],
)
async def test_a_wall_time_that_does_not_exist_fires_once_at_the_first_valid_instant(
    tmp_path, sqlite_url, zone, day, fires_at_utc
):
    cron = f"30 2 {day.day} {day.month} *"
    chat, scheduler = await setup(
        tmp_path, sqlite_url, config(cron, zone.key), fires_at_utc - timedelta(hours=2)
    )
    try:
        opened = []
        t = fires_at_utc - timedelta(hours=2)
        while t <= fires_at_utc + timedelta(hours=3):  # every 10 minutes across the gap
            report = await tick_at(chat, scheduler, t)
            opened += [(t, rid) for rid in report.opened]
            t += timedelta(minutes=10)
        assert [when for when, _ in opened] == [fires_at_utc]
        (row,) = await rows(chat)
        assert row.occurrence == day.strftime("%Y-%m-%dT%H:%M")
        assert len(chat.platform.rounds()) == 1
    finally:
        await chat.store.close()


@pytest.mark.parametrize(
    ("zone", "day", "first_utc"),
    [
        (BERLIN, datetime(2026, 10, 25, 2, 30), utc(2026, 10, 25, 0, 30)),  # 02:30 CEST
        (NEW_YORK, datetime(2026, 11, 1, 1, 30), utc(2026, 11, 1, 5, 30)),  # 01:30 EDT
    ],
)
async def test_a_repeated_wall_time_fires_once_at_its_first_instant(
    tmp_path, sqlite_url, zone, day, first_utc
):
    cron = f"{day.minute} {day.hour} {day.day} {day.month} *"
    chat, scheduler = await setup(
        tmp_path, sqlite_url, config(cron, zone.key), first_utc - timedelta(hours=1)
    )
    try:
        opened = []
        t = first_utc - timedelta(minutes=30)
        while t <= first_utc + timedelta(hours=2):  # past the second 02:30 as well
            opened += [t for _ in (await tick_at(chat, scheduler, t)).opened]
            t += timedelta(minutes=10)
        assert opened == [first_utc]
        assert len(chat.platform.rounds()) == 1
    finally:
        await chat.store.close()


def test_occurrence_keys_are_local_wall_times():
    from bot.config import Schedule

    schedule = Schedule(name="x", prompt_set="m", cron="30 2 * * *", channels=["console:g"])
    found = list(occurrences(schedule, BERLIN, utc(2026, 10, 24), utc(2026, 10, 26)))
    assert [(o.key, o.clock_note) for o in found] == [
        ("2026-10-24T02:30", None),
        ("2026-10-25T02:30", "repeated"),
    ]


# ---- exactly once across restarts and crashes -------------------------------------------


async def test_restart_across_a_fire_time_opens_once(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire - timedelta(minutes=5))
    await tick_at(chat, scheduler, fire)
    await chat.store.close()
    # a second process life on the same database, a few minutes later
    chat2, scheduler2 = await setup(tmp_path, sqlite_url, config(), fire + timedelta(minutes=3))
    try:
        assert (await scheduler2.tick()).opened == []
        assert len(await rows(chat2)) == 1
        assert chat2.platform.rounds() == []
    finally:
        await chat2.store.close()


async def test_down_at_the_fire_time_and_back_within_the_grace_window_opens_once(
    tmp_path, sqlite_url
):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire - timedelta(days=1))
    await scheduler.tick()  # first start, the day before: nothing due
    await chat.store.close()
    chat2, scheduler2 = await setup(tmp_path, sqlite_url, config(), fire + timedelta(hours=2))
    try:
        assert len((await scheduler2.tick()).opened) == 1
        assert (await tick_at(chat2, scheduler2, fire + timedelta(hours=3))).opened == []
        assert len(chat2.platform.rounds()) == 1
    finally:
        await chat2.store.close()


async def test_a_crash_between_claim_and_post_is_posted_once_after_recovery(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    schedule = chat.library.current.config.schedules[0]
    # the first process claims the occurrence and dies before posting
    round_, _ = await chat.dispatcher.service.claim_scheduled(
        schedule, "console:general", "2026-11-02T10:00", fire
    )
    assert round_.status == "claimed"
    assert chat.platform.rounds() == []
    # within the lease nobody touches it; a regular tick does not claim it again
    assert (await tick_at(chat, scheduler, fire + timedelta(minutes=1))).opened == []
    assert chat.platform.rounds() == []
    # after the lease another instance finds no post and posts it, once
    report = await tick_at(chat, scheduler, fire + timedelta(minutes=5))
    assert report.recovered == [round_.id]
    assert [p.round_id for p in chat.platform.rounds()] == [round_.id]
    again = await tick_at(chat, scheduler, fire + timedelta(minutes=15))
    assert again.recovered == []
    assert len(chat.platform.rounds()) == 1
    assert (await chat.store.get_round(round_.id)).status == "posted"
    await chat.store.close()


async def test_a_crash_after_the_post_landed_records_it_without_posting_again(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    schedule = chat.library.current.config.schedules[0]
    round_, outcome = await chat.dispatcher.service.claim_scheduled(
        schedule, "console:general", "2026-11-02T10:00", fire
    )
    # the post reached the platform, but the process died before recording it
    await RecordingPlatform.post(chat.platform, outcome.posts[-1])
    chat.platform.remote[outcome.posts[-1].round_key] = Posted("msg-1")
    report = await tick_at(chat, scheduler, fire + timedelta(minutes=5))
    assert report.recovered == [round_.id]
    assert len(chat.platform.rounds()) == 1  # found, not posted again
    row = await chat.store.get_round(round_.id)
    assert (row.status, row.message_ref) == ("posted", "msg-1")
    await chat.store.close()


async def test_a_three_day_outage_gives_one_catch_up_at_most(tmp_path, sqlite_url):
    day0 = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config("0 10 * * *"), day0)
    try:
        assert len((await scheduler.tick()).opened) == 1
        # down for three days; back two hours after day 3's round was due
        report = await tick_at(chat, scheduler, day0 + timedelta(days=3, hours=2))
        assert len(report.opened) == 1
        assert [key for _, key in report.missed] == ["2026-11-03T10:00", "2026-11-04T10:00"]
        assert len(chat.platform.rounds()) == 2
        statuses = [(r.occurrence, r.status) for r in await rows(chat)]
        assert ("2026-11-03T10:00", "missed") in statuses
        # down again; back seven hours after the due time (grace is 6h): no catch-up
        report = await tick_at(chat, scheduler, day0 + timedelta(days=6, hours=7))
        assert report.opened == []
        assert len(report.missed) == 3
        assert len(chat.platform.rounds()) == 2
    finally:
        await chat.store.close()


# ---- fan-out, reminders, closing -------------------------------------------------------


async def test_one_failing_channel_does_not_stop_the_others(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    channels = "[console:a, console:b, console:c, console:d]"
    chat, scheduler = await setup(tmp_path, sqlite_url, config(channels=channels), fire)
    chat.platform.fail_channels = {"console:b"}
    try:
        report = await scheduler.tick()
        assert len(report.opened) == 4  # all claimed
        assert sorted(p.channel for p in chat.platform.rounds()) == [
            "console:a",
            "console:c",
            "console:d",
        ]
        chat.platform.fail_channels = set()  # b recovers after the lease
        report = await tick_at(chat, scheduler, fire + timedelta(minutes=5))
        assert len(report.recovered) == 1
        assert sorted(p.channel for p in chat.platform.rounds()) == [
            "console:a",
            "console:b",
            "console:c",
            "console:d",
        ]
    finally:
        await chat.store.close()


async def test_reminder_then_close_with_digest_on_time(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    extra = "reminder_after: 1d\nclose_after: 2d"
    chat, scheduler = await setup(tmp_path, sqlite_url, config(extra=extra), fire)
    try:
        (round_id,) = (await scheduler.tick()).opened
        await chat.say("1: alpha is first", who="bob")
        await chat.say("/discuss answer --anonymous 1 quietly", who="carol")
        before = len(chat.platform.thread_posts())
        assert (
            await tick_at(chat, scheduler, fire + timedelta(hours=23, minutes=59))
        ).reminded == []
        assert (await tick_at(chat, scheduler, fire + timedelta(days=1))).reminded == [round_id]
        assert (await tick_at(chat, scheduler, fire + timedelta(days=1, hours=1))).reminded == []
        (reminder,) = [p for p in chat.platform.thread_posts()[before:] if p.kind == "reminder"]
        assert "2 people have shared" in reminder.text
        assert "Bob" not in reminder.text and "Carol" not in reminder.text
        assert (await tick_at(chat, scheduler, fire + timedelta(days=1, hours=23))).closed == []
        assert (await tick_at(chat, scheduler, fire + timedelta(days=2))).closed == [round_id]
        (digest,) = chat.platform.summaries()
        assert digest.final and digest.respondents == 2
        assert (await chat.store.get_round(round_id)).anon_key is None
        assert (await tick_at(chat, scheduler, fire + timedelta(days=3))).closed == []
    finally:
        await chat.store.close()


async def test_no_reminder_once_the_round_is_closed(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(extra="reminder_after: 1d"), fire)
    try:
        await scheduler.tick()
        await chat.say("/discuss close")
        assert (await tick_at(chat, scheduler, fire + timedelta(days=2))).reminded == []
        assert [p for p in chat.platform.thread_posts() if p.kind == "reminder"] == []
    finally:
        await chat.store.close()


async def test_the_next_round_closes_the_open_one_with_its_digest_first(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    try:
        (first,) = (await scheduler.tick()).opened
        await chat.say("an answer", who="bob")
        (second,) = (await tick_at(chat, scheduler, fire + timedelta(days=7))).opened
        kinds = [(type(p).__name__, p.round_id) for p in chat.platform.posts]
        assert kinds == [("RoundPost", first), ("Summary", first), ("RoundPost", second)]
        assert [p.prompt.prompt_id for p in chat.platform.rounds()] == ["alpha", "beta"]
    finally:
        await chat.store.close()


# ---- skip, pause, holidays --------------------------------------------------------------


async def test_skip_skips_exactly_the_next_round_and_records_why(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire - timedelta(days=1))
    try:
        assert "next round" in await chat.say("/discuss skip")
        assert "admins only" in await chat.say("/discuss skip", who="bob")
        report = await tick_at(chat, scheduler, fire)
        assert report.opened == [] and report.skipped == [
            ("console:general", "2026-11-02T10:00", "/discuss skip")
        ]
        report = await tick_at(chat, scheduler, fire + timedelta(days=7))
        assert len(report.opened) == 1
        assert chat.platform.rounds()[0].prompt.prompt_id == "alpha"  # rotation not used up
        state = await chat.store.channel_state("console:general")
        assert state.skips_pending == 0
    finally:
        await chat.store.close()


async def test_pause_and_resume(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire - timedelta(days=1))
    try:
        await chat.say("/discuss pause")
        assert "paused" in await chat.say("/discuss next", who="bob")
        report = await tick_at(chat, scheduler, fire)
        assert report.opened == [] and report.skipped[0][2] == "paused"
        await chat.say("/discuss resume")
        report = await tick_at(chat, scheduler, fire + timedelta(days=7))
        assert len(report.opened) == 1
        skipped = [r for r in await rows(chat) if r.status == "skipped"]
        assert [(r.occurrence, r.status_reason) for r in skipped] == [
            ("2026-11-02T10:00", "paused")
        ]
    finally:
        await chat.store.close()


async def test_holidays_and_skip_dates_are_skipped_with_the_reason_and_not_made_up(
    tmp_path, sqlite_url
):
    extra = "holidays: {country: DE, subdivision: BE}\nskip_dates:\n  - 2026-12-21\n"
    extra += "  - {from: 2027-01-04, to: 2027-01-05}"
    start = datetime(2026, 12, 20, 12, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config("0 10 * * *", extra=extra), start)
    try:
        day = datetime(2026, 12, 21, 10, tzinfo=BERLIN)
        reasons = {}
        for n in range(16):
            report = await tick_at(chat, scheduler, day + timedelta(days=n))
            for _, key, why in report.skipped:
                reasons[key[:10]] = why
        assert reasons == {
            "2026-12-21": "skip date",
            "2026-12-25": "holiday: Christmas Day",
            "2026-12-26": "holiday: Second Day of Christmas",
            "2027-01-01": "holiday: New Year's Day",
            "2027-01-04": "skip date",
            "2027-01-05": "skip date",
        }
        assert len(chat.platform.rounds()) == 16 - 6
        stored = {r.occurrence[:10]: r.status for r in await rows(chat)}
        assert stored["2026-12-25"] == "skipped"
    finally:
        await chat.store.close()


async def test_next_says_when_and_which_prompt_and_what_is_skipped(tmp_path, sqlite_url):
    extra = "skip_dates: [2026-11-09]"
    now = datetime(2026, 11, 3, 12, tzinfo=BERLIN)
    chat, _ = await setup(tmp_path, sqlite_url, config(extra=extra), now)
    try:
        out = await chat.say("/discuss next", who="bob")
        assert "Mon 2026-11-16 10:00 Europe/Berlin (UTC+01:00; 09:00 UTC)" in out
        assert "Mon 09 Nov (skip date)" in out
        assert "“Alpha article” (alpha)" in out
        await chat.say("/discuss skip")
        out = await chat.say("/discuss next", who="bob")
        assert "Mon 2026-11-23 10:00" in out and "/discuss skip" in out
    finally:
        await chat.store.close()


# ---- reload -----------------------------------------------------------------------------


async def test_a_changed_schedule_fires_at_its_new_time(tmp_path, sqlite_url):
    monday = datetime(2026, 11, 2, 9, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), monday)
    await scheduler.start()
    try:
        assert "hour='10'" in scheduler.jobs()["schedule:weekly"]
        write_library(tmp_path, config("0 11 * * mon"))
        await chat.library.replace(load_library(tmp_path / "config" / "roundtable.yaml"))
        assert "hour='11'" in scheduler.jobs()["schedule:weekly"]
        assert (await tick_at(chat, scheduler, monday + timedelta(hours=1))).opened == []
        assert len((await tick_at(chat, scheduler, monday + timedelta(hours=2))).opened) == 1
        # a schedule changed to a time already past today does not fire backwards
        write_library(tmp_path, config("0 8 * * mon", channels="[console:general, console:x]"))
        await chat.library.replace(load_library(tmp_path / "config" / "roundtable.yaml"))
        assert (await tick_at(chat, scheduler, monday + timedelta(hours=3))).opened == []
        assert len((await tick_at(chat, scheduler, monday + timedelta(days=7))).opened) == 2
    finally:
        await scheduler.stop()
        await chat.store.close()


# ---- plan -------------------------------------------------------------------------------


async def test_plan_across_a_dst_change_and_a_holiday(tmp_path, sqlite_url):
    extra = "holidays: {country: DE, subdivision: BE}"
    now = datetime(2026, 3, 20, 12, tzinfo=BERLIN)
    chat, scheduler = await setup(
        tmp_path, sqlite_url, config("0 10 * * mon,fri", extra=extra), now
    )
    try:
        await chat.say("/discuss skip")
        library = chat.library.current
        planned = await plan_channel(
            library, chat.store, "console:general", now, until=now + timedelta(days=17)
        )
        table = [
            (p.occurrence.local.strftime("%a %m-%d %H:%M%z"), p.prompt_id, p.skipped, p.dst_note)
            for p in planned
        ]
        assert table == [
            ("Mon 03-23 10:00+0100", "alpha", "/discuss skip", None),
            ("Fri 03-27 10:00+0100", "alpha", None, None),
            ("Mon 03-30 10:00+0200", "beta", None, "clocks changed: UTC+01:00 → UTC+02:00"),
            ("Fri 04-03 10:00+0200", "gamma", "holiday: Good Friday", None),
            ("Mon 04-06 10:00+0200", "gamma", "holiday: Easter Monday", None),
        ]
        text = format_plan("console:general", planned)
        assert "Mon 2026-03-30 10:00 Europe/Berlin (UTC+02:00; 08:00 UTC)" in text
        assert "SKIPPED — holiday: Good Friday" in text
        # the plan matches what the scheduler then does
        opened_prompts = []
        for p in planned:
            report = await tick_at(chat, scheduler, p.occurrence.at)
            opened_prompts += [chat.platform.rounds()[-1].prompt.prompt_id for _ in report.opened]
        assert opened_prompts == ["alpha", "beta"]
    finally:
        await chat.store.close()


def test_plan_command_prints_the_coming_rounds(tmp_path, monkeypatch, capsys):
    from bot.cli import main

    path = write_library(tmp_path, config(extra="holidays: {country: DE}"))
    monkeypatch.setenv("ROUNDTABLE_DATABASE_URL", f"sqlite:///{tmp_path / 'plan.db'}")
    assert main(["--config", str(path), "plan", "--days", "15"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("console:general:\n")
    assert out.count("[weekly]") == 2 and "Europe/Berlin" in out


# ---- digest anonymity -------------------------------------------------------------------


def _round(min_group: int = 3) -> Round:
    return Round(
        id=1,
        channel="console:general",
        prompt_snapshot={
            "prompt_id": "p",
            "title": "T",
            "source": "S",
            "url": None,
            "summary": "s",
            "questions": [{"text": "Q one", "origin": "ours"}, {"text": "Q two", "origin": "ours"}],
        },
        min_anonymous_group=min_group,
        thread_ref=None,
    )


def _anon(n: int, question: int | None) -> Response:
    return Response(anonymous=True, pseudonym=f"p{n}", question=question, text=f"anon {n}")


def _named(name: str, question: int | None) -> Response:
    return Response(
        anonymous=False, author_id=f"c:{name}", author_name=name, question=question, text="hi"
    )


@pytest.mark.parametrize("n_anonymous", [0, 1, 2, 5])
def test_digest_never_singles_out_a_small_anonymous_group(n_anonymous):
    responses = [_named("Bob", 1), _named("Dan", 2)]
    responses += [_anon(i, 1 + i % 2) for i in range(n_anonymous)]
    summary = build_summary(_round(), responses, final=True)
    assert summary.respondents == 2 + n_anonymous
    anon_groups = [
        (g.number, [a.text for a in g.answers if a.author is None])
        for g in summary.groups
        if any(a.author is None for a in g.answers)
    ]
    if n_anonymous == 0:
        assert anon_groups == [] and summary.show_counts
    elif n_anonymous < 3:
        # pooled in one group, sorted by text, without per-question counts
        assert anon_groups == [(None, sorted(f"anon {i}" for i in range(n_anonymous)))]
        assert not summary.show_counts
        assert all(a.author is None for a in summary.groups[-1].answers)
    else:
        assert summary.show_counts
        assert {n for n, _ in anon_groups} == {1, 2}
        for _, texts in anon_groups:
            assert texts == sorted(texts)
    for group in summary.groups:
        for answer in group.answers:
            assert answer.author in ("Bob", "Dan", None)


# ---- schema and config ------------------------------------------------------------------


# Alembic cannot reflect the expression index of migration 0005 and skips it (with a
# warning); tests/test_answer_upsert.py checks that index itself.
@pytest.mark.filterwarnings("ignore:.*expression-based index")
async def test_models_and_migration_match(database_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from bot.storage.models import Base
    from bot.storage.store import Store

    store = await Store.open(database_url)
    try:

        def diff(connection):
            context = MigrationContext.configure(connection)
            return compare_metadata(context, Base.metadata)

        async with store.engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await store.close()


def test_an_unknown_holiday_country_is_an_error_with_its_position(tmp_path):
    from bot.yamlsource import ProblemsFound

    path = write_library(tmp_path, config(extra="holidays: {country: XX}"))
    with pytest.raises(ProblemsFound) as err:
        load_library(path)
    (problem,) = err.value.problems
    assert str(problem).endswith(
        "roundtable.yaml:8:25: schedules.0.holidays.country: unknown country code 'XX' "
        "(use an ISO code such as DE, US, GB)"
    )


def test_a_bad_skip_date_is_an_error_with_its_position(tmp_path):
    from bot.yamlsource import ProblemsFound

    path = write_library(tmp_path, config(extra="skip_dates: [2026-12-24, 2026-13-01]"))
    with pytest.raises(ProblemsFound) as err:
        load_library(path)
    (problem,) = err.value.problems
    assert ":8:30: " in str(problem) and "'2026-13-01' is not a valid date" in str(problem)


async def test_stored_rounds_have_one_row_per_occurrence(tmp_path, sqlite_url):
    fire = datetime(2026, 11, 2, 10, tzinfo=BERLIN)
    chat, scheduler = await setup(tmp_path, sqlite_url, config(), fire)
    try:
        for _ in range(3):
            await scheduler.tick()
        async with chat.store.session() as s:
            keys = (await s.scalars(select(Round.occurrence))).all()
        assert keys == ["2026-11-02T10:00"]
    finally:
        await chat.store.close()


async def test_two_schedules_on_one_channel_each_post_from_their_own_set(tmp_path, sqlite_url):
    other_set = (
        MINI_SET.replace("title: Mini set", "title: Other set")
        .replace("id: alpha", "id: other-alpha")
        .replace("id: beta", "id: other-beta")
        .replace("id: gamma", "id: other-gamma")
    )
    text = config(cron="0 10 * * mon") + (
        '  - name: fridays\n    prompt_set: other\n    cron: "0 16 * * fri"\n'
        "    channels: [console:general]\n"
    )
    path = write_library(tmp_path, text, {"mini": MINI_SET, "other": other_set})
    chat = await make_chat(path, sqlite_url, utc(2026, 11, 2, 8))
    chat.dispatcher.register(FindingPlatform())
    scheduler = scheduler_for(chat)
    try:
        await tick_at(chat, scheduler, datetime(2026, 11, 2, 10, tzinfo=BERLIN))
        told = await chat.say("/discuss next", who="bob")
        assert "Fri 2026-11-06 16:00" in told and "(other-alpha)" in told
        await tick_at(chat, scheduler, datetime(2026, 11, 6, 16, tzinfo=BERLIN))
        await tick_at(chat, scheduler, datetime(2026, 11, 9, 10, tzinfo=BERLIN))
        opened = [(r.schedule_name, r.prompt_id) for r in await rows(chat)]
        assert opened == [("weekly", "alpha"), ("fridays", "other-alpha"), ("weekly", "beta")]
    finally:
        await chat.store.close()
