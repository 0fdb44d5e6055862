"""``roundtable history``: what was asked where and when, and how many people answered.

Reads only what rounds stored when they were posted (``prompt_snapshot``), so renamed
or removed prompts still show what was actually asked. Never lists who answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from bot.storage.models import Round
from bot.storage.store import Store


@dataclass(frozen=True)
class HistoryRow:
    when: datetime  # UTC: when it was posted (or due, for rounds never posted)
    channel: str
    prompt_id: str
    title: str
    status: str
    reason: str | None
    respondents: int


def parse_since(value: str, zone: ZoneInfo) -> datetime:
    """``2026-11-01`` → midnight of that day in ``zone``; full ISO datetimes also work."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        moment = datetime.fromisoformat(value)
        return moment if moment.tzinfo else moment.replace(tzinfo=zone)
    return datetime.combine(day, time(0), tzinfo=zone)


async def history(
    store: Store, *, channel: str | None = None, since: datetime | None = None
) -> list[HistoryRow]:
    rounds = await store.rounds(channel=channel, since=since)
    counts = await store.count_respondents(r.id for r in rounds)
    # A closed round's pseudonyms are erased: use the count taken when it closed.
    return [
        _row(r, r.respondents if r.respondents is not None else counts.get(r.id, 0)) for r in rounds
    ]


def _row(round_: Round, respondents: int) -> HistoryRow:
    snapshot = round_.prompt_snapshot or {}
    return HistoryRow(
        when=round_.posted_at or round_.due_at or round_.created_at,
        channel=round_.channel,
        prompt_id=round_.prompt_id,
        title=snapshot.get("title") or round_.prompt_id,
        status=round_.status,
        reason=round_.status_reason,
        respondents=respondents,
    )


def format_rows(rows: list[HistoryRow], zone: ZoneInfo) -> str:
    if not rows:
        return "No rounds yet."
    lines = []
    for row in rows:
        local = row.when.astimezone(zone)
        when = f"{local:%Y-%m-%d %H:%M} {local.tzname()}"
        if row.status in ("skipped", "missed", "failed"):
            outcome = row.status + (f" ({row.reason})" if row.reason else "")
        else:
            n = row.respondents
            outcome = f"{n} {'person' if n == 1 else 'people'} answered"
            if row.status != "closed":
                outcome += ", still open"
        lines.append(f"{when}  {row.channel}  {row.prompt_id}  “{row.title}”  {outcome}")
    return "\n".join(lines)


def format_purges(purges: list, zone: ZoneInfo) -> str:
    """What the retention job deleted and when, as counts only (never what or whose)."""
    lines = []
    for p in purges:
        local = p.ran_at.astimezone(zone)
        lines.append(
            f"{local:%Y-%m-%d %H:%M} {local.tzname()}  purged by retention: "
            f"{p.rounds} round{'s' * (p.rounds != 1)}, {p.answers} answer{'s' * (p.answers != 1)}"
        )
    return "\n".join(lines)
