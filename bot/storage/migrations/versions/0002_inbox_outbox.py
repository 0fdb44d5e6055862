"""Inbox and outbox tables; indexes for the sweeps and lookups by thread.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def ts(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(250), nullable=False, unique=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.String(300)),
        ts("not_before"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        ts("processed_at"),
    )
    op.create_index("ix_inbox_status", "inbox", ["status", "not_before"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(100), nullable=False, unique=True),
        sa.Column("channel", sa.String(200), nullable=False),
        sa.Column("round_id", sa.Integer),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.String(300)),
        ts("not_before"),
        ts("lease_until"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        ts("sent_at"),
    )
    op.create_index("ix_outbox_status", "outbox", ["status", "not_before"])
    op.create_index("ix_outbox_round", "outbox", ["round_id"])
    op.create_index("ix_round_channel_thread", "rounds", ["channel", "thread_ref"])
    op.create_index("ix_round_status_close", "rounds", ["status", "close_at"])
    op.create_index("ix_round_status_remind", "rounds", ["status", "remind_at"])


def downgrade() -> None:
    op.drop_index("ix_round_status_remind", "rounds")
    op.drop_index("ix_round_status_close", "rounds")
    op.drop_index("ix_round_channel_thread", "rounds")
    op.drop_table("outbox")
    op.drop_table("inbox")
