"""One named form or command answer per person and question in a round.

Answering a question again by the form or ``/discuss answer`` replaces the earlier
answer. That used to be a lookup and then an INSERT or UPDATE, kept apart only by the
bot's in-process order per person; now a unique index holds it in the database (also
across several instances on PostgreSQL), and the store writes the answer with one
INSERT … ON CONFLICT DO UPDATE. Duplicates that a race between instances could have
left are resolved first the way a replacement would have: the newest answer stays.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

NAMED = "message_ref IS NULL AND NOT anonymous AND author_id IS NOT NULL"


def upgrade() -> None:
    op.execute(
        f"DELETE FROM responses WHERE {NAMED} AND id NOT IN ("
        f"SELECT MAX(id) FROM responses WHERE {NAMED} "
        "GROUP BY round_id, author_id, COALESCE(question, 0))"
    )
    op.create_index(
        "uq_response_named_question",
        "responses",
        ["round_id", "author_id", sa.text("COALESCE(question, 0)")],
        unique=True,
        sqlite_where=sa.text(NAMED),
        postgresql_where=sa.text(NAMED),
    )


def downgrade() -> None:
    op.drop_index("uq_response_named_question", table_name="responses")
