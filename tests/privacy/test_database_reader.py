"""Someone with a copy of the database tries to link anonymous answers to people.

Several people answer anonymously; then every table and the raw files are dumped (SQLite:
the database file, ``-wal`` and ``-shm``; PostgreSQL: the table and index files under
the server's data directory after a CHECKPOINT, every WAL segment in ``pg_wal``, and
``pg_dump`` output), once with the round open and once after close. The reader tries
every link there is:

* stored ids: any author id of an anonymous answer anywhere in the bytes;
* keyed hashes: ``HMAC(window, person)`` for every 32-byte window of the table dump and
  table files as the key and every person of the workspace, compared with every
  hash-shaped string in the bytes; tags are sealed under the round key, so they open
  only with it: the plain key is checked to be nowhere in the bytes (WAL included), and
  a positive control shows the plain key does open the tags and link every author;
* with the server secret too: every sealed-key-shaped blob opened with it, then the
  same searches;
* grouping by author: every tag-shaped string in the bytes (the old 64-hex pseudonyms
  and today's tags), paired with the answer stored right after it (a row keeps its tag
  next to its text in live rows, old row versions, WAL records, ``pg_dump`` and SQLite
  pages); a tag found next to two different answers groups them. A control groups the
  same bytes correctly once the tags are opened with the round key.

Answer texts and people carry a per-run token, so other tests writing to the same
PostgreSQL server (its WAL is shared) cannot disturb the counts.

Promise (docs/privacy.md): 0 links and 0 groups without the secret, open or closed;
with the secret, only while the round is open; after close 0 even with the secret on
SQLite.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.anonymity import Keyring, KeyUnavailable, RoundTags, load_keyring
from tests.support import make_chat

RUN = uuid.uuid4().hex[:10]  # other tests share PostgreSQL's WAL: our bytes are marked
PEOPLE = [f"quiet{RUN}p{i}" for i in range(1, 6)]  # answer anonymously only
NAMED = ["nina", "otto"]  # answer with their names
WORKSPACE = [f"console:{p}" for p in [*PEOPLE, *NAMED, "admin", "zed"]]
ANSWERS = {
    PEOPLE[0]: ["I am scared of the reorg", "2 we never finish anything"],
    PEOPLE[1]: ["my manager interrupts me"],
    PEOPLE[2]: ["1 alpha is overrated", "2 I would quit if I could"],
    PEOPLE[3]: ["the standup is pointless"],
    PEOPLE[4]: ["1 nobody listens to juniors"],
}
ANSWERS = {p: [f"{a} {RUN}" for a in texts] for p, texts in ANSWERS.items()}
# what is stored (a leading number is the question), and whose it is
STORED = {re.sub(r"^\d+ ", "", a).encode(): p for p, texts in ANSWERS.items() for a in texts}
SEVERAL = {p for p, texts in ANSWERS.items() if len(texts) > 1}  # whose answers could group


def names_any_author(blob: bytes) -> list[str]:
    """Authors whose id or name appears anywhere (any case: ids, display names, JSON)."""
    low = blob.lower()
    return [p for p in ANSWERS if p.encode() in low]


HEX64 = re.compile(rb"(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])")  # old pseudonyms
TAG = re.compile(rb"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{82}(?![A-Za-z0-9_-])")  # RoundTags


def pseudonyms_in(blob: bytes) -> set[bytes]:
    return set(HEX64.findall(blob))


def tags_in(blob: bytes) -> set[bytes]:
    """Every author-tag-shaped string: old hex pseudonyms and randomised tags."""
    return pseudonyms_in(blob) | set(TAG.findall(blob))


def tags_with_answers(blob: bytes) -> list[tuple[bytes, bytes]]:
    """(tag, answer) for every tag-shaped string followed closely by one of our answers
    (the nearest: a row's text comes right after its tag in every format read here)."""
    found = []
    for pattern in (HEX64, TAG):
        for m in pattern.finditer(blob):
            window = blob[m.end() : m.end() + 160]
            hits = [(window.find(t), t) for t in STORED if t in window]
            if hits:
                found.append((m.group(), min(hits)[1]))
    return found


def groupable(blob: bytes) -> dict[bytes, set[bytes]]:
    """Tags that, compared as they are (no key), put two different answers together."""
    groups: dict[bytes, set[bytes]] = {}
    for tag, answer in tags_with_answers(blob):
        groups.setdefault(tag, set()).add(answer)
    return {tag: answers for tag, answers in groups.items() if len(answers) > 1}


def grouped_with_key(blob: bytes, tags: RoundTags) -> dict[bytes, set[bytes]]:
    """The same pairs, with every tag opened by the round key (what the secret allows)."""
    groups: dict[bytes, set[bytes]] = {}
    for tag, answer in tags_with_answers(blob):
        alias = tags.open(tag.decode())
        if alias is not None:
            groups.setdefault(alias, set()).add(answer)
    return {alias: answers for alias, answers in groups.items() if len(answers) > 1}


def keyed_hash_links(blob: bytes, extra_keys: list[bytes] = ()) -> set[str]:
    """People whose keyed hash, under any 32-byte window of ``blob`` (or an extra key),
    equals a hash found in ``blob`` as hex, or sealed in a tag the key opens."""
    found = {bytes.fromhex(p.decode()) for p in pseudonyms_in(blob)}
    tags = TAG.findall(blob)
    for key in extra_keys:  # a round key (not the ones the windows try: see docstring)
        for rid in range(1, 3):
            opener = RoundTags(rid, key)
            found |= {a for t in tags if (a := opener.open(t.decode())) is not None}
    if not found:
        return set()
    people = [p.encode() for p in WORKSPACE]
    linked = set()
    keys = {blob[i : i + 32] for i in range(max(0, len(blob) - 31))} | set(extra_keys)
    for key in keys:
        for person in people:
            if hmac.digest(key, person, "sha256") in found:
                linked.add(person.decode())
    return linked


def opened_with_secret(blob: bytes, keyring: Keyring, round_ids: range) -> list[bytes]:
    """Every sealed-key-shaped blob (version byte, nonce, 32+16 bytes) the secret opens."""
    keys = []
    for i in range(len(blob) - 60):
        if blob[i] != 1:
            continue
        for rid in round_ids:
            try:
                keys.append(keyring.open(rid, blob[i : i + 61]))
            except KeyUnavailable:
                pass
    return keys


async def table_dump(store) -> bytes:
    """Every row of every table, as text (what SELECT * or a CSV export shows)."""
    out = []
    async with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            names = (
                await conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            ).scalars()
        else:
            names = (
                await conn.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalars()
        for name in list(names):
            for row in (await conn.execute(text(f'SELECT * FROM "{name}"'))).all():
                out.append(repr(tuple(row)).encode())
                # Binary columns as raw bytes too, so windows over them are tried.
                out.extend(bytes(v) for v in row if isinstance(v, bytes | memoryview))
    return b"\n".join(out)


def _sqlite_files(url: str) -> bytes:
    db = Path(make_url(url).database)
    files = [Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def _pg_files(data_dir: str, paths: list[str], url: str) -> bytes:
    blobs = []
    for rel in paths:
        base = Path(data_dir) / rel
        if not os.access(base.parent, os.R_OK):
            pytest.skip(f"cannot read PostgreSQL's data files under {data_dir} as this user")
        for part in sorted(base.parent.glob(base.name + "*")):  # segments, _fsm, _vm
            blobs.append(part.read_bytes())
    dumper = shutil.which("pg_dump")
    if dumper:
        pg = make_url(url)
        dumped = subprocess.run(
            [dumper, "-h", pg.host, "-p", str(pg.port or 5432), "-U", pg.username, pg.database],
            capture_output=True,
            check=True,
        ).stdout
        blobs.append(dumped)
    return b"\n".join(blobs)


def _pg_wal(data_dir: str) -> bytes:
    """Every WAL segment on disk (shared by the whole server; our bytes carry RUN)."""
    wal = Path(data_dir) / "pg_wal"
    if not os.access(wal, os.R_OK):
        pytest.skip(f"cannot read PostgreSQL's WAL under {wal} as this user")
    return b"".join(
        f.read_bytes() for f in sorted(wal.iterdir()) if f.is_file() and len(f.name) == 24
    )


async def raw_files(store, url: str) -> tuple[bytes, bytes]:
    """The bytes on disk: (SQLite's three files, or PostgreSQL's table and index files
    after a CHECKPOINT plus pg_dump output; PostgreSQL's WAL segments, else b"")."""
    if store.dialect == "sqlite":
        return await asyncio.to_thread(_sqlite_files, url), b""
    async with store.engine.connect() as conn:
        await conn.execute(text("CHECKPOINT"))
        data_dir = (await conn.execute(text("SHOW data_directory"))).scalar()
        paths = (
            await conn.execute(
                text(
                    # our tables and indexes, and the TOAST tables holding their long values
                    "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') "
                    "UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = 'public' AND c.reltoastrelid <> 0"
                )
            )
        ).scalars()
        paths = [p for p in paths if p]
    files = await asyncio.to_thread(_pg_files, data_dir, paths, url)
    return files, await asyncio.to_thread(_pg_wal, data_dir)


async def reader_sees(store, url: str) -> tuple[bytes, bytes]:
    """(table dump and table files, WAL). The WAL is searched for everything but the
    every-window keyed hash (too large for that; the plain key is checked absent)."""
    files, wal = await raw_files(store, url)
    return await table_dump(store) + b"\n" + files, wal


async def test_a_copy_of_the_database_links_no_anonymous_answer_to_anyone(
    database_url, config_path
):
    url = database_url
    backend = make_url(url).get_backend_name()
    chat = await make_chat(config_path, url)
    try:
        await chat.say("/discuss now")
        for person, texts in ANSWERS.items():
            for answer in texts:
                reply = await chat.say(f"/discuss answer --anonymous {answer}", who=person)
                assert "anonymous answer" in reply
        await chat.say("named thought", who="nina")
        await chat.say("/discuss answer 1 another named one", who="otto")
        (round_,) = await chat.store.rounds()
        secret = load_keyring(chat.store.engine.url)  # the server's secret (key file)
        plain_key = secret.open(round_.id, round_.anon_key)
        opener = RoundTags(round_.id, plain_key)
        ids = range(1, 3)

        # ---- round open ----------------------------------------------------------------
        seen, wal = await reader_sees(chat.store, url)
        everything = seen + b"\n" + wal
        async with chat.store.engine.connect() as conn:
            live = [
                r[0].encode()
                for r in await conn.execute(text("SELECT pseudonym FROM responses WHERE anonymous"))
            ]
        assert len(live) == len(STORED) == len(set(live))  # every row's tag differs
        assert set(live) <= tags_in(seen)
        assert names_any_author(everything) == []  # stored ids: the authors appear nowhere
        assert plain_key not in everything  # the round key is only stored sealed
        assert keyed_hash_links(seen) == set()  # 0 links without the secret
        assert groupable(everything) == {}  # 0 groups without the secret
        # Controls: the same searches link and group every author once the plain key
        # is in reach (as it is with the server secret while the round is open).
        assert keyed_hash_links(seen, [plain_key]) == {f"console:{p}" for p in ANSWERS}
        by_author = grouped_with_key(everything, opener)
        assert sorted(sorted(STORED[a] for a in g) for g in by_author.values()) == sorted(
            [p, p] for p in SEVERAL
        )
        opened = opened_with_secret(seen, secret, ids)
        assert plain_key in opened

        # ---- after close ---------------------------------------------------------------
        await chat.say("/discuss close")
        digest = chat.platform.summaries()[-1]
        assert digest.respondents == len(ANSWERS) + len(NAMED)  # counted by opening tags
        async with chat.store.engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT pseudonym FROM responses WHERE anonymous"))
            ).all()
            key = (await conn.execute(text("SELECT anon_key FROM rounds"))).scalar()
        assert len(rows) == len(STORED)
        assert {r[0] for r in rows} == {None}  # nothing groups a closed round's answers
        assert key is None
        seen, wal = await reader_sees(chat.store, url)
        everything = seen + b"\n" + wal
        assert names_any_author(everything) == []
        assert plain_key not in everything
        assert keyed_hash_links(seen) == set()  # 0 links without the secret
        assert groupable(everything) == {}  # 0 groups, old row versions and WAL included
        leftover = opened_with_secret(seen, secret, ids)
        if backend == "sqlite":
            # secure_delete + WAL truncated: neither the key nor any tag survives, so
            # even the secret links nothing and nothing groups the answers.
            assert tags_in(seen) == set()
            assert leftover == [] and plain_key not in seen
            assert keyed_hash_links(seen, [plain_key, *leftover]) == set()
        else:
            # PostgreSQL keeps old row versions (and the WAL) until their space is
            # reused: the sealed key and randomised tags, useless without the secret
            # (checked above); with the secret they can still be opened while they last
            # (docs/privacy.md says so). The live tables hold nothing.
            assert tags_in(await table_dump(chat.store)) == set()
    finally:
        await chat.store.close()


async def test_the_key_file_is_created_private_beside_the_database(tmp_path):
    db = tmp_path / "data" / "roundtable.db"
    env = {}
    keyring = load_keyring(f"sqlite+aiosqlite:///{db}", env)
    key_file = tmp_path / "data" / "roundtable.key"
    assert keyring.origin == str(key_file)
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    again = load_keyring(f"sqlite+aiosqlite:///{db}", env)
    sealed = keyring.seal(7, b"k" * 32)
    assert again.open(7, sealed) == b"k" * 32  # the same secret on the next start
    with pytest.raises(KeyUnavailable):
        again.open(8, sealed)  # bound to its round (associated data)


async def test_ROUNDTABLE_SECRET_wins_and_a_malformed_one_is_refused(tmp_path):
    from bot.anonymity import SecretProblem

    good = os.urandom(32)
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    keyring = load_keyring(url, {"ROUNDTABLE_SECRET": good.hex()})
    assert keyring.origin == "ROUNDTABLE_SECRET"
    assert not (tmp_path / "x.key").exists()
    import base64

    same = load_keyring(url, {"ROUNDTABLE_SECRET": base64.b64encode(good).decode()})
    assert same.open(1, keyring.seal(1, b"z" * 32)) == b"z" * 32
    with pytest.raises(SecretProblem) as err:
        load_keyring(url, {"ROUNDTABLE_SECRET": "too-short-secret-value"})
    assert "too-short" not in str(err.value) and "ROUNDTABLE_SECRET" in str(err.value)


def test_run_refuses_to_start_with_a_malformed_secret_in_one_line(tmp_path):
    import sys

    from tests.support import REPO, write_library

    config = write_library(tmp_path)
    env = {
        "PATH": "/usr/bin:/bin",
        "ROUNDTABLE_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "ROUNDTABLE_SECRET": "not-a-secret",
    }
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--config", str(config), "run"],
        input="",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Refusing to start: ROUNDTABLE_SECRET:") and "not-a-secret" not in line
    assert not (tmp_path / "x.db").exists()  # nothing touched


def test_processes_starting_together_agree_on_one_key_file(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    url = f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"
    with ThreadPoolExecutor(8) as pool:
        keyrings = list(pool.map(lambda _: load_keyring(url, {}), range(8)))
    sealed = keyrings[0].seal(1, b"s" * 32)
    assert all(k.open(1, sealed) == b"s" * 32 for k in keyrings)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rt.key"]  # no temp files left


def test_a_key_file_readable_by_others_is_warned_about(tmp_path, caplog):
    url = f"sqlite+aiosqlite:///{tmp_path / 'rt.db'}"
    load_keyring(url, {})
    (tmp_path / "rt.key").chmod(0o644)
    load_keyring(url, {})
    assert "readable by other users" in caplog.text and "chmod 600" in caplog.text
