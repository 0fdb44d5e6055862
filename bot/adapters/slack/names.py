"""Display names for digests, learned after everything else (``users.info``).

A name is no promise to anyone, and ``users.info`` is rate-limited (Tier 4,
https://docs.slack.dev/reference/methods/users.info): so a name is never fetched
before an answer is stored (the answer keeps the name Slack sent), and a burst of new
people becomes a queue of calls, one person at a time, not a burst of calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.precedence import Precedence
from bot.adapters.slack.posting import PLATFORM
from bot.core.events import Actor
from bot.core.ports import NameCache

log = logging.getLogger(__name__)

RENAMES_TOGETHER = 50  # display names learned in a row, corrected in one transaction
STOP_WRITE_SECONDS = 5.0  # at a stop, how long writing the names learned may take


class DisplayNames:
    """The names known in this process (bounded), and the ones still to learn."""

    def __init__(
        self,
        client: AsyncWebClient,
        rename: Callable[[dict[str, str]], Awaitable[Any]],
        *,
        wait_for: tuple[Precedence, ...],
        track: Callable[[asyncio.Task], asyncio.Task],
    ):
        self._client = client
        self._rename = rename  # the core's port: correct the names in stored answers
        self._wait_for = wait_for  # learning waits until these have paused
        self._track = track  # the adapter keeps the task (drain and stop wait for it)
        self._known = NameCache()
        self._unnamed: dict[str, Any] = {}  # user id -> the name their answer carries
        self._namer: asyncio.Task | None = None

    def known(self, user_id: str) -> str | None:
        return self._known.get(user_id)

    def learn(self, user_id: str, used: Any = None) -> None:
        """A name for digests without pinging anyone (profile name), fetched once per
        person and process after their first answer is stored, then corrected there.
        Fetched in the background, one person at a time, once the bot has nothing else to
        do (``wait_for``: the answers' processing, paused for 20 ms, a pause in a burst
        rather than a gap between two answers; then the acks)."""
        if self._known.get(user_id) is not None or user_id in self._unnamed:
            return
        self._unnamed[user_id] = used
        if self._namer is None or self._namer.done():
            self._namer = self._track(asyncio.create_task(self._learn_all(), name="slack-names"))

    async def _learn_all(self) -> None:
        learned: dict[str, str] = {}  # user id → name, to correct in stored answers
        try:
            while self._unnamed:
                user_id, used = next(iter(self._unnamed.items()))
                try:
                    # after the answers being processed, and after any ack being made: a
                    # users.info call costs more than an ack, and nobody waits for it
                    async with contextlib.AsyncExitStack() as stack:
                        for first in self._wait_for:
                            await stack.enter_async_context(first.after())
                        name = await self._fetch(user_id, used)
                    if name is not None:
                        learned[user_id] = name
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("learning a display name failed")
                finally:
                    self._unnamed.pop(user_id, None)
                if learned and (not self._unnamed or len(learned) >= RENAMES_TOGETHER):
                    names, learned = learned, {}
                    await self._store(names)
        except asyncio.CancelledError:
            if learned:  # stopped: the names learned so far are written, not lost
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(STOP_WRITE_SECONDS):
                        await self._store(learned)
            raise

    async def _store(self, names: dict[str, str]) -> None:
        """One transaction for the names learned in a row."""
        try:
            await self._rename({f"{PLATFORM}:{u}": n for u, n in names.items()})
        except Exception as exc:
            log.warning("could not store %d display names: %s", len(names), type(exc).__name__)
            for user_id in names:  # learned again at their next answer
                self._known.forget(user_id)

    async def _fetch(self, user_id: str, used: Any) -> str | None:
        """The person's name from ``users.info`` (cached); returned when their stored
        answers carry another one (``used``) and must be corrected."""
        if self._known.get(user_id) is not None:
            return None
        try:
            user = (await self._client.users_info(user=user_id)).get("user") or {}
        except (TimeoutError, SlackApiError, aiohttp.ClientError) as exc:
            log.info("users.info failed (%s); keeping the name we have", type(exc).__name__)
            return None
        profile = user.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or user.get("name")
        if not name:
            return None
        self._known.put(user_id, name)
        used_name = used.display_name if isinstance(used, Actor) else used
        return name if name != used_name else None
