"""The admin-maintained content the bot runs on: config plus prompt sets, validated together.

``load_library`` is the single validation path used by ``validate``, ``run`` and live
reload, so what passes ``roundtable validate`` is exactly what the bot accepts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bot.config import Config, Schedule, check_path_text, validate_config
from bot.prompts import LoadedSet, Prompt, collect_prompt_sets
from bot.yamlsource import Problem, ProblemsFound, SourceDoc, load_yaml

log = logging.getLogger(__name__)


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
    """Load the config and every prompt set it points at; raise ProblemsFound with all problems.

    Nothing else ever escapes: whatever is in the files, the answer is a library or a
    list of ``path:line:col: message`` problems (validate, run and live reload rely on it).
    """
    try:
        return _load_library(config_path)
    except ProblemsFound:
        raise
    except Exception as exc:  # a fault nobody foresaw is still reported like a problem
        log.debug("loading %s failed", config_path, exc_info=True)
        raise ProblemsFound(
            [Problem(str(config_path), 1, 1, f"cannot load ({type(exc).__name__}: {exc})")]
        ) from None


def _load_library(config_path: Path) -> Library:
    problems: list[Problem] = []
    shown = str(config_path)
    doc: SourceDoc | None = None
    config: Config | None = None
    try:
        doc = load_yaml(config_path, shown)
        config, _ = validate_config(doc)
    except ProblemsFound as exc:
        problems.extend(exc.problems)
    # A broken config must not hide broken prompt sets: check them at the folder the
    # config names (if that much can be read), else at the default folder.
    prompts_dir_text = config.prompts_dir if config else _raw_prompts_dir(doc)
    try:
        prompts_dir = (config_path.parent / prompts_dir_text).resolve()
        if config is None and not prompts_dir.is_dir():
            raise ProblemsFound(problems)  # nothing more to check without a config
    except (OSError, ValueError, RuntimeError) as exc:
        if config is None:  # the config's own problem says enough
            raise ProblemsFound(problems) from None
        why = getattr(exc, "strerror", None) or str(exc)
        where = doc.problem(("prompts_dir",), "") if doc else Problem(shown, 1, 1, "")
        problems.append(
            Problem(where.path, where.line, where.col, f"prompts_dir: cannot use this path: {why}")
        )
        raise ProblemsFound(problems) from None
    sets, set_problems, set_ids = collect_prompt_sets(prompts_dir, display_root=Path.cwd())
    problems.extend(set_problems)
    if config is not None and doc is not None and not set_ids:
        if not set_problems:
            problems.append(
                doc.problem(("prompts_dir",), f"no prompt sets (*.yaml) found in {prompts_dir}")
            )
    elif config is not None and doc is not None:  # names are checked once there are sets
        known = ", ".join(sorted(set_ids)) or "none"
        for i, schedule in enumerate(config.schedules):
            if schedule.prompt_set not in set_ids:
                problems.append(
                    doc.problem(
                        ("schedules", i, "prompt_set"),
                        f"unknown prompt set '{schedule.prompt_set}' (known: {known})",
                    )
                )
        if config.default_prompt_set and config.default_prompt_set not in set_ids:
            problems.append(
                doc.problem(
                    ("default_prompt_set",),
                    f"unknown prompt set '{config.default_prompt_set}' (known: {known})",
                )
            )
    if problems or config is None:
        raise ProblemsFound(problems)
    return Library(config=config, config_path=config_path, prompt_sets=sets)


def _raw_prompts_dir(doc: SourceDoc | None) -> str:
    """``prompts_dir`` from a config that failed validation, if it is usable text."""
    default = Config.model_fields["prompts_dir"].default
    data = doc.data if doc is not None else None
    value = data.get("prompts_dir") if isinstance(data, dict) else None
    if not isinstance(value, str):
        return default
    try:
        return check_path_text(value)
    except ValueError:
        return default


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
