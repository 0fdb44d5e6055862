"""Initial schema: rounds, responses, rotation, channel state, processed events, app state.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

OPEN = "status IN ('claimed', 'posting', 'posted')"


def ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("schedule_name", sa.String(100)),
        sa.Column("occurrence", sa.String(40)),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("status_reason", sa.String(200)),
        ts("lease_until"),
        sa.Column("prompt_set", sa.String(100), nullable=False),
        sa.Column("prompt_id", sa.String(100), nullable=False),
        sa.Column("prompt_snapshot", sa.JSON, nullable=False),
        sa.Column("anonymous_allowed", sa.Boolean, nullable=False),
        sa.Column("min_anonymous_group", sa.Integer, nullable=False),
        sa.Column("anon_key", sa.LargeBinary(32)),
        sa.Column("message_ref", sa.String(100)),
        sa.Column("thread_ref", sa.String(100)),
        ts("created_at", nullable=False),
        ts("due_at"),
        ts("posted_at"),
        ts("remind_at"),
        ts("reminded_at"),
        ts("close_at"),
        ts("closed_at"),
        sa.UniqueConstraint("schedule_name", "channel", "occurrence", name="uq_round_occurrence"),
    )
    op.create_index(
        "uq_round_open_per_channel",
        "rounds",
        ["channel"],
        unique=True,
        sqlite_where=sa.text(OPEN),
        postgresql_where=sa.text(OPEN),
    )
    op.create_index("ix_round_channel_message", "rounds", ["channel", "message_ref"])
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "round_id", sa.Integer, sa.ForeignKey("rounds.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("anonymous", sa.Boolean, nullable=False),
        sa.Column("author_id", sa.String(200)),
        sa.Column("author_name", sa.String(200)),
        sa.Column("pseudonym", sa.String(64)),
        sa.Column("question", sa.Integer),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("message_ref", sa.String(100)),
        sa.Column("late", sa.Boolean, nullable=False),
        ts("created_at", nullable=False),
        ts("edited_at"),
        sa.UniqueConstraint("round_id", "message_ref", name="uq_response_message"),
    )
    op.create_index("ix_responses_round_id", "responses", ["round_id"])
    op.create_table(
        "rotation_entries",
        sa.Column("channel", sa.String(200), primary_key=True),
        sa.Column("prompt_set", sa.String(100), primary_key=True),
        sa.Column("cycle", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.String(100), primary_key=True),
        ts("used_at", nullable=False),
    )
    op.create_table(
        "channel_states",
        sa.Column("channel", sa.String(200), primary_key=True),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("skips_pending", sa.Integer, nullable=False),
        ts("updated_at", nullable=False),
    )
    op.create_table(
        "processed_events",
        sa.Column("key", sa.String(250), primary_key=True),
        ts("seen_at", nullable=False),
    )
    op.create_table(
        "app_state",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        ts("updated_at", nullable=False),
    )


def downgrade() -> None:
    for table in (
        "app_state",
        "processed_events",
        "channel_states",
        "rotation_entries",
        "responses",
        "rounds",
    ):
        op.drop_table(table)
