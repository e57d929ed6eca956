"""Codec: header layout, JSON default, bytes passthrough, zstd, refusal of untrusted input."""

from __future__ import annotations

import io
import os
import pickle
import threading
import tracemalloc
from collections.abc import Callable

import orjson
import pytest
import zstandard

from hiercache import CacheConfig, CorruptValueError, SerializationError, SerializationFormat
from hiercache.codec import (
    COMPRESSED,
    HAS_META,
    HEADER_SIZE,
    MAGIC,
    SER_BYTES,
    SER_JSON,
    SER_PICKLE,
    SER_SIGNED_PICKLE,
    VERSION,
    Codec,
    Meta,
)
from hiercache.errors import IncompatibleValueError, ValueTooLargeError
from hiercache.signing import Signer

COMPRESSIBLE = {"text": "abc" * 2000}  # ~6 KB of JSON that zstd shrinks a lot


def header(payload: bytes) -> tuple[bytes, int, int]:
    return payload[:2], payload[2], payload[3]


def test_header_layout_json() -> None:
    payload = Codec().encode("k", {"a": 1})
    assert header(payload) == (b"HC", 1, SER_JSON)
    assert MAGIC == b"HC"
    assert VERSION == 1
    assert payload[4:] == orjson.dumps({"a": 1})


def test_json_is_the_default() -> None:
    codec = Codec.from_config(CacheConfig())
    assert codec.serialization is SerializationFormat.JSON
    payload = codec.encode("k", [1, "two", None, 3.5, {"x": True}])
    assert payload[3] & 0x07 == SER_JSON
    assert codec.decode(payload) == [1, "two", None, 3.5, {"x": True}]


def test_from_config_copies_settings() -> None:
    codec = Codec.from_config(
        CacheConfig(
            compression_enabled=False,
            compression_threshold=10,
            compression_level=9,
            serialization_format="pickle",
        )
    )
    assert (codec.compression, codec.threshold, codec.level) == (False, 10, 9)
    assert codec.serialization is SerializationFormat.PICKLE


@pytest.mark.parametrize("value", [b"", b"\x00\xffraw", bytes(range(256))])
def test_bytes_pass_through_untouched(value: bytes) -> None:
    codec = Codec(compression=False)
    payload = codec.encode("k", value)
    assert header(payload) == (b"HC", 1, SER_BYTES)
    assert payload[4:] == value
    decoded = codec.decode(payload)
    assert decoded == value
    assert type(decoded) is bytes


def test_bytes_pass_through_even_with_pickle() -> None:
    payload = Codec(SerializationFormat.PICKLE).encode("k", b"raw")
    assert payload == b"HC\x01\x02raw"


def test_small_values_are_not_compressed() -> None:
    value = "x" * 100
    payload = Codec(threshold=1024).encode("k", value)
    assert not payload[3] & COMPRESSED
    assert payload[4:] == orjson.dumps(value)


def test_value_just_at_threshold_is_not_compressed() -> None:
    value = "y" * 1022  # JSON body: 1024 bytes with the quotes
    body = orjson.dumps(value)
    assert len(body) == 1024
    assert not Codec(threshold=1024).encode("k", value)[3] & COMPRESSED
    assert Codec(threshold=1023).encode("k", value)[3] & COMPRESSED


def test_large_compressible_values_are_compressed_and_round_trip() -> None:
    codec = Codec(threshold=1024)
    payload = codec.encode("k", COMPRESSIBLE)
    assert payload[3] == SER_JSON | COMPRESSED
    raw = orjson.dumps(COMPRESSIBLE)
    assert len(payload) < len(raw)
    assert zstandard.ZstdDecompressor().decompress(payload[4:]) == raw
    assert codec.decode(payload) == COMPRESSIBLE


def test_compressed_bytes_round_trip() -> None:
    codec = Codec(threshold=16)
    value = b"z" * 5000
    payload = codec.encode("k", value)
    assert payload[3] == SER_BYTES | COMPRESSED
    assert codec.decode(payload) == value


def test_compression_disabled_never_compresses() -> None:
    payload = Codec(compression=False, threshold=0).encode("k", COMPRESSIBLE)
    assert payload[3] == SER_JSON
    assert payload[4:] == orjson.dumps(COMPRESSIBLE)


def test_incompressible_values_are_stored_plain() -> None:
    noise = os.urandom(4096)
    payload = Codec(threshold=16).encode("k", noise)
    assert not payload[3] & COMPRESSED  # zstd output would be larger than the input
    assert payload[4:] == noise


def test_a_compressed_payload_decodes_with_another_codec_instance() -> None:
    payload = Codec(threshold=0, level=19).encode("k", COMPRESSIBLE)
    assert Codec(compression=False).decode(payload) == COMPRESSIBLE


def test_compressor_objects_are_reused_per_thread() -> None:
    codec = Codec(threshold=16)
    first_c, first_d = codec._compressor(), codec._decompressor()
    for _ in range(3):
        codec.decode(codec.encode("k", COMPRESSIBLE))
    assert codec._compressor() is first_c
    assert codec._decompressor() is first_d

    other: list[object] = []

    def in_thread() -> None:
        codec.decode(codec.encode("k", COMPRESSIBLE))
        other.extend([codec._compressor(), codec._decompressor()])

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert other[0] is not first_c
    assert other[1] is not first_d
    assert codec._compressor() is first_c


def test_compressor_uses_configured_level(monkeypatch: pytest.MonkeyPatch) -> None:
    levels: list[int] = []
    real = zstandard.ZstdCompressor

    def spy(*, level: int) -> zstandard.ZstdCompressor:
        levels.append(level)
        return real(level=level)

    monkeypatch.setattr(zstandard, "ZstdCompressor", spy)
    codec = Codec(threshold=0, level=7)
    codec.encode("a", COMPRESSIBLE)
    codec.encode("b", COMPRESSIBLE)
    assert levels == [7]  # built once, then reused


# -- pickle ------------------------------------------------------------------------
class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x

    __hash__ = None  # type: ignore[assignment]


def test_pickle_round_trip_when_configured() -> None:
    codec = Codec(SerializationFormat.PICKLE)
    payload = codec.encode("k", Point(3))
    assert payload[3] & 0x07 == SER_SIGNED_PICKLE
    assert codec.decode(payload) == Point(3)


def test_pickle_refused_on_read_when_not_configured() -> None:
    payload = Codec(SerializationFormat.PICKLE, compression=False).encode("k", Point(3))
    with pytest.raises(CorruptValueError, match="pickle"):
        Codec(SerializationFormat.JSON).decode(payload)


def test_compressed_pickle_refused_on_read_when_not_configured() -> None:
    payload = Codec(SerializationFormat.PICKLE, threshold=0).encode("k", ["a" * 3000])
    assert payload[3] & COMPRESSED
    with pytest.raises(CorruptValueError, match="pickle"):
        Codec().decode(payload)


def test_a_crafted_pickle_is_never_loaded() -> None:
    calls: list[str] = []

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (calls.append, ("ran",))

    payload = MAGIC + bytes((VERSION, SER_PICKLE)) + pickle.dumps(Evil())
    with pytest.raises(CorruptValueError):
        Codec().decode(payload)
    assert calls == []


# -- refusal of garbage ------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"HC",
        b"HC\x01",
        b"XX\x01\x00{}",
        b'{"a": 1}',
        b"HC\x00\x00{}",
        b"HC\x01\x00{not json",
        b"HC\x01\x80not zstd",  # claims compression
        b"HC\x01\x01garbage",  # pickle id, not a pickle (and not enabled)
    ],
)
def test_garbage_is_corrupt(payload: bytes) -> None:
    with pytest.raises(CorruptValueError):
        Codec().decode(payload)


def test_unknown_version_is_named() -> None:
    with pytest.raises(IncompatibleValueError, match="version 9"):
        Codec().decode(b"HC\x09\x00{}")


def test_garbage_pickle_is_corrupt_even_with_pickle_enabled() -> None:
    with pytest.raises(CorruptValueError):
        Codec(SerializationFormat.PICKLE).decode(b"HC\x01\x01not a pickle")


# -- unserializable values ---------------------------------------------------------
@pytest.mark.parametrize("value", [object(), {1, 2}, Point(1), lambda: None])
def test_unserializable_value_names_the_key(value: object) -> None:
    with pytest.raises(SerializationError) as info:
        Codec().encode("user:42", value)
    assert info.value.key == "user:42"
    assert "'user:42'" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_unpicklable_value_names_the_key() -> None:
    with pytest.raises(SerializationError, match="'job:1'"):
        Codec(SerializationFormat.PICKLE).encode("job:1", lambda: None)


def test_json_edge_values_round_trip() -> None:
    codec = Codec()
    for value in (None, True, 0, -1.5, "", "ünïcødé", [], {}, {"nested": [{"a": None}]}):
        assert codec.decode(codec.encode("k", value)) == value


def test_one_decompressor_per_thread_serves_every_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = zstandard.ZstdDecompressor

    def spy() -> zstandard.ZstdDecompressor:
        made.append(real())
        return made[-1]  # type: ignore[return-value]

    monkeypatch.setattr(zstandard, "ZstdDecompressor", spy)
    codec = Codec(threshold=0)
    payload = codec.encode("k", COMPRESSIBLE)
    for _ in range(5):
        assert codec.decode(payload) == COMPRESSIBLE
    assert len(made) == 1


# -- rolling upgrades: newer frames are a clean miss, not corruption -------------------
@pytest.mark.parametrize(
    "payload",
    [
        b"HC\x02\x00{}",  # a newer format version
        b"HC\xff\x00{}",
        b"HC\x01\x04{}",  # serializer ids 4-7 belong to newer versions
        b"HC\x01\x07{}",
        b"HC\x01\x08{}",  # a reserved flag bit
        b"HC\x01\x20{}",
    ],
)
def test_frames_from_a_newer_version_are_incompatible_not_corrupt(payload: bytes) -> None:
    with pytest.raises(IncompatibleValueError) as info:
        Codec().decode(payload)
    assert not isinstance(info.value, CorruptValueError)


def test_version_zero_is_corrupt_not_incompatible() -> None:
    with pytest.raises(CorruptValueError):
        Codec().decode(b"HC\x00\x00{}")


# -- max_value_bytes ---------------------------------------------------------------
@pytest.mark.parametrize("value", ["x" * 2000, b"y" * 2001, ["z" * 100] * 20])
def test_encode_refuses_a_value_over_max_value_bytes_naming_the_key(value: object) -> None:
    codec = Codec(max_value_bytes=2000, threshold=0)  # compressible or not: the raw size counts
    with pytest.raises(ValueTooLargeError) as info:
        codec.encode_value("big:1", value)
    assert isinstance(info.value, SerializationError)
    assert info.value.key == "big:1"
    assert info.value.limit == 2000
    assert "'big:1'" in str(info.value)
    assert "max_value_bytes=2000" in str(info.value)


def test_a_value_at_max_value_bytes_is_accepted() -> None:
    codec = Codec(max_value_bytes=2000)
    assert codec.decode(codec.encode("k", b"y" * 2000)) == b"y" * 2000
    assert codec.decode(codec.encode("k", "x" * 1998)) == "x" * 1998  # 2000 with quotes


def test_max_value_bytes_comes_from_config() -> None:
    assert CacheConfig().max_value_bytes == 16 * 1024 * 1024
    assert Codec.from_config(CacheConfig(max_value_bytes=123)).max_value_bytes == 123


def test_an_oversized_plain_body_is_corrupt_on_read() -> None:
    payload = Codec(max_value_bytes=10_000).encode("k", b"a" * 5000)
    with pytest.raises(CorruptValueError, match="max_value_bytes"):
        Codec(max_value_bytes=4000).decode(payload)


MB = 1024 * 1024
BOMB_SIZE = 100 * MB


def bomb(*, declare_size: bool) -> bytes:
    """A ~3 KB frame of zeros that decompresses to 100 MB, built without 100 MB in memory."""
    out = io.BytesIO()
    size = BOMB_SIZE if declare_size else -1
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=declare_size)
    with cctx.stream_writer(out, size=size, closefd=False) as writer:
        zeros = bytes(MB)
        for _ in range(BOMB_SIZE // MB):
            writer.write(zeros)
    return b"HC" + bytes((VERSION, SER_BYTES | COMPRESSED)) + out.getvalue()


def peak_while(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        fn()
    except CorruptValueError:
        pass
    else:
        raise AssertionError("the bomb was decoded")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def test_a_bomb_that_declares_its_size_is_refused_without_allocating() -> None:
    payload = bomb(declare_size=True)
    assert len(payload) < 8 * 1024
    codec = Codec()
    assert zstandard.frame_content_size(payload[4:]) == BOMB_SIZE
    peak = peak_while(lambda: codec.decode(payload))
    assert peak < 256 * 1024, peak


@pytest.mark.parametrize("limit", [1 * MB, 16 * MB])
def test_a_bomb_without_a_declared_size_is_refused_with_bounded_memory(limit: int) -> None:
    payload = bomb(declare_size=False)
    assert len(payload) < 8 * 1024
    assert zstandard.frame_content_size(payload[4:]) == -1
    codec = Codec(max_value_bytes=limit)
    codec.decode(Codec(threshold=0).encode("k", b"warm" * 100))  # build the decompressor first
    peak = peak_while(lambda: codec.decode(payload))
    assert peak < limit + 1 * MB, peak  # the limit plus a chunk, never the 100 MB
    with pytest.raises(CorruptValueError, match="max_value_bytes"):
        codec.decode(payload)


def test_a_streamed_frame_within_the_limit_decodes() -> None:
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(b"q" * 300_000)
    payload = b"HC" + bytes((VERSION, SER_BYTES | COMPRESSED)) + out.getvalue()
    assert zstandard.frame_content_size(payload[4:]) == -1
    assert Codec(max_value_bytes=300_000).decode(payload) == b"q" * 300_000
    with pytest.raises(CorruptValueError):
        Codec(max_value_bytes=299_999).decode(payload)


# -- the meta block: expiry and stale windows travel with the value ---------------------
@pytest.mark.parametrize("value", [{"a": [1, 2]}, b"raw", "x" * 5000, None])
def test_meta_round_trips_with_the_value(value: object) -> None:
    codec = Codec()
    meta = Meta(expires_at=1_900_000_000.123, stale_if_error=30.5, stale_while_revalidate=2)
    payload, for_l1 = codec.encode_value("k", value, meta)
    assert payload[3] & HAS_META
    frame = codec.decode_frame(payload)
    assert frame.value == for_l1
    assert frame.meta == meta
    assert frame.meta is not None
    assert frame.meta.stale_until == pytest.approx(1_900_000_030.623)
    assert codec.decode(payload) == for_l1


def test_a_frame_without_meta_reads_as_before() -> None:
    frame = Codec().decode_frame(Codec().encode("k", [1]))
    assert frame == ([1], None)


def test_signed_pickle_covers_the_meta_block() -> None:
    codec = Codec(SerializationFormat.PICKLE, signer=Signer.from_setting("k" * 32))
    payload = codec.encode_value("k", {1, 2}, Meta(expires_at=100.0)).payload
    assert codec.decode_frame(payload).value == {1, 2}
    tampered = bytearray(payload)
    tampered[HEADER_SIZE + 3] ^= 0x01  # push the expiry: the signature must catch it
    with pytest.raises(CorruptValueError):
        codec.decode(bytes(tampered))


def test_a_truncated_meta_block_is_corrupt() -> None:
    with pytest.raises(CorruptValueError, match="meta"):
        Codec().decode(b"HC\x01\x40\x00\x00")
