"""Discord: ``serve(ports, readiness)`` runs the adapter until cancelled
(``adapter.DiscordAdapter``). The package: ``adapter`` translates events and delivers
posts, ``client`` sets up discord.py, ``embeds`` and ``forms`` render.
"""

from __future__ import annotations

import asyncio

from bot.adapters.discord.adapter import DiscordAdapter
from bot.core.ports import Ports
from bot.health import Readiness

__all__ = ["DiscordAdapter", "serve"]


async def serve(ports: Ports, readiness: Readiness) -> None:
    """Run the Discord adapter until cancelled (started by ``bot.app.run``)."""
    adapter = DiscordAdapter(ports)
    readiness.add("discord", lambda: adapter.client is not None and adapter.client.is_ready())
    try:
        await adapter.serve()
    except asyncio.CancelledError:
        raise
    finally:
        if adapter.client is not None and not adapter.client.is_closed():
            await adapter.client.close()
