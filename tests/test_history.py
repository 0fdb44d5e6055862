"""History survives prompt edits, renames and removals; ``roundtable history`` never says who."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot import cli
from bot.history import format_rows, history
from bot.reload import Reloader
from tests.support import MINI_SET, make_chat, write_library

# alpha renamed to alpha-v2 (and retitled), beta removed
EDITED_SET = MINI_SET.replace(
    "id: alpha\n    title: Alpha article", "id: alpha-v2\n    title: Alpha, revised"
).replace(
    """  - id: beta
    title: Beta article
    source: Example
    summary: Beta is about other things.
    questions:
      - {text: "What is beta?", origin: ours}
""",
    "",
)


async def test_renaming_and_removing_used_prompts_keeps_history(tmp_path, sqlite_url):
    config = write_library(tmp_path)
    chat = await make_chat(config, sqlite_url)
    try:
        await chat.say("/discuss now")  # alpha
        await chat.say("1: named thought", who="bob")
        await chat.say("/discuss answer --anonymous quiet thought", who="carol")
        await chat.say("/discuss now")  # closes alpha (digest), opens beta
        beta_round = chat.platform.rounds()[-1].round_id

        assert "beta" not in EDITED_SET and "alpha-v2" in EDITED_SET
        (tmp_path / "prompts" / "mini.yaml").write_text(EDITED_SET, encoding="utf-8")
        assert await Reloader(chat.library, config).reload() == []
        assert chat.library.current.find_prompt("alpha") is None

        # the open round of a removed prompt still takes answers and closes with its text
        assert "Saved" in await chat.say("beta answer", who="dave")
        await chat.say("/discuss close")
        digest = chat.platform.summaries()[-1]
        assert digest.round_id == beta_round and digest.title == "Beta article"
        assert [g.question for g in digest.groups] == ["Other thoughts"]

        rows = await history(chat.store)
        assert [(r.prompt_id, r.title, r.respondents) for r in rows] == [
            ("alpha", "Alpha article", 2),
            ("beta", "Beta article", 1),
        ]
        alpha_round = await chat.store.get_round(chat.platform.rounds()[0].round_id)
        again = await chat.dispatcher.service.summary(alpha_round, final=True)
        assert again.title == "Alpha article"
        assert again.groups[0].question == "What is alpha?"

        text = format_rows(rows, ZoneInfo("Europe/Berlin"))
        assert "“Alpha article”  2 people answered" in text
        assert "“Beta article”  1 person answered" in text
        for name in ("bob", "Bob", "carol", "Carol", "dave", "Dave"):
            assert name not in text
        assert "Alpha, revised" in await chat.say("/discuss next")
    finally:
        await chat.store.close()


def test_history_command_filters_by_channel_and_date(tmp_path, monkeypatch, capsys):
    config = write_library(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"

    async def fill() -> None:
        chat = await make_chat(config, url, start=datetime(2026, 11, 2, 9, 0, tzinfo=UTC))
        try:
            await chat.say("/discuss now")
            await chat.say("an answer", who="bob")
            chat.clock.advance(timedelta(days=7))
            await chat.say("/discuss now")
            chat.channel = "console:other"
            await chat.say("/discuss now")
        finally:
            await chat.store.close()

    asyncio.run(fill())
    monkeypatch.setenv("ROUNDTABLE_DATABASE_URL", url)

    assert cli.main(["--config", str(config), "history"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("2026-11-02 09:00 UTC  console:general  alpha  “Alpha article”")
    assert lines[0].endswith("1 person answered")
    assert "bob" not in "\n".join(lines).lower()

    assert cli.main(["--config", str(config), "history", "--since", "2026-11-05"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2

    assert (
        cli.main(
            [
                "--config",
                str(config),
                "history",
                "--channel",
                "console:general",
                "--since",
                "2026-11-05",
            ]
        )
        == 0
    )
    only = capsys.readouterr().out.strip().splitlines()
    assert len(only) == 1 and "console:general  beta" in only[0] and "still open" in only[0]

    assert cli.main(["--config", str(config), "history", "--since", "soon"]) == 2
    assert "not a date" in capsys.readouterr().err
