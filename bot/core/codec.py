"""Neutral events to JSON and back, for the inbox and the outbox.

An event is stored as it arrived (``Incoming``) or as it will be posted (``RoundPost``,
``Summary``, ``ThreadPost``) so that a restart processes or delivers exactly the same
thing. Only the neutral types in ``bot.core.events`` are encoded; nothing platform-made.
"""

from __future__ import annotations

from typing import Any

from bot.core.events import (
    Actor,
    Answer,
    AnswerGroup,
    CommandInvoked,
    FormSubmitted,
    Incoming,
    MessageDeleted,
    MessageEdited,
    MessagePosted,
    PromptView,
    RoundPost,
    Summary,
    ThreadPost,
    TypedAnswer,
)

ChannelPost = RoundPost | Summary | ThreadPost


def _actor(actor: Actor) -> dict[str, Any]:
    return {
        "platform": actor.platform,
        "user_id": actor.user_id,
        "display_name": actor.display_name,
        "is_admin": actor.is_admin,
    }


def encode_incoming(event: Incoming) -> dict[str, Any]:
    match event:
        case CommandInvoked():
            out = {
                "type": "command",
                "actor": _actor(event.actor),
                "channel": event.channel,
                "text": event.text,
            }
            if event.answer is not None:  # typed options, kept as typed
                out["answer"] = {
                    "text": event.answer.text,
                    "question": event.answer.question,
                    "anonymous": event.answer.anonymous,
                }
            return out
        case MessagePosted():
            return {
                "type": "message",
                "actor": _actor(event.actor),
                "channel": event.channel,
                "text": event.text,
                "message_ref": event.message_ref,
                "thread_ref": event.thread_ref,
                "readable": event.readable,
            }
        case MessageEdited():
            return {
                "type": "edit",
                "channel": event.channel,
                "message_ref": event.message_ref,
                "text": event.text,
            }
        case MessageDeleted():
            return {"type": "delete", "channel": event.channel, "message_ref": event.message_ref}
        case FormSubmitted():
            return {
                "type": "form",
                "actor": _actor(event.actor),
                "channel": event.channel,
                "round_id": event.round_id,
                "answers": {str(k): v for k, v in event.answers.items()},
                "anonymous": event.anonymous,
            }
    raise TypeError(f"cannot encode {event!r}")


def decode_incoming(data: dict[str, Any]) -> Incoming:
    kind = data["type"]
    if kind == "command":
        answer = TypedAnswer(**data["answer"]) if data.get("answer") else None
        return CommandInvoked(Actor(**data["actor"]), data["channel"], data["text"], answer)
    if kind == "message":
        return MessagePosted(
            Actor(**data["actor"]),
            data["channel"],
            data["text"],
            data["message_ref"],
            data.get("thread_ref"),
            data.get("readable", True),
        )
    if kind == "edit":
        return MessageEdited(data["channel"], data["message_ref"], data["text"])
    if kind == "delete":
        return MessageDeleted(data["channel"], data["message_ref"])
    if kind == "form":
        return FormSubmitted(
            Actor(**data["actor"]),
            data["channel"],
            int(data["round_id"]),
            {int(k): v for k, v in data["answers"].items()},
            bool(data.get("anonymous")),
        )
    raise ValueError(f"unknown inbox event type {kind!r}")


def encode_post(post: ChannelPost) -> dict[str, Any]:
    match post:
        case RoundPost():
            return {
                "type": "round",
                "round_id": post.round_id,
                "round_key": post.round_key,
                "channel": post.channel,
                "prompt": post.prompt.to_json(),
                "anonymous_allowed": post.anonymous_allowed,
            }
        case Summary():
            return {
                "type": "summary",
                "round_id": post.round_id,
                "channel": post.channel,
                "thread_ref": post.thread_ref,
                "title": post.title,
                "respondents": post.respondents,
                "groups": [
                    {
                        "number": g.number,
                        "question": g.question,
                        "answers": [[a.text, a.author, a.late] for a in g.answers],
                    }
                    for g in post.groups
                ],
                "final": post.final,
                "show_counts": post.show_counts,
                "note": post.note,
                "key": post.key,
            }
        case ThreadPost():
            return {
                "type": "thread",
                "round_id": post.round_id,
                "channel": post.channel,
                "thread_ref": post.thread_ref,
                "kind": post.kind,
                "text": post.text,
                "quote": post.quote,
                "question": post.question,
                "key": post.key,
            }
    raise TypeError(f"cannot encode {post!r}")


def decode_post(data: dict[str, Any]) -> ChannelPost:
    kind = data["type"]
    if kind == "round":
        return RoundPost(
            round_id=data["round_id"],
            round_key=data["round_key"],
            channel=data["channel"],
            prompt=PromptView.from_json(data["prompt"]),
            anonymous_allowed=data["anonymous_allowed"],
        )
    if kind == "summary":
        return Summary(
            round_id=data["round_id"],
            channel=data["channel"],
            thread_ref=data.get("thread_ref"),
            title=data["title"],
            respondents=data["respondents"],
            groups=tuple(
                AnswerGroup(
                    g["number"],
                    g["question"],
                    tuple(Answer(t, a, late) for t, a, late in g["answers"]),
                )
                for g in data["groups"]
            ),
            final=data["final"],
            show_counts=data.get("show_counts", True),
            note=data.get("note"),
            key=data.get("key"),
        )
    if kind == "thread":
        return ThreadPost(
            round_id=data["round_id"],
            channel=data["channel"],
            thread_ref=data.get("thread_ref"),
            kind=data["kind"],
            text=data["text"],
            quote=data.get("quote"),
            question=data.get("question"),
            key=data.get("key"),
        )
    raise ValueError(f"unknown outbox post type {kind!r}")
