"""Someone with a copy of the database tries to link anonymous answers to people.

Several people answer anonymously; then every table and the raw files are dumped (SQLite:
the database file, ``-wal`` and ``-shm``; PostgreSQL: the table and index files under
the server's data directory after a CHECKPOINT, and ``pg_dump`` output), once with the
round open and once after close. The reader tries every link there is:

* stored ids: any author id of an anonymous answer anywhere in the bytes;
* keyed hashes: ``HMAC(window, person)`` for every 32-byte window of the bytes as the
  key and every person of the workspace, compared with every pseudonym-shaped string
  in the bytes (a positive control shows the same search finds all links when the
  plain round key is among the bytes, as it was before sealing);
* with the server secret too: every sealed-key-shaped blob opened with it, then the
  same keyed-hash search;
* pseudonym grouping: any pseudonym left on the rows of a closed round, or in its bytes.

Promise (docs/privacy.md): 0 links without the secret, open or closed; with the secret,
only while the round is open; after close 0 even with the secret on SQLite.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.core.anonymity import Keyring, KeyUnavailable, load_keyring
from tests.support import make_chat

PEOPLE = [f"quietperson{i}" for i in range(1, 6)]  # answer anonymously only
NAMED = ["nina", "otto"]  # answer with their names
WORKSPACE = [f"console:{p}" for p in [*PEOPLE, *NAMED, "admin", "zed"]]
ANSWERS = {
    "quietperson1": ["I am scared of the reorg", "2 we never finish anything"],
    "quietperson2": ["my manager interrupts me"],
    "quietperson3": ["1 alpha is overrated", "2 I would quit if I could"],
    "quietperson4": ["the standup is pointless"],
    "quietperson5": ["1 nobody listens to juniors"],
}


def names_any_author(blob: bytes) -> list[str]:
    """Authors whose id or name appears anywhere (any case: ids, display names, JSON)."""
    low = blob.lower()
    return [p for p in ANSWERS if p.encode() in low]


HEX64 = re.compile(rb"[0-9a-f]{64}")


def pseudonyms_in(blob: bytes) -> set[bytes]:
    return set(HEX64.findall(blob))


def keyed_hash_links(blob: bytes, extra_keys: list[bytes] = ()) -> set[str]:
    """People whose keyed hash, under any 32-byte window of ``blob`` (or an extra key),
    equals a pseudonym found in ``blob``."""
    found = {bytes.fromhex(p.decode()) for p in pseudonyms_in(blob)}
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


async def raw_files(store, url: str) -> bytes:
    """The bytes on disk: SQLite's three files, or PostgreSQL's table and index files
    (after a CHECKPOINT) plus pg_dump output."""
    if store.dialect == "sqlite":
        return await asyncio.to_thread(_sqlite_files, url)
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
    return await asyncio.to_thread(_pg_files, data_dir, paths, url)


async def reader_sees(store, url: str) -> bytes:
    return await table_dump(store) + b"\n" + await raw_files(store, url)


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
        ids = range(1, 3)

        # ---- round open ----------------------------------------------------------------
        seen = await reader_sees(chat.store, url)
        async with chat.store.engine.connect() as conn:
            live = {
                r[0].encode()
                for r in await conn.execute(text("SELECT pseudonym FROM responses WHERE anonymous"))
            }
        assert len(live) == len(ANSWERS) and live <= pseudonyms_in(seen)  # one per author
        assert names_any_author(seen) == []  # stored ids: the authors appear nowhere
        assert plain_key not in seen  # the round key is only stored sealed
        assert keyed_hash_links(seen) == set()  # 0 links without the secret
        # Control: the same search finds every author once the plain key is in reach.
        assert keyed_hash_links(seen, [plain_key]) == {f"console:{p}" for p in ANSWERS}
        # With the secret, open rounds still link (that is what lets authors withdraw).
        opened = opened_with_secret(seen, secret, ids)
        assert plain_key in opened

        # ---- after close ---------------------------------------------------------------
        await chat.say("/discuss close")
        digest = chat.platform.summaries()[-1]
        assert digest.respondents == len(ANSWERS) + len(NAMED)
        async with chat.store.engine.connect() as conn:
            rows = (
                await conn.execute(text("SELECT pseudonym FROM responses WHERE anonymous"))
            ).all()
            key = (await conn.execute(text("SELECT anon_key FROM rounds"))).scalar()
        assert len(rows) == sum(map(len, ANSWERS.values()))
        assert {r[0] for r in rows} == {None}  # nothing groups a closed round's answers
        assert key is None
        seen = await reader_sees(chat.store, url)
        assert names_any_author(seen) == []
        assert keyed_hash_links(seen) == set()  # 0 links without the secret
        leftover = opened_with_secret(seen, secret, ids)
        if backend == "sqlite":
            # secure_delete + WAL truncated: neither the key nor any pseudonym survives,
            # so even the secret links nothing and nothing groups the answers.
            assert pseudonyms_in(seen) == set()
            assert leftover == [] and plain_key not in seen
            assert keyed_hash_links(seen, [plain_key, *leftover]) == set()
        else:
            # PostgreSQL keeps old row versions until their space is reused: what is
            # left there is only the sealed key (useless without the secret, checked
            # above); docs/privacy.md says so. The live tables hold nothing.
            assert plain_key not in seen
            assert pseudonyms_in(await table_dump(chat.store)) == set()
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
    from bot.core.anonymity import SecretProblem

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
