"""Alembic environment: always run on a connection handed in by ``bot.storage.engine``."""

from alembic import context

from bot.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
