"""Posting into Slack channels without duplicates (the core's ``Platform.post``).

A round, each chunk of a digest and each thread message carries its key in message
metadata (https://docs.slack.dev/messaging/message-metadata), so a retry after a 5xx or
a lost connection, and a re-send after a crash, first looks for what already landed
(``conversations.history`` / ``conversations.replies`` with ``include_all_metadata``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import metrics
from bot.adapters.slack import blocks
from bot.adapters.slack.retry import Sleep
from bot.core import render
from bot.core.dispatch import ChannelPost, Posted, PostFailed
from bot.core.events import RoundPost, Summary, ThreadPost

log = logging.getLogger(__name__)

PLATFORM = "slack"
# Refusals that retrying cannot fix: an admin has to invite the bot or fix the schedule.
PERMANENT_ERRORS = frozenset(
    {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "missing_scope"}
)
HISTORY_LIMIT = 200
THREAD_PAGES = 25  # up to 5,000 thread replies searched before a re-send


class ChannelPoster:
    """Sends with ``post_client`` (its retries: rate limits only; the rest is decided
    here, after looking for the message) and reads history with ``client``."""

    def __init__(
        self, client: AsyncWebClient, post_client: AsyncWebClient, *, attempts: int, sleep: Sleep
    ):
        self.client = client
        self.post_client = post_client
        self.attempts = attempts
        self._sleep = sleep

    async def post(self, message: ChannelPost) -> Posted | None:
        channel_id = channel_id_of(message.channel)
        if isinstance(message, RoundPost):
            ts = await self._send(
                channel_id,
                text=_round_fallback(message),
                blocks_=blocks.round_blocks(message),
                metadata=blocks.round_metadata(message),
                thread_ts=None,
                find=lambda: self._find_round(channel_id, message.round_key),
            )
            return Posted(message_ref=ts)
        if isinstance(message, Summary):
            fallback = blocks.fallback(render.summary_text(message))
            landed = await self._landed(channel_id, message)
            for n, chunk in enumerate(blocks.summary_messages(message)):
                key = chunk_key(message.key, n) if message.key else None
                if key not in landed:  # a re-send resumes at the first missing chunk
                    await self._send_keyed(
                        channel_id,
                        text=fallback,
                        blocks_=chunk,
                        thread_ts=message.thread_ref,
                        # only the first part is shown in the channel; the rest stays in the thread
                        broadcast=message.final and message.thread_ref is not None and n == 0,
                        key=key,
                    )
                fallback = "Digest (continued)"
            return None
        if isinstance(message, ThreadPost):
            if message.key is None or message.key not in await self._landed(channel_id, message):
                await self._send_keyed(
                    channel_id,
                    text=blocks.fallback(render.thread_post_text(message)),
                    blocks_=blocks.thread_post_blocks(message),
                    thread_ts=message.thread_ref,
                    key=message.key,
                )
            return None
        raise TypeError(f"cannot post {message!r}")

    async def find_post(self, channel: str, round_key: str) -> Posted | None:
        ts = await self._find_round(channel_id_of(channel), round_key)
        return Posted(message_ref=ts) if ts else None

    async def _landed(self, channel_id: str, message: Summary | ThreadPost) -> set[str]:
        """On a re-send (``resume``), the outbox keys of the parts that landed before
        (each message's metadata carries its key; a digest's chunks ``key#0``, ``key#1``
        …): asked once, before posting again after a crash or a failure."""
        keys: set[str] = set()
        if not message.resume or not message.key:
            return keys

        def collect(found: dict) -> bool:
            meta = found.get("metadata") or {}
            keys.add(str((meta.get("event_payload") or {}).get("post_key") or ""))
            return False

        await self._search(channel_id, message.thread_ref, collect)
        return keys

    async def _send_keyed(
        self,
        channel_id: str,
        *,
        text: str,
        blocks_: list[dict],
        thread_ts: str | None,
        broadcast: bool = False,
        key: str | None = None,
    ) -> str:
        key = key or uuid.uuid4().hex  # the outbox row's key: the same on every retry
        extra = {"reply_broadcast": True} if broadcast else {}
        return await self._send(
            channel_id,
            text=text,
            blocks_=blocks_,
            metadata=blocks.post_metadata(key),
            thread_ts=thread_ts,
            find=lambda: self._find_keyed(channel_id, key, thread_ts),
            **extra,
        )

    async def _send(
        self,
        channel_id: str,
        *,
        text: str,
        blocks_: list[dict],
        metadata: dict,
        thread_ts: str | None,
        find: Callable[[], Awaitable[str | None]],
        **extra: Any,
    ) -> str:
        """``chat.postMessage`` without duplicates: before re-sending after a 5xx or a lost
        connection, look for the message's metadata key (the first try may have landed)."""
        kwargs: dict[str, Any] = {"text": text, "blocks": blocks_, "metadata": metadata, **extra}
        if thread_ts:
            kwargs["thread_ts"] = thread_ts
        last: Exception | None = None
        for attempt in range(self.attempts):
            if attempt:
                await self._sleep(min(30.0, 0.5 * 2 ** (attempt - 1)))
                found = await find()
                if found:
                    log.info("a retried Slack post had landed already; not re-sending")
                    return found
            try:
                response = await self.post_client.chat_postMessage(channel=channel_id, **kwargs)
                return response["ts"]
            except SlackApiError as exc:
                error = error_code(exc)
                metrics.api_error(PLATFORM, error)
                if error in PERMANENT_ERRORS:
                    log.error(
                        "Slack refused to post in %s (%s). An admin should invite the bot "
                        "(/invite @Roundtable) or remove the channel from the schedule; skipped.",
                        channel_id,
                        error,
                    )
                    raise PostFailed(f"Slack says {error}; invite the bot to the channel") from None
                if exc.response.status_code < 500:
                    raise
                last = exc
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = exc
            log.warning("posting in %s failed (%s); will check and retry", channel_id, last)
        assert last is not None
        raise last

    async def _find_round(self, channel_id: str, round_key: str) -> str | None:
        def matches(message: dict) -> bool:
            meta = message.get("metadata") or {}
            payload = meta.get("event_payload") or {}
            return (
                meta.get("event_type") == blocks.ROUND_EVENT
                and payload.get("round_key") == round_key
            )

        return await self._search(channel_id, None, matches)

    async def _find_keyed(self, channel_id: str, key: str, thread_ts: str | None) -> str | None:
        def matches(message: dict) -> bool:
            meta = message.get("metadata") or {}
            return (meta.get("event_payload") or {}).get("post_key") == key

        return await self._search(channel_id, thread_ts, matches)

    async def _search(
        self, channel_id: str, thread_ts: str | None, matches: Callable[[dict], bool]
    ) -> str | None:
        """The ts of the newest recent message (in the channel or a thread) that matches."""
        cursor = None
        # a thread lists oldest first: page through it (a digest comes after the answers)
        for _ in range(THREAD_PAGES if thread_ts else 1):
            try:
                if thread_ts:
                    response = await self.client.conversations_replies(
                        channel=channel_id,
                        ts=thread_ts,
                        include_all_metadata=True,
                        limit=HISTORY_LIMIT,
                        cursor=cursor,
                    )
                else:
                    response = await self.client.conversations_history(
                        channel=channel_id, include_all_metadata=True, limit=HISTORY_LIMIT
                    )
            except SlackApiError as exc:
                log.warning("could not read history of %s: %s", channel_id, error_code(exc))
                return None
            for message in response.get("messages") or []:
                if matches(message):
                    return message["ts"]
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                break
        return None


def chunk_key(key: str, n: int) -> str:
    """The key of a multi-message post's ``n``-th message."""
    return f"{key}#{n}"


def channel_id_of(channel: str) -> str:
    platform, _, channel_id = channel.partition(":")
    if platform != PLATFORM or not channel_id:
        raise PostFailed(f"{channel} is not a Slack channel")
    return channel_id


def error_code(exc: SlackApiError) -> str:
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    return str(data.get("error") or f"HTTP {exc.response.status_code}")


def _round_fallback(post: RoundPost) -> str:
    return blocks.escape(
        f"{post.prompt.title}: {len(post.prompt.questions)} questions — share your thoughts"
    )
