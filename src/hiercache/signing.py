"""HMAC-SHA256 signatures for pickle frames: a pickle is unpickled only if a key we hold signed it.

``signing_key`` (``CACHE_SIGNING_KEY``) holds one key, or several for rotation: comma-separated
(``new,old``) or a JSON list (``["new", "old"]``). Frames are signed with the first key and
verified with any of them. Each frame carries a 4-byte key id (a truncated HMAC of a constant
under the key, which reveals nothing of the key) so a verifier picks the right key at once and
can tell "signed with a key I do not hold" apart from "tampered". Without a configured key a
random per-process key is used: values stay readable by this process only.

Keys never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Sequence
from typing import Final

log = logging.getLogger("hiercache")

KEY_ID_SIZE: Final = 4
MAC_SIZE: Final = 32
SIGNATURE_SIZE: Final = KEY_ID_SIZE + MAC_SIZE
MIN_KEY_BYTES: Final = 16
_KEY_ID_LABEL: Final = b"hiercache signing key id v1"

_process_key: bytes | None = None
_warned_random_key = False
_process_key_lock = threading.Lock()


def parse_signing_keys(text: str) -> tuple[bytes, ...]:
    """Split ``signing_key``'s value into keys (comma-separated or a JSON list of strings).

    Raises ``ValueError`` (never echoing the input) when there is no key, a key is empty or
    shorter than ``MIN_KEY_BYTES`` bytes, or the JSON list is malformed.
    """
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            raise ValueError("signing_key looks like a JSON list but is not valid JSON") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("signing_key as JSON must be a list of strings")
        parts = [str(i).strip() for i in items]
    else:
        parts = [p.strip() for p in text.split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError("signing_key holds an empty key")
    keys = tuple(p.encode("utf-8") for p in parts)
    short = [i for i, k in enumerate(keys) if len(k) < MIN_KEY_BYTES]
    if short:
        raise ValueError(
            f"signing_key: key #{short[0] + 1} is shorter than {MIN_KEY_BYTES} bytes; "
            "use a long random secret (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'`)"
        )
    return keys


def key_id(key: bytes) -> bytes:
    """The public 4-byte id of ``key``."""
    return hmac.digest(key, _KEY_ID_LABEL, "sha256")[:KEY_ID_SIZE]


def process_key() -> bytes:
    """This process's random key, made on first use; warns once that others cannot verify it."""
    global _process_key, _warned_random_key
    with _process_key_lock:  # one key per process, even when two threads build codecs at once
        if _process_key is None:
            _process_key = secrets.token_bytes(32)
        warn, _warned_random_key = not _warned_random_key, True
    if warn:
        log.warning(
            "hiercache: pickle values are signed with a random per-process key because "
            "CACHE_SIGNING_KEY is not set: other processes cannot read them (they are misses "
            "there). Set CACHE_SIGNING_KEY to share pickled values between processes."
        )
    return _process_key


class Signer:
    """Signs with the first key, verifies with any. Holds secrets: its repr shows none."""

    __slots__ = ("_by_id", "_sign_id", "_sign_key")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("a Signer needs at least one key")
        self._sign_key = keys[0]
        self._sign_id = key_id(keys[0])
        by_id: dict[bytes, list[bytes]] = {}
        for k in keys:
            by_id.setdefault(key_id(k), []).append(k)
        self._by_id = by_id

    @classmethod
    def from_setting(cls, value: str | None) -> Signer:
        """A signer for ``signing_key``'s value; the per-process random key when it is unset."""
        if value is None:
            return cls([process_key()])
        return cls(parse_signing_keys(value))

    def __repr__(self) -> str:
        return f"Signer(<{sum(len(v) for v in self._by_id.values())} key(s) hidden>)"

    def sign(self, header: bytes, body: bytes) -> bytes:
        """The signature (key id, then MAC) of ``header`` + key id + ``body``."""
        mac = hmac.new(self._sign_key, header + self._sign_id, hashlib.sha256)
        mac.update(body)
        return self._sign_id + mac.digest()

    def verify(self, header: bytes, signature: bytes | memoryview, body: memoryview) -> bool | None:
        """True if a key we hold signed it; False if tampered; None if the key id is unknown.

        Compared in constant time.
        """
        kid = bytes(signature[:KEY_ID_SIZE])
        keys = self._by_id.get(kid)
        if keys is None:
            return None
        expected = signature[KEY_ID_SIZE:SIGNATURE_SIZE]
        ok = False
        for k in keys:
            mac = hmac.new(k, header + kid, hashlib.sha256)
            mac.update(body)
            ok |= hmac.compare_digest(mac.digest(), expected)
        return ok
