"""A person's data from start to end: retention and export.

* ``purge_expired`` is the retention job: ended rounds older than ``retention_days``
  (per schedule, else global) are deleted with their answers; posts on the platform
  stay. ``add_retention_job`` is the one call the scheduler makes to run it daily.
* Forget-me is a ``/discuss`` command, so it lives in the core: ``bot.core.forgetting``.
* ``export`` writes exactly what the digests showed, through the digest's own code.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from bot.anonymity import Keyring
from bot.config import Config
from bot.core import render
from bot.core.events import Summary
from bot.storage import privacy as db
from bot.storage.models import CLOSED, PurgeLog, Round

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from bot.core.clock import Clock
    from bot.core.rounds import RoundService
    from bot.library import LibraryHolder
    from bot.storage.store import Store

log = logging.getLogger(__name__)

# ---- retention ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Purged:
    rounds: int
    answers: int


def retention_for(config: Config, round_: Round) -> int | None:
    """Days to keep a round: its schedule's ``retention_days``, else (for rounds opened
    by hand) the channel's first schedule's, else the global value; None keeps it."""
    schedule = config.schedule_named(round_.schedule_name) if round_.schedule_name else None
    if schedule is None:
        in_channel = config.schedules_for(round_.channel)
        schedule = in_channel[0] if in_channel else None
    if schedule is not None and schedule.retention_days is not None:
        return schedule.retention_days
    return config.retention_days


async def purge_expired(store: Store, config: Config, now: datetime) -> Purged:
    """Delete ended rounds older than their retention, with their answers; log counts."""
    days = [config.retention_days, *(s.retention_days for s in config.schedules)]
    days = [d for d in days if d is not None]
    if not days:
        return Purged(0, 0)
    oldest_kept = now - timedelta(days=min(days))
    async with store.session() as s:
        candidates = await db.purge_candidates(s, oldest_kept)
        expired = [
            r.id
            for r in candidates
            if (keep := retention_for(config, r)) is not None
            and r.created_at < now - timedelta(days=keep)
        ]
        rounds, answers = await db.purge_rounds(s, expired, now=now, cutoff=oldest_kept)
    if rounds:
        log.info("retention: deleted %d round(s) and %d answer(s)", rounds, answers)
    return Purged(rounds, answers)


def add_retention_job(
    aps: BaseScheduler, store: Store, library: LibraryHolder, clock: Clock
) -> None:
    """Run ``purge_expired`` now and then once a day (safe in several processes)."""
    from apscheduler.triggers.interval import IntervalTrigger

    async def job() -> None:
        try:
            await purge_expired(store, library.current.config, clock.now())
        except Exception:  # retention must never stop the bot; it retries tomorrow
            log.exception("retention job failed")

    aps.add_job(
        job,
        IntervalTrigger(days=1),
        id="retention",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )


async def purge_history(store: Store) -> list[PurgeLog]:
    async with store.session() as s:
        return await db.purge_log(s)


# ---- export -------------------------------------------------------------------------------

Format = Literal["md", "csv", "json"]


async def digests(
    service: RoundService,
    *,
    round_id: int | None = None,
    channel: str | None = None,
    since: datetime | None = None,
) -> list[tuple[Round, Summary]]:
    """The closing digest of each closed round, rebuilt by the digest's own code."""
    if round_id is not None:
        found = await service.store.get_round(round_id)
        rounds = [found] if found is not None else []
    else:
        rounds = await service.store.rounds(channel=channel, since=since)
    out = []
    for round_ in rounds:
        if round_.status == CLOSED and (channel is None or round_.channel == channel):
            out.append((round_, await service.summary(round_, final=True)))
    return out


def _rows(round_: Round, summary: Summary) -> list[dict]:
    when = (round_.posted_at or round_.created_at).astimezone(UTC).isoformat()
    rows = []
    for group in summary.groups:
        for answer in group.answers:
            rows.append(
                {
                    "round": round_.id,
                    "channel": round_.channel,
                    "posted_at": when,
                    "title": summary.title,
                    "question_number": group.number,
                    "question": group.question,
                    "author": answer.author,  # None: anonymous (no id, no pseudonym)
                    "text": answer.text,
                    "late": answer.late,
                }
            )
    return rows


def export_text(found: list[tuple[Round, Summary]], fmt: Format) -> str:
    if fmt == "md":
        parts = []
        for round_, summary in found:
            when = (round_.posted_at or round_.created_at).astimezone(UTC)
            body = render.summary_text(summary)
            # a fence longer than any run of backticks in the answers, so none can close it
            fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", body)), default=0))
            parts.append(
                f"## {summary.title}\n\n{round_.channel} · round {round_.id} · "
                f"{when:%Y-%m-%d}\n\n{fence}\n{body}\n{fence}\n"
            )
        return "\n".join(parts) if parts else "No closed rounds match.\n"
    if fmt == "json":
        data = [
            {
                "round": round_.id,
                "channel": round_.channel,
                "posted_at": (round_.posted_at or round_.created_at).astimezone(UTC).isoformat(),
                "title": summary.title,
                "respondents": summary.respondents,
                "per_question_counts": summary.show_counts,
                "groups": [
                    {
                        "question_number": g.number,
                        "question": g.question,
                        "answers": [
                            {"author": a.author, "text": a.text, "late": a.late} for a in g.answers
                        ],
                    }
                    for g in summary.groups
                ],
            }
            for round_, summary in found
        ]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    out = io.StringIO()
    fields = [
        "round",
        "channel",
        "posted_at",
        "title",
        "question_number",
        "question",
        "author",
        "text",
        "late",
    ]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for round_, summary in found:
        writer.writerows(_rows(round_, summary))
    return out.getvalue()


# ---- the server secret ----------------------------------------------------------------------

SECRET_CHECK = "anonymity:secret-check"


async def check_server_secret(store: Store, keyring: Keyring, now: datetime) -> bool:
    """Compare this process's server secret with the one the database was last used with
    (a check value: an HMAC of a constant, which reveals nothing about the secret).

    A mismatch means another process or an earlier start used a different secret (a lost
    key file, or processes on one PostgreSQL database with separate key files): say so
    loudly, since open rounds' anonymous answers can then no longer be updated."""
    mine = keyring.check_value()
    stored = await store.setdefault_value(SECRET_CHECK, mine, now)
    if stored == mine:
        return True
    log.error(
        "this database was last used with a different server secret than this process has "
        "(%s): anonymous answers in open rounds can no longer be updated or withdrawn. "
        "Every process must use the same ROUNDTABLE_SECRET or key file; see docs/privacy.md",
        keyring.origin,
    )
    await store.set_value(SECRET_CHECK, mine, now)
    return False
