"""Value encoding for L2: a 4-byte header, a serializer, optional zstd, signed pickle.

Layout: ``b"HC"``, format version (1 byte), flags (1 byte), an optional 16-byte meta block,
then the body. Flags: low 3 bits are the serializer id, bits 3-5 are reserved (0), bit 6 means
a meta block follows, bit 7 means the body is zstd-compressed. The meta block (big-endian) is
the value's logical expiry in wall-clock milliseconds since the epoch (u64, 0 for none), then
its stale-if-error and stale-while-revalidate windows in milliseconds (u32 each): they are
fixed when the value is written and travel with it, so every process and both tiers agree
(readers of earlier releases see an unknown flag: a clean miss). Serializers: 0 JSON
(orjson), 2 raw ``bytes``, 3 signed pickle; 1 is the unsigned pickle of earlier releases,
which is never unpickled. A signed pickle body starts
with a signature (4-byte key id, 32-byte HMAC-SHA256 of header, key id and the rest of the
body as stored, compressed or not), checked in constant time before anything is
decompressed or unpickled; see ``hiercache.signing``.

Reading never trusts the bytes:

- ``CorruptValueError``: no header, version 0, bad JSON/zstd, a pickle that is unsigned,
  tampered, or not enabled here (``serialization_format``), or a body whose decompressed size
  would exceed ``max_value_bytes`` (refused from the zstd frame header, or by a bounded
  streaming decompressor when the header does not say: never allocating the decoded size).
- ``IncompatibleValueError`` (not a ``CorruptValueError``): a newer version, an unknown
  serializer id or reserved flag, or a pickle signed with a key this process does not hold.
  A rolling upgrade or a key rotation reads as a clean miss, counted apart from corruption.

One value, whichever tier answers (JSON): ``encode_value(key, value)`` returns the payload
for L2 and ``value_for_l1``, the value L2 readers will decode from that payload; the core
stores ``value_for_l1`` in L1, so a ``get`` returns the same value from either tier, in any
process. The rule:

- JSON types (``dict`` with ``str`` keys, ``list``, ``str``, ``int`` within 64 bits,
  finite ``float``, ``bool``, ``None``) come back equal and of the same types.
- What JSON changes is normalised, identically in both tiers: tuples become lists,
  datetimes/dates/times ISO strings, UUIDs strings, dataclasses dicts, enums their values,
  numpy arrays lists, subclasses of ``str``/``int``/``dict``/``list`` their base types.
- What JSON would silently lose is refused with ``SerializationError`` naming the key:
  NaN and infinities (JSON has none: they would read back as ``None``), and dict keys that
  are not ``str`` (``1`` would read back as ``"1"``, and ``{1: "a", "1": "b"}`` would lose a
  value). So is anything orjson cannot encode (sets, ``bytearray``, objects, ints past 64 bits,
  strings with lone surrogates) and a value whose encoding exceeds ``max_value_bytes``
  (``ValueTooLargeError``).
- ``bytes`` are stored raw and read back as ``bytes``. With ``serialization_format="pickle"``
  any picklable value is accepted and ``value_for_l1`` is its unpickled copy.

``value_for_l1`` is never the caller's object (except immutable ``bytes``): mutating what was
passed to ``set`` afterwards changes neither tier. Values returned by ``get`` are shared by
every L1 hit: treat them as read-only.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import pickle
import struct
import threading
from typing import Any, Final, NamedTuple

import orjson
import zstandard

from hiercache.errors import (
    CorruptValueError,
    IncompatibleValueError,
    SerializationError,
    UnknownSigningKeyError,
    ValueTooLargeError,
)
from hiercache.settings import CacheConfig, SerializationFormat
from hiercache.signing import SIGNATURE_SIZE, Signer

MAGIC: Final = b"HC"
VERSION: Final = 1
HEADER_SIZE: Final = 4
SER_JSON: Final = 0
SER_PICKLE: Final = 1  # unsigned pickle of earlier releases: refused
SER_BYTES: Final = 2
SER_SIGNED_PICKLE: Final = 3
COMPRESSED: Final = 0x80
HAS_META: Final = 0x40
RESERVED_FLAGS: Final = 0x38
META: Final = struct.Struct(">QII")
META_SIZE: Final = META.size
_WINDOW_MAX_MS: Final = 2**32 - 1
DEFAULT_MAX_VALUE_BYTES: Final = 16 * 1024 * 1024
_SER_MASK: Final = 0x07
_ORJSON_OPTS: Final = orjson.OPT_SERIALIZE_NUMPY
_CHUNK: Final = 128 * 1024
_HEADERS: Final = tuple(MAGIC + bytes((VERSION, flags)) for flags in range(256))
_dumps = orjson.dumps
_loads = orjson.loads


class Encoded(NamedTuple):
    """What one write needs: the L2 payload, and the value L1 must hold (equal to what any
    L2 reader decodes from ``payload``)."""

    payload: bytes
    value_for_l1: Any


_new_encoded = tuple.__new__  # skips NamedTuple's Python-level __new__ on the hot path


class Meta(NamedTuple):
    """What travels with a value: its logical expiry (wall-clock seconds, 0 for none) and
    its stale windows (seconds) after that expiry."""

    expires_at: float = 0.0
    stale_if_error: float = 0.0
    stale_while_revalidate: float = 0.0

    @property
    def stale_until(self) -> float:
        """The end of the longest stale window (wall clock); ``expires_at`` if none."""
        return self.expires_at + max(self.stale_if_error, self.stale_while_revalidate)


def _pack_meta(meta: Meta) -> bytes:
    return META.pack(
        max(0, round(meta.expires_at * 1000)),
        min(_WINDOW_MAX_MS, max(0, round(meta.stale_if_error * 1000))),
        min(_WINDOW_MAX_MS, max(0, round(meta.stale_while_revalidate * 1000))),
    )


class Frame(NamedTuple):
    """A decoded payload: the value, and its meta block (None in frames without one)."""

    value: Any
    meta: Meta | None


class Codec:
    """Encodes Python values to L2 payloads and back. Thread-safe; its repr holds no secret."""

    def __init__(
        self,
        serialization: SerializationFormat = SerializationFormat.JSON,
        *,
        compression: bool = True,
        threshold: int = 1024,
        level: int = 3,
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        signer: Signer | None = None,
    ) -> None:
        if max_value_bytes < 1:
            raise ValueError("max_value_bytes must be >= 1")
        self.serialization = serialization
        self.compression = compression
        self.threshold = threshold
        self.level = level
        self.max_value_bytes = max_value_bytes
        self._pickle = serialization is SerializationFormat.PICKLE
        # Only a pickle codec needs a key; without one, the per-process key (and its warning).
        self._signer = (
            signer if signer is not None or not self._pickle else Signer.from_setting(None)
        )
        # zstd (de)compressors are not safe to share across threads: one of each per thread,
        # reused across calls.
        self._local = threading.local()

    @classmethod
    def from_config(cls, config: CacheConfig) -> Codec:
        pickled = config.serialization_format is SerializationFormat.PICKLE
        secret = config.signing_key.get_secret_value() if config.signing_key else None
        return cls(
            config.serialization_format,
            compression=config.compression_enabled,
            threshold=config.compression_threshold,
            level=config.compression_level,
            max_value_bytes=config.max_value_bytes,
            signer=Signer.from_setting(secret) if pickled or secret else None,
        )

    def __repr__(self) -> str:
        return (
            f"Codec({self.serialization.value}, compression={self.compression}, "
            f"max_value_bytes={self.max_value_bytes})"
        )

    def _compressor(self) -> zstandard.ZstdCompressor:
        c: zstandard.ZstdCompressor | None = getattr(self._local, "c", None)
        if c is None:
            c = self._local.c = zstandard.ZstdCompressor(level=self.level)
        return c

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        d: zstandard.ZstdDecompressor | None = getattr(self._local, "d", None)
        if d is None:
            d = self._local.d = zstandard.ZstdDecompressor()
        return d

    # -- writing ---------------------------------------------------------------------------
    def encode(self, key: str, value: Any) -> bytes:
        """The L2 payload for ``value``; see ``encode_value``."""
        return self.encode_value(key, value).payload

    def encode_value(self, key: str, value: Any, meta: Meta | None = None) -> Encoded:
        """Encode ``value`` once per write: the payload and the value L1 must hold; with
        ``meta``, the frame carries the value's expiry and stale windows.

        Raises ``SerializationError`` (``ValueTooLargeError`` for size) naming ``key`` for a
        value the rule in this module's docstring refuses; nothing is half-done.
        """
        if type(value) is bytes:
            return self._frame(key, SER_BYTES, value, value, meta)
        if self._pickle:
            return self._frame(key, SER_SIGNED_PICKLE, *_pickle_round_trip(key, value), meta)
        try:
            body = _dumps(value, option=_ORJSON_OPTS)
        except TypeError as exc:
            raise _json_error(key, value, exc) from exc
        decoded = _loads(body)
        # NaN and infinities are written as null: only a body with a null can hide one, and
        # only a value that does not read back equal needs the (Python-speed) walk to find it.
        if b"null" in body and not _equal(decoded, value) and _has_non_finite(value):
            raise SerializationError(
                key, "NaN and infinities are not JSON: they would read back as None"
            )
        return self._frame(key, SER_JSON, body, decoded, meta)

    def _frame(self, key: str, ser: int, body: bytes, for_l1: Any, meta: Meta | None) -> Encoded:
        if len(body) > self.max_value_bytes:
            raise ValueTooLargeError(key, len(body), self.max_value_bytes)
        flags = ser
        if self.compression and len(body) > self.threshold:
            packed = self._compressor().compress(body)
            if len(packed) < len(body):
                body, flags = packed, ser | COMPRESSED
        header = _HEADERS[flags] if meta is None else _HEADERS[flags | HAS_META] + _pack_meta(meta)
        if ser == SER_SIGNED_PICKLE:
            assert self._signer is not None
            body = self._signer.sign(header, body) + body
        return _new_encoded(Encoded, (header + body, for_l1))

    # -- reading ---------------------------------------------------------------------------
    def decode(self, payload: bytes) -> Any:
        """Decode a payload; raise ``CorruptValueError`` or ``IncompatibleValueError`` if it
        is not one this process can trust and read."""
        return self.decode_frame(payload).value

    def decode_frame(self, payload: bytes) -> Frame:
        """``decode``, with the frame's meta block (its expiry and stale windows)."""
        if len(payload) < HEADER_SIZE or payload[:2] != MAGIC:
            raise CorruptValueError("payload has no hiercache header")
        version, flags = payload[2], payload[3]
        if version > VERSION:
            raise IncompatibleValueError(
                f"payload version {version} is newer than this hiercache's ({VERSION})"
            )
        if version != VERSION:
            raise CorruptValueError(f"unsupported payload version {version}")
        ser = flags & _SER_MASK
        if flags & RESERVED_FLAGS or ser > SER_SIGNED_PICKLE:
            raise IncompatibleValueError(
                f"unknown serializer id {ser} or flags {flags:#04x}: written by a newer hiercache"
            )
        start, meta = HEADER_SIZE, None
        if flags & HAS_META:
            start += META_SIZE
            if len(payload) < start:
                raise CorruptValueError("payload is too short for its meta block")
            expires_ms, stale_ms, swr_ms = META.unpack_from(payload, HEADER_SIZE)
            meta = Meta(expires_ms / 1000, stale_ms / 1000, swr_ms / 1000)
        body = memoryview(payload)[start:]
        if ser == SER_PICKLE:
            raise CorruptValueError("refusing an unsigned pickle payload")
        if ser == SER_SIGNED_PICKLE:
            body = self._verified(payload[:start], body)
        if len(body) > self.max_value_bytes:
            raise CorruptValueError(f"payload body is over max_value_bytes={self.max_value_bytes}")
        try:
            if flags & COMPRESSED:
                body = memoryview(self._decompress(body))
            if ser == SER_JSON:
                return Frame(orjson.loads(body), meta)
            if ser == SER_BYTES:
                return Frame(bytes(body), meta)
            return Frame(pickle.loads(body), meta)  # noqa: S301 - signature verified above
        except CorruptValueError:
            raise
        except Exception as exc:
            raise CorruptValueError(f"undecodable payload: {type(exc).__name__}") from exc

    def _verified(self, header: bytes, body: memoryview) -> memoryview:
        """The body after the signature, once a key we hold is shown to have signed it."""
        if not self._pickle or self._signer is None:
            raise CorruptValueError("refusing a pickle payload: pickle is not enabled")
        if len(body) < SIGNATURE_SIZE:
            raise CorruptValueError("pickle payload is too short for its signature")
        rest = body[SIGNATURE_SIZE:]
        verdict = self._signer.verify(header, body[:SIGNATURE_SIZE], rest)
        if verdict is None:
            raise UnknownSigningKeyError(
                "pickle payload is signed with a key this process does not hold"
            )
        if not verdict:
            raise CorruptValueError("pickle payload signature does not verify: refused")
        return rest

    def _decompress(self, body: memoryview) -> bytes:
        """Decompress without ever allocating more than ``max_value_bytes`` (+ one chunk)."""
        limit = self.max_value_bytes
        try:
            declared = zstandard.frame_content_size(body)
        except zstandard.ZstdError as exc:
            raise CorruptValueError(f"bad zstd frame: {exc}") from exc
        if declared > limit:
            raise CorruptValueError(
                f"payload would decompress to {declared} bytes, over max_value_bytes={limit}"
            )
        if declared >= 0:  # zstd refuses a frame that outputs more than it declared
            out: bytes = self._decompressor().decompress(body)
            return out
        chunks: list[bytes] = []
        total = 0
        with self._decompressor().stream_reader(body) as reader:
            while chunk := reader.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise CorruptValueError(
                        f"payload decompresses past max_value_bytes={limit}: refused"
                    )
                chunks.append(chunk)
        return b"".join(chunks)


def _pickle_round_trip(key: str, value: Any) -> tuple[bytes, Any]:
    try:
        body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return body, pickle.loads(body)  # noqa: S301 - our own bytes, just made
    except Exception as exc:
        raise SerializationError(key, f"pickle failed: {type(exc).__name__}: {exc}") from exc


def _json_error(key: str, value: Any, exc: TypeError) -> SerializationError:
    hint = (
        "dict keys must be str (JSON would turn them into strings)"
        if "Dict key must be str" in str(exc)
        else "store JSON-compatible data or set serialization_format='pickle'"
    )
    return SerializationError(
        key, f"{type(value).__name__} is not JSON-serializable ({exc}); {hint}"
    )


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # e.g. numpy arrays compare element-wise
        return False


def _has_non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity is anywhere orjson would serialize it from."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            if not math.isfinite(v):
                return True
        elif isinstance(v, (str, int, type(None))):
            continue
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
        elif isinstance(v, enum.Enum):
            stack.append(v.value)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            stack.extend(getattr(v, f.name) for f in dataclasses.fields(v))
        elif callable(getattr(v, "tolist", None)):  # numpy arrays and scalars
            stack.append(v.tolist())
    return False
