"""API keys: created once and shown once, stored as SHA-256 hashes, compared in constant time.

A key looks like ``pt_<id>_<secret>``; the id finds the stored hash, so checking a key is one
primary-key lookup. Keys are high-entropy random strings, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
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


class KeyGate:
    """Who may pass: once any active key exists (or the config demands keys), only key holders.

    Whether active keys exist is re-read at most every ``ttl`` seconds, so replicas sharing a
    database see a new key within about that time without a query per request.
    """

    def __init__(self, storage: Storage, *, always: bool, ttl: float = 1.0) -> None:
        self._storage = storage
        self._always = always
        self._ttl = ttl
        self._known = False
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def cached(self) -> bool | None:
        """``required()`` if known without a query (safe on an event loop), else None."""
        if self._always:
            return True
        with self._lock:
            return self._known if time.monotonic() - self._checked < self._ttl else None

    def required(self) -> bool:
        """True when requests must present a key (or a session); may query the store."""
        known = self.cached()
        if known is not None:
            return known
        now = time.monotonic()
        known = any(key["revoked_ns"] is None for key in self._storage.list_keys())
        with self._lock:
            self._known, self._checked = known, now
        return known

    def allows(self, token: str | None) -> bool:
        """A request presenting ``token`` (None: no key) may pass."""
        if token is None:
            return not self.required()
        return verify(self._storage, token)


AUTHENTICATED: Final = "plyra.authenticated"
"""ASGI scope key the auth middleware sets: True when the request may read data."""
SESSION: Final = "plyra.session"
"""ASGI scope key the auth middleware sets: True when a valid session cookie came with it."""
SESSION_COOKIE: Final = "plyra_session"
SESSION_SECONDS: Final = 12 * 3600


def new_session(storage: Storage, token: str, now: float | None = None) -> str | None:
    """A session value for a browser that presented a valid key; None if the key is not valid.

    Stateless: ``<key id>.<expiry>.<signature>``, signed with a secret derived from the key's
    stored hash, so any replica on the same store accepts it and revoking the key ends it.
    """
    if not verify(storage, token):
        return None
    key_id = token[len(PREFIX) :].partition("_")[0]
    stored = storage.key_hash(key_id)
    if stored is None:
        return None
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    message = f"{key_id}.{expires}"
    return f"{message}.{_sign(stored, message)}"


def session_valid(storage: Storage, value: str, now: float | None = None) -> bool:
    """True for an unexpired session whose key is still active."""
    key_id, _, rest = value.partition(".")
    expires, _, signature = rest.partition(".")
    if not key_id or not expires.isdigit() or not signature or len(value) > 256:
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    stored = storage.key_hash(key_id)
    if stored is None:
        return False
    return hmac.compare_digest(signature, _sign(stored, f"{key_id}.{expires}"))


def _sign(stored_hash: str, message: str) -> str:
    secret = hmac.new(stored_hash.encode(), b"plyra-trace session v1", hashlib.sha256).digest()
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()
