"""API keys: created once and shown once, stored as SHA-256 hashes, compared in constant time.

A key looks like ``pt_<id>_<secret>``; the id finds the stored hash, so checking a key is one
primary-key lookup. Keys are high-entropy random strings, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Final

from plyra_trace.collector.storage import Storage

PREFIX: Final = "pt_"


def hash_key(token: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_key(storage: Storage, name: str) -> tuple[str, str]:
    """Make and store a new key; returns (key id, the full key, shown only now)."""
    key_id = secrets.token_hex(6)
    token = f"{PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
    storage.add_key(key_id, name, hash_key(token), time.time_ns())
    return key_id, token


def revoke_key(storage: Storage, key_id: str) -> bool:
    """Revoke a key by id; False if no active key has that id."""
    return storage.revoke_key(key_id, time.time_ns())


def verify(storage: Storage, token: str) -> bool:
    """True when ``token`` is an active key (constant-time comparison of hashes)."""
    if not token.startswith(PREFIX) or len(token) > 256:
        return False
    key_id, _, secret = token[len(PREFIX) :].partition("_")
    if not key_id or not secret:
        return False
    stored = storage.key_hash(key_id)
    if stored is None:
        hmac.compare_digest(hash_key(token), hash_key(""))  # same work either way
        return False
    return hmac.compare_digest(hash_key(token), stored)


def token_from(authorization: str | None, api_key: str | None) -> str | None:
    """The key a request presents: ``Authorization: Bearer <key>`` or an ``x-api-key`` header."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return api_key.strip() if api_key else None
