"""The admin-maintained content the bot runs on: config plus prompt sets, validated together.

``load_library`` is the single validation path used by ``validate``, ``run`` and live
reload, so what passes ``roundtable validate`` is exactly what the bot accepts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config, Schedule, load_config
from bot.prompts import LoadedSet, Prompt, load_prompt_sets
from bot.yamlsource import Problem, ProblemsFound


@dataclass(frozen=True)
class Library:
    config: Config
    config_path: Path
    prompt_sets: dict[str, LoadedSet]

    def set_for_channel(self, channel: str) -> LoadedSet | None:
        """The prompt set a channel draws from: its first schedule's, else the default."""
        for schedule in self.config.schedules_for(channel):
            return self.prompt_sets[schedule.prompt_set]
        if self.config.default_prompt_set:
            return self.prompt_sets[self.config.default_prompt_set]
        if self.prompt_sets:
            return self.prompt_sets[sorted(self.prompt_sets)[0]]
        return None

    def schedule_for_channel(self, channel: str) -> Schedule | None:
        schedules = self.config.schedules_for(channel)
        return schedules[0] if schedules else None

    def find_prompt(self, prompt_id: str) -> tuple[LoadedSet, Prompt] | None:
        for loaded in self.prompt_sets.values():
            prompt = loaded.prompt(prompt_id)
            if prompt is not None:
                return loaded, prompt
        return None

    def all_prompt_ids(self) -> list[str]:
        return [p.id for s in self.prompt_sets.values() for p in s.prompts]

    def summary(self) -> str:
        n_prompts = sum(len(s.prompts) for s in self.prompt_sets.values())
        n_sets, n_sched = len(self.prompt_sets), len(self.config.schedules)
        return (
            f"{n_sets} prompt set{'s' * (n_sets != 1)}, {n_prompts} prompt{'s' * (n_prompts != 1)}, "
            f"{n_sched} schedule{'s' * (n_sched != 1)}"
        )


def load_library(config_path: Path) -> Library:
    """Load the config and every prompt set it points at; raise ProblemsFound with all problems."""
    problems: list[Problem] = []
    shown = str(config_path)
    try:
        config, doc = load_config(config_path, shown)
    except ProblemsFound as exc:
        raise ProblemsFound(exc.problems) from None
    prompts_dir = (config_path.parent / config.prompts_dir).resolve()
    try:
        sets = load_prompt_sets(prompts_dir, display_root=Path.cwd())
    except ProblemsFound as exc:
        problems.extend(exc.problems)
        sets = {}
    else:
        if not sets:
            problems.append(
                doc.problem(("prompts_dir",), f"no prompt sets (*.yaml) found in {prompts_dir}")
            )
    if not problems:
        known = ", ".join(sorted(sets)) or "none"
        for i, schedule in enumerate(config.schedules):
            if schedule.prompt_set not in sets:
                problems.append(
                    doc.problem(
                        ("schedules", i, "prompt_set"),
                        f"unknown prompt set '{schedule.prompt_set}' (known: {known})",
                    )
                )
        if config.default_prompt_set and config.default_prompt_set not in sets:
            problems.append(
                doc.problem(
                    ("default_prompt_set",),
                    f"unknown prompt set '{config.default_prompt_set}' (known: {known})",
                )
            )
    if problems:
        raise ProblemsFound(problems)
    return Library(config=config, config_path=config_path, prompt_sets=sets)


Listener = Callable[[Library, Library], Awaitable[None]]


class LibraryHolder:
    """Holds the live library; a reload swaps it in one assignment, never half-applied.

    Components that derive state from the library (the scheduler's jobs) subscribe and
    are told (old, new) after each swap.
    """

    def __init__(self, library: Library):
        self._library = library
        self.last_problems: list[Problem] = []
        self._listeners: list[Listener] = []

    @property
    def current(self) -> Library:
        return self._library

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def replace(self, library: Library) -> None:
        old, self._library = self._library, library
        self.last_problems = []
        for listener in self._listeners:
            await listener(old, library)

    def __call__(self) -> Library:
        return self._library
