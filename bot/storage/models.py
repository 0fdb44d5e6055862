"""Database tables.

Privacy is a property of this schema, not just of the views: there is no table of
members, no per-person counter, and an anonymous response has no author column value,
only a randomised tag that the per-round secret opens. That secret is stored only sealed
under the server's secret (which never enters the database), and it and every tag of
the round are erased when the round closes (see bot.anonymity, docs/privacy.md).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The answers a new form or command answer of the same person and question replaces.
NAMED_FORM_ANSWER = "message_ref IS NULL AND NOT anonymous AND author_id IS NOT NULL"


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


# Round statuses (the transitions live in bot.core.lifecycle). A round is "open" while
# claimed/posting/posted; missed, skipped, failed and closed are final.
CLAIMED, POSTING, POSTED, CLOSED, MISSED, SKIPPED, FAILED = (
    "claimed",
    "posting",
    "posted",
    "closed",
    "missed",
    "skipped",
    "failed",
)
OPEN_STATUSES = (CLAIMED, POSTING, POSTED)


class Round(Base):
    """One posting of one prompt into one channel."""

    __tablename__ = "rounds"
    __table_args__ = (
        # Exactly once: one round per (schedule, channel, local wall-time occurrence).
        UniqueConstraint("schedule_name", "channel", "occurrence", name="uq_round_occurrence"),
        # At most one open round per channel, even with several bot processes.
        Index(
            "uq_round_open_per_channel",
            "channel",
            unique=True,
            sqlite_where=text("status IN ('claimed', 'posting', 'posted')"),
            postgresql_where=text("status IN ('claimed', 'posting', 'posted')"),
        ),
        Index("ix_round_channel_message", "channel", "message_ref"),
        Index("ix_round_channel_thread", "channel", "thread_ref"),
        # the sweeps: due closes and reminders among open rounds
        Index("ix_round_status_close", "status", "close_at"),
        Index("ix_round_status_remind", "status", "remind_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(200))
    schedule_name: Mapped[str | None] = mapped_column(String(100))
    occurrence: Mapped[str | None] = mapped_column(String(40))  # local wall time, ISO minutes
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    prompt_set: Mapped[str] = mapped_column(String(100))
    prompt_id: Mapped[str] = mapped_column(String(100))
    # The prompt exactly as posted (title, source, url, summary, questions); edits to the
    # YAML later never change what a past round asked.
    prompt_snapshot: Mapped[dict] = mapped_column(JSON)
    anonymous_allowed: Mapped[bool] = mapped_column(Boolean, default=True)
    min_anonymous_group: Mapped[int] = mapped_column(Integer, default=3)
    # Per-round secret for anonymous answers' tags, sealed (AES-GCM) under the server secret;
    # created at the first anonymous answer, set to NULL when the round closes.
    anon_key: Mapped[bytes | None] = mapped_column(LargeBinary())
    message_ref: Mapped[str | None] = mapped_column(String(100))  # platform id of the post
    thread_ref: Mapped[str | None] = mapped_column(String(100))  # where replies go
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    posted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    remind_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    close_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Counted when the round closes, just before its tags are erased (only then can
    # anonymous answers still be told apart by author); NULL while open.
    respondents: Mapped[int | None] = mapped_column(Integer)
    anonymous_respondents: Mapped[int | None] = mapped_column(Integer)

    responses: Mapped[list[Response]] = relationship(
        back_populates="round", cascade="all, delete-orphan", order_by="Response.id"
    )

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class Response(Base):
    """One answer. Named answers carry the author; anonymous ones only a randomised tag."""

    __tablename__ = "responses"
    __table_args__ = (
        UniqueConstraint("round_id", "message_ref", name="uq_response_message"),
        # one named form/command answer per person and question (migration 0005)
        Index(
            "uq_response_named_question",
            "round_id",
            "author_id",
            text("COALESCE(question, 0)"),
            unique=True,
            sqlite_where=text(NAMED_FORM_ANSWER),
            postgresql_where=text(NAMED_FORM_ANSWER),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), index=True)
    anonymous: Mapped[bool] = mapped_column(Boolean, default=False)
    author_id: Mapped[str | None] = mapped_column(String(200))  # "platform:user"; NULL if anonymous
    author_name: Mapped[str | None] = mapped_column(String(200))  # NULL if anonymous
    # only for anonymous answers, while the round is open: the author's keyed hash sealed
    # under the round key with a fresh nonce (bot.anonymity.RoundTags), so no two
    # rows compare equal; the column keeps its old name
    pseudonym: Mapped[str | None] = mapped_column(String(128))
    question: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    message_ref: Mapped[str | None] = mapped_column(String(100))
    late: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    round: Mapped[Round] = relationship(back_populates="responses")


class RotationEntry(Base):
    """A prompt a channel has seen in a given pass through its set."""

    __tablename__ = "rotation_entries"

    channel: Mapped[str] = mapped_column(String(200), primary_key=True)
    prompt_set: Mapped[str] = mapped_column(String(100), primary_key=True)
    cycle: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ChannelState(Base):
    """Admin switches per channel (pause, skip the next round)."""

    __tablename__ = "channel_states"

    channel: Mapped[str] = mapped_column(String(200), primary_key=True)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    skips_pending: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProcessedEvent(Base):
    """Platform event ids already handled, so redeliveries are stored once.

    No longer written: the inbox's unique key dedups redeliveries now. The table stays
    (rows from older versions are pruned after the window, and forget-me deletes a
    person's dedup rows from it), so no migration drops it.
    """

    __tablename__ = "processed_events"

    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AppState(Base):
    """Small named values (e.g. the hash of the last synced Discord command tree)."""

    __tablename__ = "app_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


# Inbox and outbox row statuses.
PENDING, SENDING, DONE, SENT, GAVE_UP = "pending", "sending", "done", "sent", "failed"


class InboxEntry(Base):
    """An incoming platform event, stored before the platform is acknowledged.

    ``key`` is the platform's own idempotency key (Slack channel+ts or event id or
    trigger id, Discord interaction or message id), so a redelivery inserts nothing.
    The handler's writes and ``status = done`` commit together: exactly once.
    """

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_status", "status", "not_before"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(250), unique=True)
    payload: Mapped[dict] = mapped_column(JSON)  # the neutral Incoming event
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(300))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboxEntry(Base):
    """A message owed to a channel, written in the transaction that decided it.

    ``key`` is the idempotency key the adapter sends with it (Slack metadata, Discord
    nonce), so a retried delivery never posts twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status", "status", "not_before"),
        Index("ix_outbox_round", "round_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    channel: Mapped[str] = mapped_column(String(200))
    round_id: Mapped[int | None] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))  # round, summary, thread
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(300))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PurgeLog(Base):
    """What the retention job deleted and when, as counts only (``roundtable history``)."""

    __tablename__ = "purge_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime())  # the oldest cutoff applied
    rounds: Mapped[int] = mapped_column(Integer)
    answers: Mapped[int] = mapped_column(Integer)
