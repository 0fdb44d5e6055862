"""Start an aiohttp app on 127.0.0.1 with a free port: every test fake uses this."""

from __future__ import annotations

from aiohttp import web


async def serve_loopback(app: web.Application, **runner_options) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on loopback; returns the runner (``cleanup()`` stops it) and the port."""
    runner = web.AppRunner(app, access_log=None, **runner_options)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]
