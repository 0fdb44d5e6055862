"""``roundtable prompts draft``: turn an article into a prompt entry for an admin to review.

Everything here is extractive on purpose: the title, site and URL come from the page,
the article's own discussion questions are quoted verbatim, and the summary is a few
sentences picked from the text. Nothing is invented, and the output says it is a
draft. The admin rewrites the summary in our own words and, when the article asks no
questions, writes questions of ours.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import tempfile
import textwrap
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bot.prompts import SLUG, PromptSet, load_prompt_sets
from bot.yamlsource import ProblemsFound, parse_yaml

DEFAULT_TIMEOUT = 15.0  # seconds for the whole fetch
DEFAULT_MAX_BYTES = 5_000_000
HTML_TYPES = ("text/html", "application/xhtml+xml")
DRAFT_MARK = "DRAFT — review before use"


class DraftError(Exception):
    """A one-line reason why no draft could be made; nothing was written."""


class NothingAppended(DraftError):
    """A draft was made but not appended (it has no questions); ``entry`` holds it."""

    def __init__(self, message: str, entry: str = ""):
        super().__init__(message)
        self.entry = entry


@dataclass(frozen=True)
class Article:
    title: str
    text: str  # main text, one paragraph or list item per line
    site: str | None = None
    url: str | None = None
    origin: str = ""  # what the admin passed, for the draft's header comment


@dataclass(frozen=True)
class Draft:
    id: str
    title: str
    source: str
    source_known: bool
    url: str | None
    summary: str
    questions: list[str]
    tags: list[str] = field(default_factory=list)
    origin: str = ""


# ---- reading the source -----------------------------------------------------------------


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


async def read_source(
    source: str, *, fetch_timeout: float = DEFAULT_TIMEOUT, max_bytes: int = DEFAULT_MAX_BYTES
) -> Article:
    """Read a URL, an HTML file or a text file into an Article (raises DraftError)."""
    if is_url(source):
        body, final_url = await fetch(source, fetch_timeout=fetch_timeout, max_bytes=max_bytes)
        return article_from_html(body, url=final_url, origin=source)
    path = Path(source)
    try:
        raw = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise DraftError(f"cannot read {source}: {exc.strerror or exc}") from None
    head = raw[:2048].lstrip().lower()
    if path.suffix.lower() in (".html", ".htm", ".xhtml") or head.startswith(
        (b"<!doctype html", b"<html")
    ):
        return article_from_html(raw, url=None, origin=source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DraftError(f"{source} is not UTF-8 text or HTML") from None
    return article_from_text(text, origin=source)


async def fetch(url: str, *, fetch_timeout: float, max_bytes: int) -> tuple[bytes, str]:
    """GET an HTML page with a total timeout and a size limit; returns (body, final URL)."""
    client_timeout = aiohttp.ClientTimeout(total=fetch_timeout)
    headers = {"User-Agent": "Roundtable prompt drafter", "Accept": "text/html,*/*;q=0.5"}
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout, headers=headers) as session,
            session.get(url, allow_redirects=True, max_redirects=5) as resp,
        ):
            if resp.status >= 400:
                raise DraftError(f"fetching {url} failed: HTTP {resp.status} {resp.reason or ''}")
            if resp.content_type not in HTML_TYPES:
                raise DraftError(
                    f"{url} is not an HTML page (Content-Type: {resp.content_type or 'none'})"
                )
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise DraftError(f"{url} is larger than the {max_bytes:,}-byte limit")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                body += chunk
                if len(body) > max_bytes:
                    raise DraftError(f"{url} is larger than the {max_bytes:,}-byte limit")
            return bytes(body), str(resp.url)
    except TimeoutError:
        raise DraftError(f"fetching {url} timed out after {fetch_timeout:g}s") from None
    except aiohttp.ClientError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DraftError(f"fetching {url} failed: {reason}") from None


def article_from_html(html: bytes | str, *, url: str | None, origin: str) -> Article:
    import trafilatura  # heavy import, only needed for HTML

    doc = trafilatura.bare_extraction(
        html, url=url, with_metadata=True, include_comments=False, include_tables=False
    )
    text = (getattr(doc, "text", None) or "").strip() if doc is not None else ""
    if not _paragraphs(text):
        raise DraftError(f"no article text could be extracted from {origin}")
    title = (doc.title or "").strip() or _guess_title(text.splitlines()) or ""
    if not title:
        raise DraftError(f"no title could be found in {origin}")
    page_url = doc.url if doc.url and is_url(doc.url) else url
    site = (doc.sitename or doc.hostname or "").strip() or None
    return Article(title=title, text=text, site=site, url=page_url, origin=origin)


def article_from_text(text: str, *, origin: str) -> Article:
    lines = [line.strip() for line in text.splitlines()]
    title = _guess_title(lines)
    if not title or not _paragraphs(text):
        raise DraftError(f"no article text could be found in {origin}")
    return Article(title=title, text=text, site=None, url=None, origin=origin)


def _guess_title(lines: list[str]) -> str | None:
    """The first line that reads like a headline (skips stray symbols such as '×')."""
    for line in lines:
        line = line.strip()
        if len(line.split()) >= 2 and not line.endswith((".", "?", ":")):
            return line
    return None


# ---- the article's own questions --------------------------------------------------------

_BULLET = re.compile(r"^(?:[-–—•*·▪]|\(?\d{1,2}[.)])(?:\s+(.*))?$")
_QUESTION_HEADING = re.compile(
    r"discussion|questions?\b|talking points|to discuss|food for thought|reflect", re.I
)


@dataclass(frozen=True)
class _Line:
    text: str
    bullet: bool


def _lines(text: str) -> list[_Line]:
    """Non-blank lines with list bullets recognised; a lone bullet joins the next line."""
    out: list[_Line] = []
    pending_bullet = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _BULLET.match(line)
        if m and not (m.group(1) or "").strip():
            pending_bullet = True
            continue
        if m:
            out.append(_Line(m.group(1).strip(), True))
        else:
            out.append(_Line(line, pending_bullet))
        pending_bullet = False
    return out


def _single_question(line: str) -> bool:
    """A line that is one question (not a paragraph that happens to end with one)."""
    body = line.rstrip()
    return body.endswith("?") and not re.search(r"[.!?]\s+\S", body[:-1])


def find_questions(text: str) -> list[str]:
    """The article's own discussion questions, verbatim, or [] when it has none.

    Prefers the questions right after a heading such as "Discussion Points" or a lead-in
    like "...broader industry questions:"; otherwise the last run of two or more list
    items that are all questions.
    """
    lines = _lines(text)
    after_heading: list[list[str]] = []
    for i, line in enumerate(lines):
        is_heading = not line.bullet and (
            (len(line.text.split()) <= 6 and _QUESTION_HEADING.search(line.text))
            or (line.text.endswith(":") and re.search(r"question", line.text, re.I))
        )
        if not is_heading or i + 1 >= len(lines):
            continue
        kind = lines[i + 1].bullet
        group: list[str] = []
        for nxt in lines[i + 1 :]:
            if nxt.bullet != kind or not _single_question(nxt.text):
                break
            group.append(nxt.text)
        if group:
            after_heading.append(group)
    if after_heading:
        return after_heading[-1]
    runs: list[list[str]] = []
    run: list[str] = []
    for line in [*lines, _Line("", False)]:
        if line.bullet and _single_question(line.text):
            run.append(line.text)
            continue
        if len(run) >= 2:
            runs.append(run)
        run = []
    return runs[-1] if runs else []


# ---- summary and tags -------------------------------------------------------------------

_STOP = set(
    """
    a about above after again against all also although am an and any are as at be because
    been before being below between both but by can could did do does doing down during each
    even ever every few for from further had has have having he her here hers him his how
    however i if in into is it its itself just like made make many may me might more most
    much must my no nor not now of off often on once one only or other our ours out over own
    per rather really same say says said she should since so some such than that the their
    theirs them then there these they this those through thus to too under until up upon us
    very via was we well were what when where whether which while who whom why will with
    within without would yet you your new also recent recently reportedly according
    """.split()
)
_WORD = re.compile(r"[a-z0-9][a-z0-9’'-]*[a-z0-9]|[a-z]")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[A-Z“\"‘(0-9])")


def _words(text: str) -> list[str]:
    words = []
    for w in _WORD.findall(text.lower()):
        w = re.sub(r"[’']s$", "", w).replace("’", "").replace("'", "")
        if w and w not in _STOP and len(w) > 2 and not w.isdigit():
            words.append(w)
    return words


def _paragraphs(text: str, skip: set[str] | None = None) -> list[str]:
    """Lines that read like prose (enough words, ends like a sentence)."""
    skip = skip or set()
    out = []
    for line in _lines(text):
        body = line.text
        if body in skip or len(body.split()) < 10 or not body.endswith((".", "!", "”", '"')):
            continue
        out.append(body)
    return out


def summarize(article: Article, questions: list[str], *, max_sentences: int = 3) -> str:
    """2–4 sentences picked from the text: the most representative, in article order."""
    paragraphs = _paragraphs(article.text, skip={article.title, *questions})
    sentences: list[str] = []
    for para in paragraphs:
        for s in _SENTENCE_END.split(para):
            s = s.strip()
            if len(s.split()) >= 6 and not s.endswith("?") and "http" not in s:
                sentences.append(s)
    if not sentences:
        raise DraftError(f"no article text could be found in {article.origin}")
    freq = Counter(_words(" ".join(paragraphs)))

    def score(index: int) -> float:
        words = set(_words(sentences[index]))
        base = sum(freq[w] for w in words) / max(1.0, len(words)) ** 0.6
        return base * (1.4 if index == 0 else 1.0) / (1 + index / (4 * len(sentences)))

    ranked = sorted(range(len(sentences)), key=lambda i: (-score(i), i))
    chosen: list[int] = []
    total = 0
    for i in ranked:
        if len(chosen) >= max_sentences:
            break
        if chosen and len(chosen) >= 2 and total + len(sentences[i]) > 700:
            break
        chosen.append(i)
        total += len(sentences[i])
    return " ".join(sentences[i] for i in sorted(chosen))


def slugify(text: str, limit: int = 60) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    ascii_text = re.sub(r"['’]", "", ascii_text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    if len(slug) > limit:
        slug = slug[:limit].rsplit("-", 1)[0]
    return slug or "article"


def unique_id(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def suggest_tags(article: Article, known: list[str] | None = None, limit: int = 5) -> list[str]:
    """Tags already used in the prompt sets that the text mentions, then frequent phrases."""
    lowered = article.text.lower().replace("’", "'")
    tags: list[str] = []
    for tag in known or []:
        phrase = tag.replace("-", " ")
        if (phrase in lowered or tag in lowered) and tag not in tags:
            tags.append(tag)
    words = _words(article.text)
    pairs = Counter(f"{a}-{b}" for a, b in itertools.pairwise(words))
    singles = Counter(words)
    candidates = [(2 * n, p) for p, n in pairs.items() if n >= 2]
    candidates += [(n, w) for w, n in singles.items() if n >= 3 and len(w) > 3]
    for _, tag in sorted(candidates, key=lambda c: (-c[0], c[1])):
        if len(tags) >= limit:
            break
        if re.fullmatch(SLUG, tag) and not any(tag in t or t in tag for t in tags):
            tags.append(tag)
    return tags[:limit]


# ---- the draft --------------------------------------------------------------------------


def make_draft(
    article: Article, *, taken_ids: set[str] | None = None, known_tags: list[str] | None = None
) -> Draft:
    questions = find_questions(article.text)
    summary = summarize(article, questions)
    source = article.site or f"Unattributed ({Path(article.origin).name or article.origin})"
    return Draft(
        id=unique_id(slugify(article.title), taken_ids or set()),
        title=article.title,
        source=source,
        source_known=article.site is not None,
        url=article.url,
        summary=summary,
        questions=questions,
        tags=suggest_tags(article, known_tags),
        origin=article.origin,
    )


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(" ".join(text.split()), ensure_ascii=False)


def render_entry(draft: Draft, *, dash_col: int = 2, seq_offset: int = 2) -> str:
    """The prompt entry as YAML (one list item under ``prompts:``), with review comments.

    ``dash_col`` is the column of the entry's ``-``; ``seq_offset`` how far nested lists
    (questions) are indented under their key, so an appended entry matches the file.
    """
    pad = " " * dash_col
    key = pad + "  "
    qpad = key + " " * seq_offset
    lines = [
        f"{pad}# {DRAFT_MARK}: drafted by `roundtable prompts draft` from {draft.origin}",
        f"{pad}# The summary is copied from the article: rewrite it in our own words (2–4"
        " sentences).",
    ]
    if not draft.source_known:
        lines.append(f"{pad}# The text does not name its publication: fix `source` if you know it.")
    lines += [f"{pad}- id: {draft.id}", f"{key}title: {_q(draft.title)}"]
    lines.append(f"{key}source: {_q(draft.source)}")
    if draft.url:
        lines.append(f"{key}url: {_q(draft.url)}")
    lines.append(f"{key}summary: >")
    lines += [key + "  " + w for w in textwrap.wrap(draft.summary, 80 - len(key) - 2)]
    if draft.questions:
        lines.append(f"{key}questions:")
        for text in draft.questions:
            lines += [f"{qpad}- text: {_q(text)}", f"{qpad}  origin: article"]
    else:
        lines += [
            f"{key}# No discussion questions found in the article. Write 1–3 questions of ours",
            f"{key}# (origin: ours) before using this prompt; a prompt needs at least one.",
            f"{key}questions: []",
        ]
    tags = ", ".join(draft.tags)
    lines.append(f"{key}tags: [{tags}]")
    return "\n".join(lines) + "\n"


# ---- appending to a set -----------------------------------------------------------------


def _layout(text: str) -> tuple[int, int, int | None]:
    """(dash column of prompt items, nested list offset, line where ``prompts`` ends).

    Read with ruamel.yaml's round-trip loader, which keeps each node's position.
    """
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    data = YAML(typ="rt").load(text)
    if not isinstance(data, CommentedMap) or not isinstance(data.get("prompts"), CommentedSeq):
        raise DraftError("the file has no block list of `prompts:` to append to")
    prompts: CommentedSeq = data["prompts"]
    if prompts.fa.flow_style():
        raise DraftError("`prompts:` is written as a [flow] list; append the entry by hand")
    lines = text.splitlines()
    dash_col, seq_offset = 2, 2
    if prompts:
        item_line, item_col = prompts.lc.item(0)
        dash_col = lines[item_line].index("-")
        first = prompts[0]
        questions = first.get("questions") if isinstance(first, CommentedMap) else None
        if isinstance(questions, CommentedSeq) and questions and not questions.fa.flow_style():
            q_line, _ = questions.lc.item(0)
            seq_offset = max(0, lines[q_line].index("-") - (item_col))
    prompts_line = data.lc.key("prompts")[0]
    later = [data.lc.key(k)[0] for k in data if data.lc.key(k)[0] > prompts_line]
    end = min(later) if later else None
    if end is not None:  # keep comments that introduce the next key with that key
        while end > 0 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1
    return dash_col, seq_offset, end


def append_entry(path: Path, draft: Draft) -> str:
    """Insert the entry at the end of the set's prompts; the rest stays byte-identical.

    The result is validated as a prompt set (and for ids unique across the folder)
    before the file is replaced, atomically. Returns the new file text.
    """
    if not draft.questions:
        raise NothingAppended(
            f"the article has no discussion questions of its own, so nothing was appended to "
            f"{path}: write questions of ours (origin: ours) into the draft above and add it "
            "by hand",
            render_entry(draft),
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DraftError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        dash_col, seq_offset, end = _layout(text)
    except DraftError:
        raise
    except Exception as exc:  # ruamel's parse errors: report in one line
        raise DraftError(f"{path} is not valid YAML; run `roundtable validate` ({exc})") from None
    entry = render_entry(draft, dash_col=dash_col, seq_offset=seq_offset)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    cut = len(lines) if end is None else end
    before, after = lines[:cut], lines[cut:]
    sep = "" if not before or not before[-1].strip() else "\n"
    trail = "\n" if after else ""
    new_text = "".join(before) + sep + entry + trail + "".join(after)
    _check(path, new_text)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(new_text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return new_text


def _check(path: Path, new_text: str) -> None:
    """Refuse to write anything the bot would reject."""
    try:
        doc = parse_yaml(new_text, str(path))
        PromptSet.model_validate(doc.data)
    except ProblemsFound as exc:
        raise DraftError(f"the result would not validate: {exc.problems[0]}") from None
    except Exception as exc:
        reason = " ".join(str(exc).split())
        raise DraftError(f"the result would not validate: {reason}") from None


def folder_ids_and_tags(prompts_dir: Path) -> tuple[set[str], list[str]]:
    """Prompt ids and tags already used in a prompts folder (best effort if it is broken)."""
    try:
        sets = load_prompt_sets(prompts_dir)
    except ProblemsFound:
        return set(), []
    ids = {p.id for s in sets.values() for p in s.prompts}
    tags = sorted({t for s in sets.values() for p in s.prompts for t in p.tags})
    return ids, tags


def same_article(prompts_dir: Path, draft: Draft) -> str | None:
    """Where the folder already has this article (same URL, else same title), or None."""
    from bot.prompts import collect_prompt_sets

    sets, _, _ = collect_prompt_sets(prompts_dir)  # the readable sets, even if others are broken
    url, title = _url_key(draft.url), _title_key(draft.title)
    for loaded in sets.values():
        for prompt in loaded.prompts:
            if url and prompt.url is not None and _url_key(str(prompt.url)) == url:
                return f"{loaded.path} as '{prompt.id}' (same URL)"
            if title and _title_key(prompt.title) == title:
                return f"{loaded.path} as '{prompt.id}' (same title)"
    return None


def _url_key(url: str | None) -> str:
    if not url:
        return ""
    key = re.sub(r"^https?://(www\.)?", "", url.strip().lower()).split("#", 1)[0]
    return key.rstrip("/")


def _title_key(title: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", title).casefold().split())


async def draft_command(
    source: str,
    *,
    append: Path | None,
    prompts_dir: Path | None,
    fetch_timeout: float = DEFAULT_TIMEOUT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_duplicate: bool = False,
) -> tuple[str, str | None]:
    """Make the draft; append it when asked. Returns (entry text, appended file or None).

    Appending an article the folder already has is refused (it would be posted twice)
    unless ``allow_duplicate`` says it is meant.
    """
    article = await read_source(source, fetch_timeout=fetch_timeout, max_bytes=max_bytes)
    folder = append.parent if append is not None else prompts_dir
    taken, known = folder_ids_and_tags(folder) if folder and folder.is_dir() else (set(), [])
    draft = make_draft(article, taken_ids=taken, known_tags=known)
    entry = render_entry(draft)
    if append is None:
        return entry, None
    if not allow_duplicate and folder is not None and folder.is_dir():
        where = same_article(folder, draft)
        if where is not None:
            raise NothingAppended(
                f"this article is already in {where}, so nothing was appended to {append} "
                "(pass --allow-duplicate to append it anyway)",
                entry,
            )
    append_entry(append, draft)
    return entry, str(append)
