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

    async def reload(self) -> list[Problem]:
        """Validate the files on disk; apply them if valid. Returns the problems ([] = ok)."""
        async with self._lock:  # a forced reload and a file event never interleave
            try:
                return await self._reload()
            finally:
                self.attempts += 1
                self.attempted.set()

    async def _reload(self) -> list[Problem]:
        """One attempt, under the lock."""
        try:
            new = await asyncio.to_thread(load_library, self.config_path)
        except ProblemsFound as exc:
            self.holder.last_problems = list(exc.problems)
            log.error(
                "reload refused: %d problem%s; still running on the last good content",
                len(exc.problems),
                "s" * (len(exc.problems) != 1),
            )
            for problem in exc.problems:
                log.error("%s", problem)
            return list(exc.problems)
        old = self.holder.current
        if new == old:
            self.holder.last_problems = []
            log.info("reload: no changes")
            return []
        await self.holder.replace(new)
        log.info("reloaded: %s", describe_change(old, new))
        return []

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
        config_file = self.config_path.resolve()
        while not stop.is_set():
            config_dir, prompts_dir = self.watched_paths()
            paths = sorted({config_dir, prompts_dir})
            log.info("watching %s for changes", ", ".join(map(str, paths)))
            try:
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
            except (FileNotFoundError, OSError) as exc:
                log.error("cannot watch %s (%s); retrying in 5s", paths, exc)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=5)
                except TimeoutError:
                    pass
