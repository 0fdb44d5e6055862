"""The one place that talks to the database. Every method is one committed transaction,
unless it runs inside ``Store.transaction()``: then it joins that one, so a handler's
writes, its outbox rows and its inbox row's "done" mark commit together.

Callers get plain ORM objects that stay readable after the session closes
(``expire_on_commit=False``); they never hold a session themselves. ``Store`` is put
together from one part per concern, each over the same ``StoreBase``
(``bot.storage.transactions``): callers see one object, and each table's queries are
read in a module of their own.
"""

from __future__ import annotations

from bot.storage.answer_rows import AnswerRows
from bot.storage.engine import create_engine, migrate
from bot.storage.inbox_rows import InboxRows
from bot.storage.outbox_rows import OutboxRows
from bot.storage.privacy import truncate_wal
from bot.storage.round_openings import RoundOpenings
from bot.storage.round_rows import REPLACED, ChannelBusy
from bot.storage.state_rows import StateRows

__all__ = ["REPLACED", "ChannelBusy", "Store"]


class Store(RoundOpenings, AnswerRows, InboxRows, OutboxRows, StateRows):
    @classmethod
    async def open(cls, url: str, keyring: object | None = None) -> Store:
        engine = create_engine(url)
        await migrate(engine, keyring)
        await truncate_wal(engine)  # no erased key bytes left behind by the migration
        store = cls(engine)
        store.keyring = keyring  # type: ignore[assignment]  (a Keyring, or None: loaded later)
        return store
