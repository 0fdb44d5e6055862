"""Author tags for anonymous answers, and the server secret that guards their keys.

An anonymous answer stores no author id, only a randomised tag: its author's keyed hash
``HMAC(round key, "platform:user")`` sealed under the round key with a fresh nonce
(``RoundTags``), so no two tags compare equal. While the round is open its author can
still edit or withdraw it (we open the round's tags and look for their hash). The round key itself is stored only sealed (AES-GCM, round id as associated
data) under a server secret that never enters the database: ``ROUNDTABLE_SECRET`` from
the environment, else a key file created on first run next to (never inside) the
database. So a copy of the database alone links nothing. When the round closes the key
and every tag of the round are erased, and then nothing links them at all.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

log = logging.getLogger(__name__)

SECRET_ENV = "ROUNDTABLE_SECRET"
KEY_FILE_ENV = "ROUNDTABLE_KEY_FILE"
KEY_FILE_NAME = "roundtable.key"
DEFAULT_DATA_DIR = Path("data")  # where the default database lives (see bot.config)
_VERSION = b"\x01"
_NONCE = 12


def new_round_key() -> bytes:
    return secrets.token_bytes(32)


def pseudonym(round_key: bytes, actor_key: str) -> str:
    """The keyed hash older releases stored as is (now only ever stored sealed, see
    ``RoundTags``)."""
    return hmac.new(round_key, actor_key.encode("utf-8"), hashlib.sha256).hexdigest()


_TAG_VERSION = b"\x02"
_TAG_LENGTH = 82  # base64url of version + nonce + 32-byte alias + 16-byte GCM tag


class RoundTags:
    """Author tags of one round's anonymous answers.

    A tag is AES-GCM (a key derived from the round key with HKDF, a random 96-bit nonce,
    the round id as associated data) over the author's alias in the round,
    ``HMAC-SHA256(round key, "platform:user")``. The nonce makes every tag different, so
    no two rows can be compared without the round key: nothing groups one person's
    answers, not in the live table and not in old row versions or the WAL. Opening the
    tags (which needs the round key, so the server secret) gives the aliases back; that
    is how an author's rows are found while the round is open. The alias (not the id)
    is sealed so tags have one length and a lost-secret or migrated row (whose HMAC
    is all there is) has the same form.
    """

    def __init__(self, round_id: int, round_key: bytes):
        self.round_id = round_id
        self._round_key = round_key
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"roundtable answer tag v1"
        ).derive(round_key)
        self._aead = AESGCM(derived)
        self._ad = f"roundtable anonymous answer author v1 / round {round_id}".encode()

    def alias(self, actor_key: str) -> bytes:
        return hmac.new(self._round_key, actor_key.encode("utf-8"), hashlib.sha256).digest()

    def seal(self, alias: bytes) -> str:
        """A fresh tag for ``alias`` (a new nonce each call)."""
        nonce = secrets.token_bytes(_NONCE)
        body = _TAG_VERSION + nonce + self._aead.encrypt(nonce, alias, self._ad)
        return base64.urlsafe_b64encode(body).rstrip(b"=").decode("ascii")

    def tag(self, actor_key: str) -> str:
        """The tag stored on a new anonymous answer (the one place tags are made)."""
        return self.seal(self.alias(actor_key))

    def open(self, tag: str | None) -> bytes | None:
        """The alias in ``tag``; None when it cannot be opened (no tag, another key)."""
        if not tag or len(tag) != _TAG_LENGTH:
            return None
        try:
            raw = base64.urlsafe_b64decode(tag + "==")
        except (binascii.Error, ValueError):
            return None
        if raw[:1] != _TAG_VERSION:
            return None
        try:
            return self._aead.decrypt(raw[1 : 1 + _NONCE], raw[1 + _NONCE :], self._ad)
        except InvalidTag:
            return None

    def rows_of(self, actor_key: str, rows: Iterable[tuple[int, str | None]]) -> list[int]:
        """Ids of the rows (id, tag) whose tag opens to ``actor_key``'s alias."""
        mine = self.alias(actor_key)
        return [rid for rid, tag in rows if self.open(tag) == mine]


def count_authors(tags: RoundTags | None, stored: Iterable[str | None]) -> int:
    """Distinct authors among a round's anonymous answers. A tag that cannot be opened
    (no key, or one sealed before the server secret was lost) counts as one person:
    nothing can tell it apart any more."""
    seen: set[bytes] = set()
    unknown = 0
    for tag in stored:
        alias = tags.open(tag) if tags is not None else None
        if alias is None:
            unknown += 1
        else:
            seen.add(alias)
    return len(seen) + unknown


class SecretProblem(ValueError):
    """The server secret is malformed or its key file unreadable (never shows the value)."""


class KeyUnavailable(LookupError):
    """A round's sealed key cannot be opened: the server secret changed or was lost."""


def _associated_data(round_id: int) -> bytes:
    return f"roundtable round key v1 / round {round_id}".encode()


class Keyring:
    """Seals and opens per-round keys with the server secret (32 bytes, AES-256-GCM)."""

    def __init__(self, secret: bytes, origin: str = "memory"):
        if len(secret) != 32:
            raise SecretProblem("the server secret must be exactly 32 bytes")
        self._aead = AESGCM(secret)
        self._check_key = hashlib.sha256(b"roundtable check key|" + secret).digest()
        self.origin = origin  # where the secret came from (for messages; never the value)

    def __repr__(self) -> str:
        return f"Keyring(origin={self.origin!r})"

    def check_value(self) -> str:
        """A fingerprint that tells two secrets apart and reveals nothing about either."""
        return hmac.new(self._check_key, b"roundtable secret check v1", hashlib.sha256).hexdigest()

    def seal(self, round_id: int, round_key: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return _VERSION + nonce + self._aead.encrypt(nonce, round_key, _associated_data(round_id))

    def open(self, round_id: int, sealed: bytes) -> bytes:
        if not sealed or sealed[:1] != _VERSION or len(sealed) < 1 + _NONCE + 16:
            raise KeyUnavailable(round_id)
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, body, _associated_data(round_id))
        except InvalidTag:
            raise KeyUnavailable(round_id) from None


_PAYLOAD_AD = b"roundtable inbox payload v1"


def seal_payload(keyring: Keyring, payload: dict) -> dict:
    """An inbox payload sealed under the server secret: an anonymous answer waits there,
    next to its author, until it is processed (then the row's payload is wiped)."""
    import json

    nonce = secrets.token_bytes(_NONCE)
    body = keyring._aead.encrypt(nonce, json.dumps(payload).encode(), _PAYLOAD_AD)
    return {"sealed": base64.b64encode(_VERSION + nonce + body).decode("ascii")}


def open_payload(keyring: Keyring, payload: dict) -> dict:
    """The payload ``seal_payload`` sealed; a plain one (older rows) comes back as is.
    Raises KeyUnavailable when it was sealed under another secret."""
    import json

    if set(payload) != {"sealed"}:
        return payload
    raw = base64.b64decode(payload["sealed"])
    try:
        plain = keyring._aead.decrypt(raw[1 : 1 + _NONCE], raw[1 + _NONCE :], _PAYLOAD_AD)
    except InvalidTag:
        raise KeyUnavailable("inbox payload") from None
    return json.loads(plain)


def parse_secret(value: str) -> bytes:
    """32 bytes written as 64 hex digits or as base64/base64url (padding optional)."""
    text = value.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = base64.urlsafe_b64decode(
            text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4)
        )
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise SecretProblem(
            "must be 32 random bytes written as 64 hex digits or base64; generate one with "
            'python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return raw


def key_file_path(
    database_url: str, env: Mapping[str, str] | None = None, *, data_dir: Path | None = None
) -> Path:
    """Where the key file lives: ``ROUNDTABLE_KEY_FILE``, else beside a SQLite database
    file (``data/roundtable.db`` → ``data/roundtable.key``), else in the default data
    directory (PostgreSQL, in-memory SQLite): ``data_dir``, which the CLI resolves against
    the config file's folder like the default database."""
    env = os.environ if env is None else env
    if env.get(KEY_FILE_ENV):
        return Path(env[KEY_FILE_ENV])
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        return db.with_name(f"{db.stem}.key" if db.suffix != ".key" else f"{db.name}.secret")
    return (data_dir or DEFAULT_DATA_DIR) / KEY_FILE_NAME


def load_keyring(
    database_url: str, env: Mapping[str, str] | None = None, *, data_dir: Path | None = None
) -> Keyring:
    """The server's keyring: from ``ROUNDTABLE_SECRET``, else from the key file, which is
    created (mode 0600) on first use. Raises SecretProblem with a one-line reason."""
    env = os.environ if env is None else env
    if env.get(SECRET_ENV):
        try:
            return Keyring(parse_secret(env[SECRET_ENV]), origin=SECRET_ENV)
        except SecretProblem as exc:
            raise SecretProblem(f"{SECRET_ENV}: {exc}") from None
    path = key_file_path(database_url, env, data_dir=data_dir)
    try:
        return Keyring(_read_or_create(path), origin=str(path))
    except SecretProblem as exc:
        raise SecretProblem(f"{path}: {exc}") from None
    except OSError as exc:
        raise SecretProblem(
            f"{path}: cannot read or create the key file ({exc.strerror})"
        ) from None


def _read_or_create(path: Path) -> bytes:
    """Read the key file, or create it atomically (written in full, then linked into place,
    so two processes starting together agree on one secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        secret = secrets.token_bytes(32)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secret.hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            log.info(  # a first-run notice, not a problem
                "created the key file %s for anonymous answers; back it up separately "
                "from the database (see docs/privacy.md)",
                path,
            )
            return secret
        finally:
            tmp.unlink(missing_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    return parse_secret(path.read_text(encoding="ascii"))
