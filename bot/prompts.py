"""Prompt sets: the articles, summaries and questions admins keep as YAML in ``prompts/``.

A prompt set is one file; its id is the file name without ``.yaml``. Prompt ids are
stable slugs: rounds store the prompt's text when posted, so renaming or editing a
prompt never rewrites history.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from bot.yamlsource import Problem, ProblemsFound, load_yaml

SLUG = r"^[a-z0-9][a-z0-9-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Origin(StrEnum):
    article = "article"  # quoted verbatim from the article
    ours = "ours"  # written by us, marked as ours


class Question(Strict):
    text: str = Field(min_length=3, description="The question. Article questions are verbatim.")
    origin: Origin = Field(description="'article' for the article's own words, 'ours' otherwise.")

    @field_validator("text")
    @classmethod
    def _strip(cls, v: str) -> str:
        return " ".join(v.split())


class Prompt(Strict):
    id: str = Field(pattern=SLUG, description="Stable slug; never reuse one for another article.")
    title: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Name of the publication or site.")
    url: HttpUrl | None = Field(default=None, description="Link to the article, if it has one.")
    summary: str = Field(min_length=1, description="2–4 sentences in our own words.")
    questions: list[Question] = Field(description="Asked in order; at least one.")
    tags: list[str] = Field(default_factory=list)

    @field_validator("summary")
    @classmethod
    def _fold(cls, v: str) -> str:
        return " ".join(v.split())

    @field_validator("questions")
    @classmethod
    def _some_questions(cls, v: list[Question]) -> list[Question]:
        if not v:
            raise ValueError("a prompt needs at least one question")
        return v


class PromptSet(Strict):
    """The file format of ``prompts/<set-id>.yaml``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"title": "Roundtable prompt set"},
    )
    title: str = Field(min_length=1)
    description: str = ""
    prompts: list[Prompt]

    @field_validator("prompts")
    @classmethod
    def _some_prompts(cls, v: list[Prompt]) -> list[Prompt]:
        if not v:
            raise ValueError("a prompt set needs at least one prompt")
        return v


class LoadedSet(BaseModel):
    """A validated prompt set together with the id derived from its file name."""

    model_config = ConfigDict(frozen=True)
    id: str
    path: str
    content: PromptSet

    @property
    def prompts(self) -> list[Prompt]:
        return self.content.prompts

    def prompt(self, prompt_id: str) -> Prompt | None:
        return next((p for p in self.prompts if p.id == prompt_id), None)


def load_prompt_sets(directory: Path, display_root: Path | None = None) -> dict[str, LoadedSet]:
    """Load every ``*.yaml`` in ``directory``; raise ProblemsFound listing all problems."""
    sets, problems, _ = collect_prompt_sets(directory, display_root)
    if problems:
        raise ProblemsFound(problems)
    return sets


def collect_prompt_sets(
    directory: Path, display_root: Path | None = None
) -> tuple[dict[str, LoadedSet], list[Problem], set[str]]:
    """Every valid set, every problem, and the ids of all set files (valid or not).

    Never raises: an unreadable folder or a file no validator foresaw is a problem too.
    """
    problems: list[Problem] = []
    sets: dict[str, LoadedSet] = {}
    seen_ids: dict[str, Problem] = {}
    try:
        if not directory.is_dir():
            what = "is not a directory" if directory.exists() else "does not exist"
            return sets, [Problem(str(directory), 1, 1, f"prompts directory {what}")], set()
        files = sorted(directory.glob("*.yaml"))
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        return sets, [Problem(str(directory), 1, 1, f"cannot read prompts directory: {why}")], set()
    for file in files:
        shown = _display(file, display_root)
        try:
            doc = load_yaml(file, shown)
        except ProblemsFound as exc:
            problems.extend(exc.problems)
            continue
        set_id = file.stem
        try:
            content = PromptSet.model_validate(doc.data)
        except ValidationError as exc:
            problems.extend(doc.problems_from(exc))
            continue
        except (RecursionError, MemoryError, OverflowError, OSError, TypeError) as exc:
            problems.append(
                doc.problem((), f"cannot validate this file ({type(exc).__name__}: {exc})")
            )
            continue
        for i, prompt in enumerate(content.prompts):
            where = doc.problem(("prompts", i, "id"), "")
            if prompt.id in seen_ids:
                first = seen_ids[prompt.id]
                problems.append(
                    doc.problem(
                        ("prompts", i, "id"),
                        f"duplicate prompt id '{prompt.id}' (first at {first.path}:{first.line})",
                    )
                )
            else:
                seen_ids[prompt.id] = where
        sets[set_id] = LoadedSet(id=set_id, path=shown, content=content)
    return sets, problems, {f.stem for f in files}


def _display(file: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return str(file.resolve().relative_to(root.resolve()))
        except (ValueError, OSError, RuntimeError):
            pass
    return str(file)
