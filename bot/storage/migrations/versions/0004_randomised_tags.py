"""Anonymous answers carry randomised tags instead of deterministic pseudonyms.

An anonymous answer of an open round stored ``HMAC(round key, "platform:user")`` in
hex: the same value on every answer of one person, so PostgreSQL's old row versions
and WAL let a reader without the server secret group a round's answers by author even
after close. Now the column holds that hash sealed under the round key with a fresh
nonce (``bot.anonymity.RoundTags``), 82 characters, so it is widened. Each open
round's key is opened with the server secret and each of its anonymous rows re-tagged:
the stored hash itself is what gets sealed (the author cannot be recovered from it,
and need not be: authors are matched by their hash, so update, withdraw and forget-me
keep working). Rows whose round key cannot be opened (a lost secret) could not be
matched to anyone already; their hash is cleared so it groups nothing. No answer is
deleted.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

OPEN = ("claimed", "posting", "posted")


def upgrade() -> None:
    with op.batch_alter_table("responses") as batch:
        batch.alter_column(
            "pseudonym", existing_type=sa.String(64), type_=sa.String(128), existing_nullable=True
        )
    conn = op.get_bind()
    rounds = sa.table(
        "rounds",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("anon_key", sa.LargeBinary),
    )
    responses = sa.table(
        "responses",
        sa.column("id", sa.Integer),
        sa.column("round_id", sa.Integer),
        sa.column("anonymous", sa.Boolean),
        sa.column("pseudonym", sa.String),
    )
    rows = conn.execute(
        sa.select(responses.c.id, responses.c.round_id, responses.c.pseudonym)
        .select_from(responses.join(rounds, rounds.c.id == responses.c.round_id))
        .where(rounds.c.status.in_(OPEN), responses.c.pseudonym.is_not(None))
    ).all()
    if not rows:
        return
    from bot.anonymity import KeyUnavailable, RoundTags, load_keyring

    keyring = context.config.attributes.get("keyring") or load_keyring(conn.engine.url)
    sealed = dict(
        conn.execute(
            sa.select(rounds.c.id, rounds.c.anon_key).where(
                rounds.c.id.in_({rid for _, rid, _ in rows})
            )
        ).all()
    )
    openers: dict[int, RoundTags | None] = {}
    for row_id, rid, alias in rows:
        if rid not in openers:
            try:
                key = sealed.get(rid)
                openers[rid] = RoundTags(rid, keyring.open(rid, bytes(key))) if key else None
            except KeyUnavailable:
                openers[rid] = None
        tags = openers[rid]
        try:
            raw = bytes.fromhex(alias) if len(alias) == 64 else None
        except ValueError:
            raw = None
        tag = tags.seal(raw) if tags is not None and raw is not None else None
        conn.execute(responses.update().where(responses.c.id == row_id).values(pseudonym=tag))


def downgrade() -> None:
    # Tags cannot be turned back into plain hashes without the secret: an older bot
    # cannot update the anonymous answers of rounds open during the downgrade.
    conn = op.get_bind()
    responses = sa.table("responses", sa.column("pseudonym", sa.String))
    conn.execute(responses.update().values(pseudonym=None))
    with op.batch_alter_table("responses") as batch:
        batch.alter_column(
            "pseudonym", existing_type=sa.String(128), type_=sa.String(64), existing_nullable=True
        )
