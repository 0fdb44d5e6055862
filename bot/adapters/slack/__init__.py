"""Slack: ``serve(ports, readiness)`` runs the adapter until cancelled (``adapter.SlackAdapter``)."""

from __future__ import annotations

import asyncio
import logging

from bot.adapters.slack.adapter import SlackAdapter
from bot.core.ports import Ports
from bot.health import Readiness

log = logging.getLogger(__name__)

__all__ = ["SlackAdapter", "serve"]


async def serve(ports: Ports, readiness: Readiness) -> None:
    """Register with the dispatcher, serve Slack until cancelled, then drain and close."""
    adapter = SlackAdapter(ports)
    readiness.add("slack", adapter.healthy)  # the health port's /healthz
    try:
        await adapter.start()
        await asyncio.Event().wait()
    finally:
        await adapter.stop()
