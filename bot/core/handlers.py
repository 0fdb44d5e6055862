"""Core handlers: one neutral event in, one ``Outcome`` (replies and posts) out.

Handlers never call a platform. They return what should be said; the dispatcher
posts it through the right adapter after the database work has been committed.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Awaitable, Callable

from bot.core import commands
from bot.core.commands import Command, CommandError
from bot.core.events import (
    CommandInvoked,
    FormSubmitted,
    Incoming,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    Outcome,
    RoundPost,
)
from bot.core.forgetting import forget_person, forgotten_text
from bot.core.rounds import (
    RUNNING_OUT,
    AnonymousLocked,
    AnswerRejected,
    RotationExhausted,
    RoundService,
    prompt_view,
)
from bot.plan import describe_next
from bot.storage.store import ChannelBusy
from bot.yamlsource import Problem

log = logging.getLogger(__name__)

NO_ROUND = (
    "There is no open round here right now. An admin can start one with `/discuss now`; "
    "`/discuss next` shows what comes next."
)


UNREADABLE = (
    "I cannot read replies here, so that one was not saved. To share your thoughts, press "
    "“Share your thoughts” on the round's message or use `/discuss answer`."
)


def _numbered(round_, text: str) -> tuple[int | None, str]:
    """``"2: …"`` names question 2 only if the round has one; ``"10:30 works"`` on a
    three-question round is an answer to no question, kept whole. New replies and
    edits are read by this one rule."""
    question, rest = commands.split_numbered(text)
    if question is not None and not 1 <= question <= len(round_.prompt_snapshot["questions"]):
        return None, text.strip()
    return question, rest


def _questions(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"question {numbers[0]}"
    return "questions " + ", ".join(map(str, numbers[:-1])) + f" and {numbers[-1]}"


class Handlers:
    def __init__(
        self,
        service: RoundService,
        reload: Callable[[], Awaitable[list[Problem]]] | None = None,
    ):
        self.service = service
        self.reload = reload  # re-validates and applies the files on disk (bot.reload)
        self.store = service.store
        self.commands: dict[str, Callable[[CommandInvoked, Command], Awaitable[Outcome]]] = {
            "help": self.cmd_help,
            "now": self.cmd_now,
            "answer": self.cmd_answer,
            "results": self.cmd_results,
            "next": self.cmd_next,
            "sets": self.cmd_sets,
            "preview": self.cmd_preview,
            "withdraw": self.cmd_withdraw,
            "forget-me": self.cmd_forget_me,
            "close": self.cmd_close,
            "skip": self.cmd_skip,
            "pause": self.cmd_pause,
            "resume": self.cmd_resume,
            "reload": self.cmd_reload,
        }

    async def handle(self, event: Incoming) -> Outcome:
        match event:
            case CommandInvoked():
                return await self.on_command(event)
            case MessagePosted():
                return await self.on_message(event)
            case MessageEdited():
                return await self.on_edit(event)
            case MessageDeleted():
                # only while the round is open: a posted digest keeps matching the answers
                await self.store.delete_response_by_message(event.channel, event.message_ref)
                return Outcome()
            case FormSubmitted():
                return await self.on_form(event)
        raise TypeError(f"unknown event {event!r}")

    # ---- commands -----------------------------------------------------------------------

    async def on_command(self, event: CommandInvoked) -> Outcome:
        if event.answer is not None:  # typed options: stored as typed, never re-parsed
            a = event.answer
            command = Command("answer", question=a.question, anonymous=a.anonymous, text=a.text)
        else:
            try:
                command = commands.parse(event.text)
            except CommandError as exc:
                return Outcome().reply(str(exc))
        if command.spec.admin and not event.actor.is_admin:
            return Outcome().reply(
                f"`/discuss {command.name}` is for admins only. Ask one of the admins listed "
                "in the Roundtable config."
            )
        return await self.commands[command.name](event, command)

    async def cmd_help(self, event: CommandInvoked, _: Command) -> Outcome:
        return Outcome().reply(commands.help_text(is_admin=event.actor.is_admin))

    async def cmd_now(self, event: CommandInvoked, command: Command) -> Outcome:
        try:
            _, outcome = await self.service.open_round(event.channel, prompt_id=command.prompt_id)
        except RotationExhausted:
            return Outcome().reply(self._exhausted(event.channel))
        except LookupError:
            return Outcome().reply(self._unknown_prompt(command.prompt_id))
        except ChannelBusy:
            return Outcome().reply("A round was just opened here by someone else; try again.")
        return outcome

    async def cmd_answer(self, event: CommandInvoked, command: Command) -> Outcome:
        round_ = await self.store.open_round_in(event.channel)
        if round_ is None:
            return Outcome().reply(NO_ROUND)
        try:
            _, updated, outcome = await self.service.record_answer(
                round_,
                event.actor,
                command.text,
                question=command.question,
                anonymous=command.anonymous,
            )
        except AnswerRejected as exc:
            return Outcome().reply(str(exc))
        return outcome.reply(
            self._saved(command.question, command.anonymous, updated), confirms_save=True
        )

    async def cmd_results(self, event: CommandInvoked, _: Command) -> Outcome:
        round_ = await self.store.open_round_in(event.channel)
        if round_ is None:
            return Outcome().reply(NO_ROUND)
        outcome = Outcome()
        outcome.replies.append(await self.service.summary(round_, final=False))
        return outcome

    async def cmd_next(self, event: CommandInvoked, _: Command) -> Outcome:
        when = await describe_next(
            self.service.library(), self.store, event.channel, self.service.clock.now()
        )
        nxt = await self.service.next_prompt(event.channel, when.schedule if when else None)
        if nxt is None:
            if self.service.library().set_for_channel(event.channel) is not None:
                return Outcome().reply(self._exhausted(event.channel))
            return Outcome().reply("There are no prompt sets configured.")
        text = (
            f"Next here: “{nxt.prompt.title}” ({nxt.prompt.id}) from the set {nxt.prompt_set.id}."
        )
        unused = nxt.remaining_after + 1
        if unused <= RUNNING_OUT:
            schedule = self.service.library().schedule_for_channel(event.channel)
            if schedule is not None and schedule.when_exhausted == "stop":
                then = "scheduled rounds stop here until prompts are added (when_exhausted: stop)"
            elif schedule is not None and schedule.order == "shuffle":
                then = "the rotation starts over in a new shuffled order"
            else:
                then = "the rotation starts over"
            text += (
                f" Running out: {'only this one' if unused == 1 else f'{unused}'} unused prompt"
                f"{'s are' if unused != 1 else ' is'} left in this pass through the set"
                f"{' (this one included)' if unused != 1 else ''}; after that, {then}."
                " Add prompts to the set to keep it fresh."
            )
        if when is not None:
            text = f"{when.text}\n{text}"
        failed = await self._last_failed(event.channel)
        if failed:
            text += f"\n{failed}"
        return Outcome().reply(text)

    async def _last_failed(self, channel: str) -> str | None:
        """The newest round here, if it could not be posted (the admin should act)."""
        last = await self.store.latest_round(channel)
        if last is None or last.status != "failed":
            return None
        return f"The last round here could not be posted: {last.status_reason or 'refused'}."

    async def cmd_sets(self, event: CommandInvoked, _: Command) -> Outcome:
        lib = self.service.library()
        lines = ["Prompt sets:"]
        for loaded in lib.prompt_sets.values():
            n = len(loaded.prompts)
            lines.append(f"  {loaded.id} — {loaded.content.title} ({n} prompt{'s' * (n != 1)})")
            lines.extend(f"    {p.id}: {p.title}" for p in loaded.prompts)
        problems: list[Problem] = getattr(self.service.library, "last_problems", [])
        if problems:
            lines.append(self._problems_text(problems))
        return Outcome().reply("\n".join(lines))

    async def cmd_reload(self, event: CommandInvoked, _: Command) -> Outcome:
        if self.reload is None:
            return Outcome().reply("Live reload is not available in this process.")
        problems = await self.reload()
        if problems:
            return Outcome().reply("Reload refused. " + self._problems_text(problems))
        return Outcome().reply(f"Reloaded: {self.service.library().summary()}.")

    async def cmd_preview(self, event: CommandInvoked, command: Command) -> Outcome:
        if command.prompt_id:
            found = self.service.library().find_prompt(command.prompt_id)
            if found is None:
                return Outcome().reply(self._unknown_prompt(command.prompt_id))
            prompt = found[1]
        else:
            nxt = await self.service.next_prompt(event.channel)
            if nxt is None:
                if self.service.library().set_for_channel(event.channel) is not None:
                    return Outcome().reply(self._exhausted(event.channel))
                return Outcome().reply("There are no prompt sets configured.")
            prompt = nxt.prompt
        schedule = self.service.library().schedule_for_channel(event.channel)
        outcome = Outcome()
        outcome.replies.append(
            RoundPost(
                round_id=0,
                round_key="preview",
                channel=event.channel,
                prompt=prompt_view(prompt),
                anonymous_allowed=schedule is None or schedule.anonymous_answers == "allowed",
                preview=True,
            )
        )
        return outcome

    async def cmd_withdraw(self, event: CommandInvoked, _: Command) -> Outcome:
        round_ = await self.store.open_round_in(event.channel)
        if round_ is None:
            return Outcome().reply(
                f"{NO_ROUND} To delete your answers in closed rounds, use `/discuss forget-me`."
            )
        try:
            n = await self.service.withdraw(round_, event.actor)
        except AnonymousLocked as locked:
            return Outcome().reply(
                f"Removed your {locked.removed} named answer{'s' * (locked.removed != 1)}. "
                "Anonymous answers in this round can no longer be withdrawn: the server's "
                "key for this round was lost, so nobody (not even the bot) can tell which "
                "are yours."
            )
        if not n:
            return Outcome().reply("You have no answers in this round to withdraw.")
        return Outcome().reply(f"Removed your {n} answer{'s' * (n != 1)} from this round.")

    async def cmd_forget_me(self, event: CommandInvoked, command: Command) -> Outcome:
        if command.args != ("confirm",):
            return Outcome().reply(
                f"This deletes every answer you gave with your name on {event.actor.platform}, "
                "in open and closed rounds, and your anonymous answers in open rounds. "
                "Digests already posted stay in the channel. To go ahead, type "
                "`/discuss forget-me confirm` (on Discord: set `confirm` to True)."
            )
        return Outcome().reply(forgotten_text(await forget_person(self.service, event.actor.key)))

    async def cmd_close(self, event: CommandInvoked, _: Command) -> Outcome:
        round_ = await self.store.open_round_in(event.channel)
        if round_ is None:
            return Outcome().reply(NO_ROUND)
        return await self.service.close_round(round_)

    async def cmd_skip(self, event: CommandInvoked, _: Command) -> Outcome:
        state = await self.store.channel_state(event.channel)
        skips = (state.skips_pending if state else 0) + 1
        await self.store.set_channel_state(
            event.channel, self.service.clock.now(), skips_pending=skips
        )
        return Outcome().reply(
            f"The next {'round' if skips == 1 else f'{skips} rounds'} scheduled here will be skipped."
        )

    async def cmd_pause(self, event: CommandInvoked, _: Command) -> Outcome:
        await self.store.set_channel_state(event.channel, self.service.clock.now(), paused=True)
        return Outcome().reply("Scheduled rounds are paused here. `/discuss resume` restarts them.")

    async def cmd_resume(self, event: CommandInvoked, _: Command) -> Outcome:
        await self.store.set_channel_state(event.channel, self.service.clock.now(), paused=False)
        return Outcome().reply("Scheduled rounds are running here again.")

    # ---- answers from messages and forms -----------------------------------------------

    async def on_message(self, event: MessagePosted) -> Outcome:
        if event.thread_ref is None:
            round_ = await self.store.open_round_in(event.channel)
            if round_ is None:
                return Outcome().reply(NO_ROUND)
        else:
            round_ = await self.store.round_by_message(event.channel, event.thread_ref)
            if round_ is None or not round_.is_open:
                return Outcome()  # ordinary conversation, or talk after the round closed
        if not event.readable:
            return Outcome().reply(UNREADABLE)
        question, text = _numbered(round_, event.text)
        try:
            _, updated, outcome = await self.service.record_answer(
                round_, event.actor, text, question=question, message_ref=event.message_ref
            )
        except AnswerRejected as exc:
            return Outcome().reply(str(exc))
        return outcome.reply(self._saved(question, False, updated), confirms_save=True)

    async def on_edit(self, event: MessageEdited) -> Outcome:
        """An edited reply is read by the same rule as a new one; a closed round's
        answers stay as its digest showed them."""
        round_ = await self.store.round_of_response(event.channel, event.message_ref)
        if round_ is None or not round_.is_open:
            return Outcome()
        question, text = _numbered(round_, event.text)
        try:
            text = self.service.check_text(text)
        except AnswerRejected as exc:
            log.info("ignored an edit that would make an answer invalid: %s", exc)
            return Outcome()
        await self.store.edit_response(
            event.channel, event.message_ref, text, question, self.service.clock.now()
        )
        return Outcome()

    async def on_form(self, event: FormSubmitted) -> Outcome:
        round_ = await self.store.get_round(event.round_id)
        if round_ is None or round_.channel != event.channel:
            return Outcome().reply("That round no longer exists.")
        answers = {n: t.strip() for n, t in sorted(event.answers.items()) if t and t.strip()}
        if not answers:
            return Outcome().reply("The form was empty, so nothing was saved.")
        outcome = Outcome()
        saved: list[int] = []
        try:
            for number, text in answers.items():
                self.service.check_text(text)
                self.service.check_question(round_, number)
            for number, text in answers.items():
                _, _, posts = await self.service.record_answer(
                    round_, event.actor, text, question=number, anonymous=event.anonymous
                )
                outcome.extend(posts)
                saved.append(number)
        except AnswerRejected as exc:
            done = f" (Saved {_questions(saved)} before that.)" if saved else ""
            return outcome.reply(f"{exc}{done}")
        how = "anonymous answers" if event.anonymous else "answers"
        if len(saved) == 1:
            how = how[:-1]
        return outcome.reply(
            f"Saved your {how} to {_questions(saved)}. Thank you!", confirms_save=True
        )

    # ---- wording ------------------------------------------------------------------------

    def _saved(self, question: int | None, anonymous: bool, updated: bool) -> str:
        what = "anonymous answer" if anonymous else "answer"
        where = f" to question {question}" if question else ""
        verb = "Updated" if updated else "Saved"
        text = f"{verb} your {what}{where}."
        if anonymous:
            text += " It is stored without your name; nobody can see it was you."
        return text

    def _problems_text(self, problems: list[Problem]) -> str:
        n = len(problems)
        lines = [
            f"The files on disk have {n} problem{'s' * (n != 1)}; the bot keeps running on "
            "the last good content until they are fixed:"
        ]
        lines.extend(f"  {p}" for p in problems[:20])
        if n > 20:  # a pathological edit can have thousands; chat messages have limits
            lines.append(f"  … and {n - 20} more (`roundtable validate` lists them all)")
        return "\n".join(lines)

    def _exhausted(self, channel: str) -> str:
        loaded = self.service.library().set_for_channel(channel)
        name = loaded.id if loaded else "?"
        return (
            f"Every prompt in the set {name} has been used here, and its schedule says "
            "`when_exhausted: stop`, so no more rounds are posted. Add prompts to the set, "
            "or start one explicitly with `/discuss now PROMPT_ID`."
        )

    def _unknown_prompt(self, prompt_id: str | None) -> str:
        ids = self.service.library().all_prompt_ids()
        close = difflib.get_close_matches(prompt_id or "", ids, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return f"Unknown prompt id `{prompt_id}`.{hint} `/discuss sets` lists them."
