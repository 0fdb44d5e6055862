"""The responses table: answers saved, edited, withdrawn and read back."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, or_, select, text, update

from bot.storage.models import NAMED_FORM_ANSWER, OPEN_STATUSES, Response, Round
from bot.storage.transactions import StoreBase

# Statements of the answer path, built once: building a statement and its cache key
# cost more CPU per answer than executing it (values come in as bound parameters).
_responses = Response.__table__
_RENAME = (
    update(_responses)
    .where(
        _responses.c.author_id == bindparam("who"),
        # no IN (…) of values: an expanding list cannot run as executemany
        _responses.c.round_id.in_(
            select(Round.id).where(or_(*(Round.status == status for status in OPEN_STATUSES)))
        ),
        _responses.c.author_name.is_distinct_from(bindparam("name")),
    )
    .values(author_name=bindparam("name"))
)
_SAVE_ANSWER: dict[tuple[str, str], Any] = {}


class AnswerRows(StoreBase):
    """Answers, named and anonymous (anonymous ones carry tags, never an author)."""

    async def save_response(
        self, response: Response, *, replace_same_question: bool
    ) -> tuple[Response, bool]:
        """Insert an answer, or update the one it replaces, in one statement. Returns
        (row, was_update).

        A message-backed answer (thread reply, console line) is keyed by its message id, so
        a redelivered event updates instead of duplicating. A named form or command answer
        replaces the same person's earlier form answer to the same question (a unique
        index holds this: migration 0005). The update sets ``edited_at``, which a new
        row never has: that is how the statement tells which one it did.
        """
        if response.message_ref is not None:
            kind = "message"
        elif replace_same_question and not response.anonymous and response.author_id:
            kind = "question"
        else:
            kind = "insert"
        values = {
            column.key: value
            for column in _responses.columns
            if column.key not in ("id", "edited_at")
            and ((value := getattr(response, column.key)) is not None or column.default is None)
        }
        async with self.session() as s:
            row_id, edited_at = (
                await (await s.connection()).execute(self._save_answer(kind), values)
            ).one()
        response.id = row_id
        if edited_at is not None:
            response.edited_at = edited_at
        return response, edited_at is not None

    def _save_answer(self, kind: str) -> Any:
        """The statement ``save_response`` runs, built once per dialect and kind."""
        key = (self.dialect, kind)
        if key not in _SAVE_ANSWER:
            insert_row = self._insert(_responses)
            if kind == "message":
                insert_row = insert_row.on_conflict_do_update(
                    index_elements=[_responses.c.round_id, _responses.c.message_ref],
                    set_={
                        "text": insert_row.excluded.text,
                        "edited_at": insert_row.excluded.created_at,
                    },
                )
            elif kind == "question":
                insert_row = insert_row.on_conflict_do_update(
                    index_elements=[
                        _responses.c.round_id,
                        _responses.c.author_id,
                        text("COALESCE(question, 0)"),
                    ],
                    index_where=text(NAMED_FORM_ANSWER),
                    set_={
                        "text": insert_row.excluded.text,
                        "edited_at": insert_row.excluded.created_at,
                    },
                )
            _SAVE_ANSWER[key] = insert_row.returning(_responses.c.id, _responses.c.edited_at)
        return _SAVE_ANSWER[key]

    async def round_of_response(self, channel: str, message_ref: str) -> Round | None:
        """The round an answer posted as message ``message_ref`` belongs to."""
        async with self.session() as s:
            return await s.scalar(
                select(Round)
                .join(Response)
                .where(Round.channel == channel, Response.message_ref == message_ref)
            )

    async def edit_response(
        self, channel: str, message_ref: str, text: str, question: int | None, now: datetime
    ) -> Response | None:
        """Follow an edit, only while the round is open (its digest is final)."""
        async with self.session() as s:
            row = await s.scalar(
                select(Response)
                .join(Round)
                .where(
                    Round.channel == channel,
                    Response.message_ref == message_ref,
                    Round.status.in_(OPEN_STATUSES),
                )
            )
            if row is None:
                return None
            row.text, row.question, row.edited_at = text, question, now
            return row

    async def delete_response_by_message(self, channel: str, message_ref: str) -> bool:
        """Follow a deletion, only while the round is open (its digest is final)."""
        async with self.session() as s:
            ids = (
                select(Response.id)
                .join(Round)
                .where(
                    Round.channel == channel,
                    Response.message_ref == message_ref,
                    Round.status.in_(OPEN_STATUSES),
                )
            )
            result = await s.execute(delete(Response).where(Response.id.in_(ids)))
            return result.rowcount > 0

    async def delete_responses_of(
        self, round_id: int, *, author_id: str, anonymous_ids: Sequence[int] = ()
    ) -> int:
        """Withdraw everything one person answered in a round: named answers by author,
        anonymous ones by id (found by opening the round's tags)."""
        async with self.session() as s:
            who = Response.author_id == author_id
            if anonymous_ids:
                who = who | Response.id.in_(list(anonymous_ids))
            result = await s.execute(delete(Response).where(Response.round_id == round_id, who))
            return result.rowcount

    async def rename_authors(self, names: dict[str, str]) -> int:
        """Set display names (author id → name) of named answers in open rounds, all in
        one transaction that need not wait for the disk (a name is no promise)."""
        if not names:
            return 0
        async with self._unflushed() as connection:
            result = await connection.execute(
                _RENAME, [{"who": who, "name": name} for who, name in names.items()]
            )
            return result.rowcount or 0

    async def responses(self, round_id: int) -> list[Response]:
        return await self._all(
            select(Response).where(Response.round_id == round_id).order_by(Response.id)
        )

    async def responses_of(self, round_ids: list[int]) -> dict[int, list[Response]]:
        if not round_ids:
            return {}
        async with self.session() as s:
            rows = await s.scalars(
                select(Response).where(Response.round_id.in_(round_ids)).order_by(Response.id)
            )
            out: dict[int, list[Response]] = {}
            for row in rows.all():
                out.setdefault(row.round_id, []).append(row)
            return out
