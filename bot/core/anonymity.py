"""Keyed pseudonyms for anonymous answers.

An anonymous answer stores no author id, only ``HMAC(round key, "platform:user")``.
While the round is open its author can still edit or withdraw it (we recompute the
pseudonym); when the round closes the key is erased and the link is gone for good,
even for someone reading the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new_round_key() -> bytes:
    return secrets.token_bytes(32)


def pseudonym(round_key: bytes, actor_key: str) -> str:
    return hmac.new(round_key, actor_key.encode("utf-8"), hashlib.sha256).hexdigest()
