"""The answer form the "Share your thoughts" button opens (a modal of Labels with Text
Inputs, Components reference): laid out from a round's questions, read back when
submitted.

``import discord`` below is the discord.py library (absolute import), not this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord

from bot.adapters.discord.embeds import chunks, escape, shorten
from bot.core import commands as core_commands

# Modal components (Components reference → Label, Text Display, Text Input)
MODAL_SLOTS = 5  # top-level components per modal (Label, TextDisplay)
LABEL_LIMIT, LABEL_DESCRIPTION_LIMIT, TEXT_DISPLAY_LIMIT, MODAL_TITLE_LIMIT = 45, 100, 4000, 45
ANSWER_LIMIT = 4000  # a Text Input's max_length


@dataclass(frozen=True)
class FormInput:
    """One text box of the form: the questions it answers, its label and description."""

    custom_id: str
    numbers: tuple[int, ...]
    label: str
    description: str


@dataclass(frozen=True)
class FormLayout:
    """What the form shows: the questions in full (when a label cannot hold them), the
    text boxes, and whether it offers the "anonymously" checkbox."""

    questions_text: tuple[str, ...]
    inputs: tuple[FormInput, ...]
    anonymous_box: bool


def form_layout(questions: tuple[tuple[str, str], ...], anonymous_allowed: bool) -> FormLayout:
    """Fit the questions into a modal's five components, showing each question in full.

    Short questions (and up to five components in all) get a labelled box each, the
    question as the label's description. Otherwise a Text Display lists every question
    in full first; questions then get a box each while boxes remain, and the last box
    takes the rest, each answer starting with its question's number.
    """
    n = len(questions)
    checkbox = 1 if anonymous_allowed else 0
    texts = [text for text, _ in questions]
    listed: list[str] = []
    fits = all(len(t) <= LABEL_DESCRIPTION_LIMIT for t in texts)
    if not fits or n + checkbox > MODAL_SLOTS:
        lines = "\n".join(f"**{i}.** {escape(t)}" for i, t in enumerate(texts, 1))
        listed = chunks(lines, TEXT_DISPLAY_LIMIT)[: MODAL_SLOTS - checkbox - 1]
    boxes = max(1, MODAL_SLOTS - checkbox - len(listed))
    inputs: list[FormInput] = []
    own = n if n <= boxes else boxes - 1
    for i in range(1, own + 1):
        # in full, or (when listed in full above) its beginning, to tell the boxes apart
        description = shorten(texts[i - 1], LABEL_DESCRIPTION_LIMIT)
        inputs.append(FormInput(f"q{i}", (i,), f"Question {i}", description))
    if own < n:
        first = own + 1
        inputs.append(
            FormInput(
                "rest",
                tuple(range(first, n + 1)),
                f"Questions {first}–{n}",
                shorten(
                    f'Start each answer on a new line with its number, e.g. "{n}: …"; '
                    f"text before any number answers {first}",
                    LABEL_DESCRIPTION_LIMIT,
                ),
            )
        )
    return FormLayout(tuple(listed), tuple(inputs), bool(checkbox))


def form_items(layout: FormLayout, anonymous: bool) -> list[discord.ui.Item]:
    """The modal's components (discord.py 2.6+: Label, TextDisplay; 2.7: Checkbox)."""
    items: list[discord.ui.Item] = [discord.ui.TextDisplay(text) for text in layout.questions_text]
    for box in layout.inputs:
        field = discord.ui.TextInput(
            custom_id=box.custom_id,
            style=discord.TextStyle.paragraph,
            required=False,
            max_length=ANSWER_LIMIT,
        )
        items.append(discord.ui.Label(text=box.label, description=box.description, component=field))
    if layout.anonymous_box:
        items.append(
            discord.ui.Label(
                text="Share anonymously",
                description="Your name is not stored with these answers; nobody can see it was you.",
                component=discord.ui.Checkbox(custom_id="anonymous", default=anonymous),
            )
        )
    return items


def split_rest(text: str, first: int, last: int) -> dict[int, str]:
    """The shared box: a line starting with "N:" (first ≤ N ≤ last) starts the answer to
    question N; every other line, blank lines and paragraphs included, stays with the
    answer above it (text before any number answers ``first``)."""
    parts: dict[int, list[str]] = {}
    current = first
    for line in text.split("\n"):
        number, rest = core_commands.split_numbered(line)
        if number is not None and first <= number <= last:
            current = number
            if parts.get(current):
                parts[current].append("")
            parts.setdefault(current, []).append(rest)
        else:
            parts.setdefault(current, []).append(line)
    joined = {n: "\n".join(lines).strip() for n, lines in parts.items()}
    return {n: t for n, t in sorted(joined.items()) if t}


def parse_form(components: list[dict], n_questions: int) -> tuple[dict[int, str], bool | None]:
    """Submitted modal components → (answers keyed by question number, the checkbox).

    The checkbox is None when the form had none. Accepts Label-wrapped inputs and the
    older Action Rows alike (a form opened before an upgrade is still saved).
    """
    values: dict[str, Any] = {}

    def walk(items: list[dict]) -> None:
        for item in items:
            if "components" in item:
                walk(item["components"])
            elif "component" in item:  # a Label (type 18)
                walk([item["component"]])
            elif "custom_id" in item:
                values[item["custom_id"]] = item.get("value")

    walk(components)
    answers: dict[int, str] = {}
    for key, value in values.items():
        if key.startswith("q") and key[1:].isdigit() and isinstance(value, str) and value.strip():
            answers[int(key[1:])] = value
    rest = values.get("rest")
    if isinstance(rest, str) and rest.strip():
        # the shared box takes the questions after the last box of their own
        first = (
            max((int(k[1:]) for k in values if k.startswith("q") and k[1:].isdigit()), default=0)
            + 1
        )
        for number, text in split_rest(rest, first, n_questions).items():
            answers[number] = (answers[number] + "\n\n" + text) if number in answers else text
    anonymous = values.get("anonymous")
    return answers, (bool(anonymous) if anonymous is not None else None)
