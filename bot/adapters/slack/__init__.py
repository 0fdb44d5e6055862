"""Slack: ``serve(runtime)`` runs the adapter until cancelled (see ``adapter.SlackAdapter``)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.adapters.slack.adapter import SlackAdapter

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger(__name__)

__all__ = ["SlackAdapter", "serve"]


async def serve(runtime: Runtime) -> None:
    """Register with the dispatcher, serve Slack until cancelled, then drain and close."""
    adapter = SlackAdapter(runtime)
    runtime.readiness.add("slack", adapter.healthy)  # the health port's /healthz
    try:
        await adapter.start()
        await asyncio.Event().wait()
    finally:
        await adapter.stop()
