"""Live reload: watch ``prompts/`` and the config file, apply valid edits atomically.

A reload runs ``load_library`` — the same code as ``roundtable validate`` — so what the
running bot accepts is exactly what validate accepts. A bad edit changes nothing: the
problems are logged as ``path:line:col: message`` and kept in
``LibraryHolder.last_problems`` for ``/discuss sets``, and the bot keeps serving the
last good library.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from watchfiles import Change, awatch

from bot.library import Library, LibraryHolder, load_library
from bot.yamlsource import Problem, ProblemsFound

log = logging.getLogger(__name__)
_LOGGED_PROBLEMS = 100  # a pathological edit may have thousands; the log gets the first ones


def describe_change(old: Library, new: Library) -> str:
    """One line for the log: what a reload changed."""
    old_ids, new_ids = set(old.all_prompt_ids()), set(new.all_prompt_ids())
    old_sched = {s.name: s for s in old.config.schedules}
    new_sched = {s.name: s for s in new.config.schedules}
    parts = [new.summary()]
    if added := sorted(new_ids - old_ids):
        parts.append("added prompts: " + ", ".join(added))
    if removed := sorted(old_ids - new_ids):
        parts.append("removed prompts: " + ", ".join(removed))
    edited = sorted(
        i
        for i in old_ids & new_ids
        if (a := old.find_prompt(i)) and (b := new.find_prompt(i)) and a[1] != b[1]
    )
    if edited:
        parts.append("edited prompts: " + ", ".join(edited))
    changed = sorted(n for n in old_sched.keys() & new_sched.keys() if old_sched[n] != new_sched[n])
    for label, names in (
        ("new schedules", sorted(new_sched.keys() - old_sched.keys())),
        ("removed schedules", sorted(old_sched.keys() - new_sched.keys())),
        ("changed schedules", changed),
    ):
        if names:
            parts.append(f"{label}: " + ", ".join(names))
    return "; ".join(parts)


class Reloader:
    """Re-validates the library on demand (``reload``) or on file changes (``watch``)."""

    def __init__(
        self,
        holder: LibraryHolder,
        config_path: Path,
        *,
        debounce_ms: int = 400,
        poll_ms: int | None = None,
    ):
        self.holder = holder
        self.config_path = config_path
        self.debounce_ms = debounce_ms
        self.poll_ms = poll_ms  # rust_timeout: how often the watcher checks in when idle
        self.ready = asyncio.Event()  # set once the file watcher is running
        self.attempts = 0  # reloads tried so far (watchers and tests wait on ``attempted``)
        self.attempted = asyncio.Event()
        self._lock = asyncio.Lock()
        self.retry_s = 5.0  # after the watcher itself fails (folder gone, too many watches)

    async def reload(self) -> list[Problem]:
        """Validate the files on disk; apply them if valid. Returns the problems ([] = ok)."""
        async with self._lock:  # a forced reload and a file event never interleave
            try:
                return await self._reload()
            finally:
                self.attempts += 1
                self.attempted.set()

    async def _reload(self) -> list[Problem]:
        """One attempt, under the lock. Never raises: a failure is reported as a problem."""
        try:
            new = await asyncio.to_thread(load_library, self.config_path)
        except ProblemsFound as exc:
            return self._refuse(list(exc.problems))
        except Exception as exc:  # load_library reports problems only; this is a last guard
            log.debug("reload failed", exc_info=True)
            return self._refuse([self._fault("cannot reload", exc)])
        old = self.holder.current
        try:
            if new == old:
                self.holder.last_problems = []
                log.info("reload: no changes")
                return []
            await self.holder.replace(new)
            log.info("reloaded: %s", describe_change(old, new))
        except Exception as exc:  # a listener (e.g. the scheduler) failed to take the change
            log.debug("applying the reload failed", exc_info=True)
            problems = [self._fault("reloaded, but applying it failed", exc)]
            self.holder.last_problems = problems
            log.error("%s", problems[0])
            return problems
        return []

    def _fault(self, what: str, exc: BaseException) -> Problem:
        return Problem(str(self.config_path), 1, 1, f"{what} ({type(exc).__name__}: {exc})")

    def _refuse(self, problems: list[Problem]) -> list[Problem]:
        """Keep the last good library; log and remember the problems for /discuss sets."""
        self.holder.last_problems = problems
        log.error(
            "reload refused: %d problem%s; still running on the last good content",
            len(problems),
            "s" * (len(problems) != 1),
        )
        for problem in problems[:_LOGGED_PROBLEMS]:
            log.error("%s", problem)
        if len(problems) > _LOGGED_PROBLEMS:
            log.error("… and %d more problems", len(problems) - _LOGGED_PROBLEMS)
        return problems

    def watched_paths(self) -> tuple[Path, Path]:
        """(config directory, prompts directory) of the live library."""
        config_dir = self.config_path.resolve().parent
        prompts_dir = (config_dir / self.holder.current.config.prompts_dir).resolve()
        return config_dir, prompts_dir

    def _relevant(self, config_file: Path, prompts_dir: Path):
        def keep(_: Change, path: str) -> bool:
            p = Path(path)
            if p == config_file:
                return True
            return p.parent == prompts_dir and p.suffix == ".yaml"

        return keep

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Reload whenever the config file or a ``prompts/*.yaml`` file changes.

        Watches directories rather than files, because editors save by replacing the
        file. Restarts the watch when a reload moves ``prompts_dir``.
        """
        stop = stop or asyncio.Event()
        while not stop.is_set():
            paths: list[Path] = []
            try:
                config_file = self.config_path.resolve()
                config_dir, prompts_dir = self.watched_paths()
                paths = sorted({config_dir, prompts_dir})
                log.info("watching %s for changes", ", ".join(map(str, paths)))
                async for changes in awatch(
                    *paths,
                    watch_filter=self._relevant(config_file, prompts_dir),
                    debounce=self.debounce_ms,
                    stop_event=stop,
                    rust_timeout=self.poll_ms,
                    yield_on_timeout=True,
                    recursive=False,
                ):
                    self.ready.set()
                    if not changes:
                        continue
                    await self.reload()
                    if self.watched_paths() != (config_dir, prompts_dir):
                        break  # prompts_dir moved: watch the new place
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # watching must go on: a fault here never ends the bot
                shown = ", ".join(map(str, paths)) or str(self.config_path)
                log.error("cannot watch %s (%s); retrying in %gs", shown, exc, self.retry_s)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.retry_s)
                except TimeoutError:
                    pass
