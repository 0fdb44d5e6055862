"""Privacy: sealed round keys, pseudonyms erased on close, frozen respondent counts, purge log.

Existing data is kept: open rounds' plain keys are sealed under the server secret
(``ROUNDTABLE_SECRET`` or the key file, see bot.anonymity); closed rounds get
their respondent counts (while pseudonyms still tell authors apart) and then lose
their pseudonyms. No answer is deleted.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OPEN = ("claimed", "posting", "posted")


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("respondents", sa.Integer))
        batch.add_column(sa.Column("anonymous_respondents", sa.Integer))
    op.create_table(
        "purge_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rounds", sa.Integer, nullable=False),
        sa.Column("answers", sa.Integer, nullable=False),
    )
    conn = op.get_bind()
    rounds = sa.table(
        "rounds",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("anon_key", sa.LargeBinary),
        sa.column("respondents", sa.Integer),
        sa.column("anonymous_respondents", sa.Integer),
    )
    responses = sa.table(
        "responses",
        sa.column("round_id", sa.Integer),
        sa.column("author_id", sa.String),
        sa.column("pseudonym", sa.String),
    )
    # Closed (and never posted) rounds: count, then erase what grouped their answers.
    who = sa.func.coalesce(responses.c.author_id, responses.c.pseudonym)
    counts = {
        rid: (n, anon)
        for rid, n, anon in conn.execute(
            sa.select(
                responses.c.round_id,
                sa.func.count(sa.func.distinct(who)),
                sa.func.count(sa.func.distinct(responses.c.pseudonym)),
            ).group_by(responses.c.round_id)
        )
    }
    ended = [
        rid for (rid,) in conn.execute(sa.select(rounds.c.id).where(rounds.c.status.not_in(OPEN)))
    ]
    for rid in ended:
        n, anon = counts.get(rid, (0, 0))
        conn.execute(
            rounds.update()
            .where(rounds.c.id == rid)
            .values(respondents=n, anonymous_respondents=anon, anon_key=None)
        )
    if ended:
        conn.execute(
            responses.update()
            .where(responses.c.round_id.in_(ended), responses.c.pseudonym.is_not(None))
            .values(pseudonym=None)
        )
    # Open rounds: seal each plain key under the server secret (loaded or created now).
    plain = conn.execute(
        sa.select(rounds.c.id, rounds.c.anon_key).where(
            rounds.c.status.in_(OPEN), rounds.c.anon_key.is_not(None)
        )
    ).all()
    if plain:
        from bot.anonymity import load_keyring

        keyring = context.config.attributes.get("keyring") or load_keyring(conn.engine.url)
        for rid, key in plain:
            conn.execute(
                rounds.update()
                .where(rounds.c.id == rid)
                .values(anon_key=keyring.seal(rid, bytes(key)))
            )


def downgrade() -> None:
    # Sealed keys cannot be turned back into plain ones without the secret; a downgraded
    # bot simply cannot update anonymous answers of rounds open during the downgrade.
    op.drop_table("purge_log")
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("anonymous_respondents")
        batch.drop_column("respondents")
