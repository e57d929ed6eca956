"""Value encoding for L2: a 4-byte header, a serializer, optional zstd.

Layout: ``b"HC"``, format version (1 byte), flags (1 byte), then the body.
Flags: low 3 bits are the serializer id, bit 7 means the body is zstd-compressed.
Readers refuse unknown versions and serializers instead of guessing, and refuse
pickle unless pickle was configured: a shared Redis must not be a way to run code.
"""

from __future__ import annotations

import pickle
import threading
from typing import Any, Final

import orjson
import zstandard

from hiercache.errors import CorruptValueError, SerializationError
from hiercache.settings import CacheConfig, SerializationFormat

MAGIC: Final = b"HC"
VERSION: Final = 1
HEADER_SIZE: Final = 4
SER_JSON: Final = 0
SER_PICKLE: Final = 1
SER_BYTES: Final = 2
COMPRESSED: Final = 0x80
_SER_MASK: Final = 0x07
_ORJSON_OPTS: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class Codec:
    """Encodes Python values to L2 payloads and back. Thread-safe."""

    def __init__(
        self,
        serialization: SerializationFormat = SerializationFormat.JSON,
        *,
        compression: bool = True,
        threshold: int = 1024,
        level: int = 3,
    ) -> None:
        self.serialization = serialization
        self.compression = compression
        self.threshold = threshold
        self.level = level
        # zstd (de)compressors are not safe to share across threads: one of each per thread,
        # reused across calls.
        self._local = threading.local()

    @classmethod
    def from_config(cls, config: CacheConfig) -> Codec:
        return cls(
            config.serialization_format,
            compression=config.compression_enabled,
            threshold=config.compression_threshold,
            level=config.compression_level,
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

    def encode(self, key: str, value: Any) -> bytes:
        """Encode ``value``; raise ``SerializationError`` naming ``key`` if it cannot be."""
        if type(value) is bytes:
            ser, body = SER_BYTES, value
        elif self.serialization is SerializationFormat.PICKLE:
            try:
                ser, body = SER_PICKLE, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                raise SerializationError(key, f"pickle failed: {exc}") from exc
        else:
            try:
                ser, body = SER_JSON, orjson.dumps(value, option=_ORJSON_OPTS)
            except TypeError as exc:
                raise SerializationError(
                    key,
                    f"{type(value).__name__} is not JSON-serializable ({exc}); "
                    "store JSON-compatible data or set serialization_format='pickle'",
                ) from exc
        flags = ser
        if self.compression and len(body) > self.threshold:
            packed = self._compressor().compress(body)
            if len(packed) < len(body):
                body, flags = packed, ser | COMPRESSED
        return MAGIC + bytes((VERSION, flags)) + body

    def decode(self, payload: bytes) -> Any:
        """Decode a payload; raise ``CorruptValueError`` if it is not one we can trust."""
        if len(payload) < HEADER_SIZE or payload[:2] != MAGIC:
            raise CorruptValueError("payload has no hiercache header")
        version, flags = payload[2], payload[3]
        if version != VERSION:
            raise CorruptValueError(f"unsupported payload version {version}")
        body = memoryview(payload)[HEADER_SIZE:]
        try:
            if flags & COMPRESSED:
                body = memoryview(self._decompressor().decompress(body))
            ser = flags & _SER_MASK
            if ser == SER_JSON:
                return orjson.loads(body)
            if ser == SER_BYTES:
                return bytes(body)
            if ser == SER_PICKLE:
                if self.serialization is not SerializationFormat.PICKLE:
                    raise CorruptValueError("refusing a pickle payload: pickle is not enabled")
                return pickle.loads(body)  # noqa: S301 - opt-in, see serialization_format
        except CorruptValueError:
            raise
        except Exception as exc:
            raise CorruptValueError(f"undecodable payload: {exc}") from exc
        raise CorruptValueError(f"unknown serializer id {ser}")
