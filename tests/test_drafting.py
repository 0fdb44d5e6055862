"""``roundtable prompts draft``: seed articles, a loopback web server, and ``--append``."""

from __future__ import annotations

import asyncio
import re
import shutil
import textwrap
from pathlib import Path

import pytest
import yaml
from aiohttp import web

from bot import cli
from bot.drafting import (
    DRAFT_MARK,
    DraftError,
    NothingAppended,
    append_entry,
    draft_command,
    make_draft,
    read_source,
    render_entry,
)
from bot.library import load_library
from bot.prompts import Prompt, PromptSet
from tests.loopback import serve_loopback
from tests.support import write_library

FIXTURES = Path(__file__).parent / "fixtures"
SEEDS = FIXTURES / "seeds"
SEED = {n: next(SEEDS.glob(f"{n}_*.txt")) for n in ("000", "001", "002", "003")}

# The articles' own closing questions, character for character.
EXPECTED = {
    "000": [
        "How can organizations cultivate a performance-driven culture without compromising "
        "psychological safety and creativity?",
        "Is Meta’s aggressive recruitment from rival labs a viable long-term strategy, or does "
        "it risk creating resentment and organizational fragmentation?",
        "What actionable steps can leadership take to repair or rebuild a healthier, more "
        "supportive research environment?",
    ],
    "001": [
        "How can technology companies foster a culture of accountability without stifling "
        "innovation or risking employee burnout?",
        "Is the strategy of rapid hiring from competitors sustainable, or does it breed "
        "internal tension and confusion?",
        "What organizational improvements can be implemented to nurture a healthy, creative "
        "environment amid high expectations and rapid growth?",
    ],
}


def _fold(text: str) -> str:
    return " ".join(text.split())


def _entry(text: str) -> dict:
    data = yaml.safe_load(text)
    assert isinstance(data, list) and len(data) == 1
    return data[0]


@pytest.mark.parametrize("seed", ["000", "001"])
async def test_articles_with_questions_quote_exactly_those(seed):
    article = await read_source(str(SEED[seed]))
    draft = make_draft(article)
    assert draft.questions == EXPECTED[seed]
    for question in draft.questions:  # verbatim: each is a line of the article
        assert question in SEED[seed].read_text(encoding="utf-8")
    text = render_entry(draft)
    assert DRAFT_MARK in text
    entry = _entry(text)
    assert [q["text"] for q in entry["questions"]] == EXPECTED[seed]
    assert {q["origin"] for q in entry["questions"]} == {"article"}
    Prompt.model_validate(entry)  # the printed entry is valid prompt-set content


@pytest.mark.parametrize("seed", ["002", "003"])
async def test_articles_without_questions_get_none_and_the_draft_says_so(seed, tmp_path):
    draft = make_draft(await read_source(str(SEED[seed])))
    assert draft.questions == []
    text = render_entry(draft)
    assert "No discussion questions found in the article" in text
    assert "origin: article" not in text
    assert _entry(text)["questions"] == []
    target = tmp_path / "set.yaml"
    shutil.copy(FIXTURES / "commented-set.yaml", target)
    before = target.read_bytes()
    with pytest.raises(NothingAppended) as caught:
        append_entry(target, draft)
    assert "no discussion questions" in str(caught.value)
    assert caught.value.entry == text
    assert target.read_bytes() == before


@pytest.mark.parametrize("seed", ["000", "001", "002", "003"])
async def test_summary_is_two_to_four_sentences_taken_from_the_text(seed):
    article = await read_source(str(SEED[seed]))
    draft = make_draft(article)
    sentences = re.split(r"(?<=[.!?])[”\"’)]?\s+(?=[A-Z“\"‘(0-9])", draft.summary)
    assert 2 <= len(sentences) <= 4
    source = _fold(SEED[seed].read_text(encoding="utf-8"))
    for sentence in sentences:
        assert _fold(sentence) in source
    assert draft.title == SEED[seed].read_text(encoding="utf-8").strip("×\n").splitlines()[0]
    assert draft.url is None  # a text file names no URL of its own; none is invented
    assert draft.source.startswith("Unattributed")


async def test_tags_prefer_ones_already_in_use():
    draft = make_draft(
        await read_source(str(SEED["000"])),
        known_tags=["psychological-safety", "talent-poaching", "hackathons"],
    )
    assert draft.tags[:2] == ["psychological-safety", "talent-poaching"]
    assert "hackathons" not in draft.tags


async def test_id_is_a_unique_slug_of_the_title():
    article = await read_source(str(SEED["002"]))
    assert make_draft(article).id == "10-shocking-failures-of-meta-platforms-ai-strategy"
    taken = {"10-shocking-failures-of-meta-platforms-ai-strategy"}
    assert make_draft(article, taken_ids=taken).id.endswith("-2")


# ---- --append ---------------------------------------------------------------------------


def test_append_keeps_comments_and_formatting_and_validates(tmp_path, capsys):
    config = write_library(tmp_path, sets={})
    target = tmp_path / "prompts" / "reading.yaml"
    shutil.copy(FIXTURES / "commented-set.yaml", target)
    config.write_text("prompts_dir: ../prompts\ndefault_prompt_set: reading\n", encoding="utf-8")
    original = target.read_text(encoding="utf-8")

    code = cli.main(
        ["--config", str(config), "prompts", "draft", str(SEED["000"]), "--append", str(target)]
    )
    assert code == 0
    out = capsys.readouterr()
    assert "Appended to" in out.err
    new = target.read_text(encoding="utf-8")
    # everything up to the end of the prompts list is byte-identical, comments included
    head, tail = original.split("\n# Notes for whoever", 1)
    assert new.startswith(head)
    assert new.endswith("# Notes for whoever" + tail)
    assert "source: Example Engineering Blog   # trailing comment kept" in new
    assert DRAFT_MARK in new

    library = load_library(config)  # exactly what `roundtable validate` runs
    ids = [p.id for p in library.prompt_sets["reading"].prompts]
    assert ids == [
        "blameless-postmortems",
        "the-impact-of-a-toxic-culture-on-big-techs-ai-research",
    ]
    added = library.prompt_sets["reading"].prompts[1]
    assert [q.text for q in added.questions] == EXPECTED["000"]
    assert library.prompt_sets["reading"].content.description.startswith("Short reads")
    assert cli.main(["--config", str(config), "validate"]) == 0

    # the same article again is refused: it would be posted twice
    again_args = ["--config", str(config), "prompts", "draft", str(SEED["000"])]
    assert cli.main([*again_args, "--append", str(target)]) == 1
    out = capsys.readouterr()
    assert out.err.count("\n") == 1 and "already in" in out.err and "(same title)" in out.err
    assert target.read_text(encoding="utf-8") == new
    # unless it is meant: then it gets a fresh id, so the file still validates
    assert cli.main([*again_args, "--append", str(target), "--allow-duplicate"]) == 0
    again = load_library(config).prompt_sets["reading"].prompts
    assert again[-1].id == "the-impact-of-a-toxic-culture-on-big-techs-ai-research-2"


def test_append_matches_the_files_indentation(tmp_path):
    target = tmp_path / "flat.yaml"
    target.write_text(
        textwrap.dedent(
            """\
            title: Flat style
            prompts:
            - id: one
              title: One
              source: Somewhere
              summary: One thing.
              questions:
              - text: "Why one?"
                origin: ours
            """
        ),
        encoding="utf-8",
    )
    original = target.read_text(encoding="utf-8")
    draft = make_draft(asyncio.run(read_source(str(SEED["001"]))))
    new = append_entry(target, draft)
    assert new.startswith(original)
    added = new[len(original) :]
    assert "\n- id: former-meta" in added
    assert '\n  questions:\n  - text: "How can technology' in added  # no extra indent
    content = PromptSet.model_validate(yaml.safe_load(new))
    assert [q.text for q in content.prompts[1].questions] == EXPECTED["001"]


def test_cli_refuses_to_append_without_questions(tmp_path, capsys):
    target = tmp_path / "set.yaml"
    shutil.copy(FIXTURES / "commented-set.yaml", target)
    before = target.read_bytes()
    code = cli.main(["prompts", "draft", str(SEED["003"]), "--append", str(target)])
    out = capsys.readouterr()
    assert code == 1
    assert "No discussion questions found" in out.out  # the draft is still shown
    assert out.err.count("\n") == 1 and "nothing was appended" in out.err
    assert target.read_bytes() == before


# ---- URLs, over real HTTP on 127.0.0.1 ----------------------------------------------------

PAGE = """<!doctype html><html><head><title>Why Small Teams Ship | Loopback Weekly</title>
<meta property="og:site_name" content="Loopback Weekly">
<meta property="og:title" content="Why Small Teams Ship"></head><body>
<nav><a href="/">Home</a> <a href="/about">About us</a></nav>
<article><h1>Why Small Teams Ship</h1>
<p>Small teams ship more often because every person can see the whole system at once.
The author followed five teams for a year and counted how often they released.</p>
<p>The smallest teams released weekly, while the largest released every two months and
spent most of their time coordinating work across groups.</p>
<p>Teams that split when they grew kept their pace, as long as each new team owned a
clear part of the product from end to end.</p>
<h2>Questions for discussion</h2>
<ul><li>Which part of our work needs the most coordination today?</li>
<li>If we split into two teams tomorrow, where would the line go?</li></ul>
</article><footer>© 2026 Loopback Weekly. Leave a Reply</footer></body></html>"""


@pytest.fixture
async def site():
    """A real aiohttp server on 127.0.0.1 with an article, a 404, a stall and a PDF."""
    never = asyncio.Event()

    async def article(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html", charset="utf-8")

    async def stall(_: web.Request) -> web.Response:
        await never.wait()  # released at teardown; the client gives up first
        return web.Response(text="late")

    async def pdf(_: web.Request) -> web.Response:
        return web.Response(body=b"%PDF-1.4 ...", content_type="application/pdf")

    async def empty(_: web.Request) -> web.Response:
        return web.Response(
            text="<html><body><nav>Home</nav></body></html>", content_type="text/html"
        )

    async def huge(_: web.Request) -> web.Response:
        return web.Response(text="<p>" + "word " * 50_000 + "</p>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/article", article)
    app.router.add_get("/stall", stall)
    app.router.add_get("/file.pdf", pdf)
    app.router.add_get("/empty", empty)
    app.router.add_get("/huge", huge)
    runner, port = await serve_loopback(app, shutdown_timeout=0.1)
    yield f"http://127.0.0.1:{port}"
    never.set()
    await runner.cleanup()


async def test_url_page_is_drafted_with_title_site_url_and_questions(site):
    entry_text, appended = await draft_command(f"{site}/article", append=None, prompts_dir=None)
    assert appended is None
    entry = _entry(entry_text)
    prompt = Prompt.model_validate(entry)
    assert prompt.title == "Why Small Teams Ship"
    assert prompt.source == "Loopback Weekly"
    assert str(prompt.url) == f"{site}/article"
    assert [q.text for q in prompt.questions] == [
        "Which part of our work needs the most coordination today?",
        "If we split into two teams tomorrow, where would the line go?",
    ]
    assert "Small teams ship more often" in prompt.summary


async def test_url_appends_to_a_set(site, tmp_path):
    target = tmp_path / "set.yaml"
    shutil.copy(FIXTURES / "commented-set.yaml", target)
    await draft_command(f"{site}/article", append=target, prompts_dir=None)
    content = PromptSet.model_validate(yaml.safe_load(target.read_text(encoding="utf-8")))
    assert content.prompts[-1].id == "why-small-teams-ship"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/missing", "HTTP 404"),
        ("/stall", "timed out after 0.3s"),
        ("/file.pdf", "not an HTML page (Content-Type: application/pdf)"),
        ("/empty", "no article text could be extracted"),
        ("/huge", "larger than the 10,000-byte limit"),
    ],
)
async def test_url_failures_are_one_clear_line_and_write_nothing(site, tmp_path, path, expected):
    target = tmp_path / "set.yaml"
    shutil.copy(FIXTURES / "commented-set.yaml", target)
    before = target.read_bytes()
    with pytest.raises(DraftError) as caught:
        await draft_command(
            f"{site}{path}", append=target, prompts_dir=None, fetch_timeout=0.3, max_bytes=10_000
        )
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert target.read_bytes() == before


async def test_unreachable_url_is_a_clear_error(tmp_path):
    # a port nothing listens on: bind one, close it, then connect to it
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(DraftError, match=r"fetching .* failed"):
        await draft_command(f"http://127.0.0.1:{port}/x", append=None, prompts_dir=None)
