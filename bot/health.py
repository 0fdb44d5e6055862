"""One small HTTP server for orchestrators and Prometheus: ``/healthz`` and ``/metrics``.

It runs in every mode (console, Slack, Discord) when a health port is set (``health.port``
in the config or ``ROUNDTABLE_HEALTH_PORT``), so compose and Kubernetes can check a bot
that has no Slack HTTP server. ``/healthz`` answers 200 when every registered check
passes (the database answers; each started platform is connected) and 503 otherwise.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import generate_latest
from sqlalchemy import func, select, text

from bot import metrics
from bot.storage.models import PENDING, SENDING, OutboxEntry

if TYPE_CHECKING:
    from bot.config import Config
    from bot.storage.store import Store

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]
# The classic text format, which every Prometheus version reads (generate_latest writes it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CHECK_TIMEOUT = 5.0  # a check that hangs counts as failing; probes time out at about this


class Readiness:
    """Named checks that together say whether the bot can do its work."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def report(self) -> dict[str, bool]:
        results = {}
        for name, check in list(self._checks.items()):
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, CHECK_TIMEOUT)
                results[name] = bool(result)
            except Exception as exc:  # a failing check means "not ready", never a crash
                log.debug("health check %s failed: %s", name, type(exc).__name__)
                results[name] = False
        return results


async def metrics_endpoint(_: web.Request) -> web.Response:
    """The Prometheus text format of ``bot.metrics.REGISTRY``."""
    await metrics.refresh()
    return web.Response(
        body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE}
    )


class HealthServer:
    def __init__(self, readiness: Readiness):
        self.readiness = readiness
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", metrics_endpoint)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        checks = await self.readiness.report()
        ok = all(checks.values())
        return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)


def health_port(config: Config, env: dict[str, str] | None = None) -> int | None:
    """The configured health port: ``ROUNDTABLE_HEALTH_PORT`` wins over ``health.port``."""
    env = os.environ if env is None else env
    value = env.get("ROUNDTABLE_HEALTH_PORT", "").strip()
    if not value:
        return config.health.port
    if not value.isdigit() or int(value) > 65535:
        raise ValueError(f"ROUNDTABLE_HEALTH_PORT: '{value}' is not a port number (0-65535)")
    return int(value)


async def start_health(
    config: Config, readiness: Readiness, store: Store, *, slack_serves: bool
) -> HealthServer | None:
    """Serve ``/healthz`` and ``/metrics`` when a health port is set; None otherwise
    (or when it is the Slack server's port: ``slack_serves``, Slack is configured)."""
    port = health_port(config)
    if port is None:
        return None
    if slack_serves and port == config.slack.port:
        log.info("health and metrics are served by the Slack server on port %d", port)
        return None
    readiness.add("database", lambda: database_answers(store))
    server = HealthServer(readiness)
    try:
        await server.start(config.health.host, port)
    except OSError as exc:
        await server.stop()
        raise OSError(
            exc.errno, f"cannot serve /healthz and /metrics on port {port}: {exc.strerror}"
        ) from None
    log.info("health and metrics on port %d (/healthz, /metrics)", server.port)
    return server


async def outbox_waiting(store: Store) -> int:
    """Posts written to the outbox and not delivered (nor given up) yet."""
    async with store.session() as session:
        query = select(func.count()).where(OutboxEntry.status.in_((PENDING, SENDING)))
        return (await session.execute(query)).scalar_one()


async def database_answers(store: Store) -> bool:
    async with store.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True
