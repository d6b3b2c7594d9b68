"""API keys: high-entropy random strings shown once; only their sha256 is stored, so a
database leak reveals no usable key. `admin` implies every other scope."""

from __future__ import annotations

import hashlib
import secrets

SCOPES = ("read", "subscribe", "feedback", "admin")
PREFIX = "fsk_"


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:12]


def has_scope(scopes: list[str], scope: str) -> bool:
    return scope in scopes or "admin" in scopes


async def create(conn, *, name: str, scopes: list[str]) -> tuple[int, str]:
    """Insert a key; returns (id, the key itself), the only time the key is known."""
    bad = sorted(set(scopes) - set(SCOPES))
    if bad or not scopes:
        raise ValueError(f"scopes must be among {SCOPES}, got {scopes}")
    key = new_key()
    from api import queries as q

    key_id = await conn.fetchval(q.INSERT_API_KEY, name, hash_key(key), display_prefix(key), sorted(set(scopes)))
    return key_id, key
