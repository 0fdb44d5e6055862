"""Wiring: build the core from the library and the store, start the adapters, run.

The runtime is assembled here and nowhere else; every piece gets what it needs passed
in (no global service locator), so tests build the same pieces with fakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from bot import metrics
from bot.anonymity import load_keyring
from bot.config import Secrets, database_url, default_data_dir
from bot.core.clock import Clock, SystemClock
from bot.core.dispatch import Dispatcher
from bot.core.handlers import Handlers
from bot.core.ports import Ports
from bot.core.rounds import RoundService
from bot.health import Readiness, outbox_waiting, start_health
from bot.library import LibraryHolder, load_library
from bot.privacy import check_server_secret
from bot.reload import Reloader
from bot.storage.store import Store

if TYPE_CHECKING:
    from bot.scheduling import Scheduler

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a running bot is made of."""

    library: LibraryHolder
    store: Store
    clock: Clock
    service: RoundService
    dispatcher: Dispatcher
    secrets: Secrets = field(default_factory=Secrets)
    reloader: Reloader | None = None  # watches prompts/ and the config (bot.reload)
    readiness: Readiness = field(default_factory=Readiness)  # /healthz checks (bot.health)
    _ports: Ports | None = field(default=None, repr=False)

    @property
    def ports(self) -> Ports:
        """What adapters get of the core (never the store itself)."""
        if self._ports is None:
            self._ports = Ports(self.dispatcher, self.clock, self.library, self.secrets)
        return self._ports

    def scheduler(self, **options: Any) -> Scheduler:
        """The scheduler of this runtime's library, rounds and posts."""
        from bot.scheduling import Scheduler  # APScheduler: only for ``run`` and tests

        return Scheduler(
            library=self.library,
            service=self.service,
            dispatcher=self.dispatcher,
            clock=self.clock,
            **options,
        )

    async def close(self) -> None:
        await self.store.close()


async def build_runtime(
    config_path: Path,
    *,
    clock: Clock | None = None,
    secrets: Secrets | None = None,
    database: str | None = None,
) -> Runtime:
    """Load and validate content (raises ProblemsFound), open and migrate the database."""
    library = LibraryHolder(load_library(config_path))
    url = database or database_url(library.current.config, config_path=config_path)
    # raises SecretProblem (one line) before touching the database
    keyring = load_keyring(url, data_dir=default_data_dir(config_path))
    log.info("database: %s", make_url(url).render_as_string(hide_password=True))
    store = await Store.open(url, keyring)
    clock = clock or SystemClock()
    await check_server_secret(store, keyring, clock.now())  # logs loudly on a mismatch
    service = RoundService(store, library, clock, keyring=keyring)
    reloader = Reloader(library, config_path)
    dispatcher = Dispatcher(Handlers(service, reload=reloader.reload), service)
    return Runtime(
        library, store, clock, service, dispatcher, secrets or Secrets(), reloader=reloader
    )


def freeze_startup_objects() -> None:
    """Once started: what start-up made (modules, ORM mappings, the library, clients)
    lives as long as the process, so the garbage collector stops re-scanning it. Each
    full collection otherwise walks all of it; a fan-out to 500 channels spent about a
    fifth of its time there (docs/performance.md)."""
    gc.collect()
    gc.freeze()


async def run(runtime: Runtime) -> None:
    """Run every configured adapter until the console ends or the process is signalled."""
    from bot.adapters.console import ConsoleAdapter

    config = runtime.library.current.config
    services: list[Awaitable[None]] = []
    if runtime.secrets.slack:
        from bot.adapters import slack  # imported only when configured

        services.append(slack.serve(runtime.ports, runtime.readiness))
    if runtime.secrets.discord:
        from bot.adapters import discord as discord_adapter

        services.append(discord_adapter.serve(runtime.ports, runtime.readiness))
    console: ConsoleAdapter | None = None
    if not services:
        console = ConsoleAdapter(config.console)
        runtime.dispatcher.register(console)
        log.info("no platform tokens set: starting the console adapter")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)

    tasks = [asyncio.create_task(s) for s in services]
    if runtime.reloader is not None:  # live reload of prompts/ and the config file
        tasks.append(asyncio.create_task(runtime.reloader.watch(stop)))
    if console is not None:
        console_task = asyncio.create_task(console.run(runtime.dispatcher))
        console_task.add_done_callback(lambda _: stop.set())
        tasks.append(console_task)
    stopper = asyncio.create_task(stop.wait())
    # scheduled rounds: the database decides, once
    scheduler = runtime.scheduler(sweep_every=_seconds("ROUNDTABLE_SWEEP_SECONDS", 30))
    runtime.dispatcher.outbox.lease = _seconds("ROUNDTABLE_POST_LEASE_SECONDS", 120)
    await scheduler.start()
    freeze_startup_objects()
    health = None
    waiting = metrics.count_waiting(lambda: outbox_waiting(runtime.store))  # at scrape time
    try:
        # /healthz and /metrics, when a port is set
        health = await start_health(
            config, runtime.readiness, runtime.store, slack_serves=runtime.secrets.slack
        )
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception():
                raise task.exception()
    finally:
        metrics.forget_waiting(waiting)
        if health is not None:
            await health.stop()
        await scheduler.stop()
        for task in [*tasks, stopper]:
            task.cancel()
        await asyncio.gather(*tasks, stopper, return_exceptions=True)


def _seconds(variable: str, default: float) -> timedelta:
    """An operational knob from the environment (docs/performance.md): how often the
    sweep runs, and how long a sender may hold a post before another takes it over."""
    try:
        value = float(os.environ.get(variable, default))
    except ValueError:
        value = default
    return timedelta(seconds=value if value > 0 else default)
