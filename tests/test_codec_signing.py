"""Signed pickle: a tampered, unsigned or foreign-signed frame is never unpickled."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from hiercache import CacheConfig, CorruptValueError, SerializationFormat
from hiercache.codec import (
    COMPRESSED,
    HEADER_SIZE,
    MAGIC,
    SER_PICKLE,
    SER_SIGNED_PICKLE,
    VERSION,
    Codec,
)
from hiercache.errors import IncompatibleValueError, UnknownSigningKeyError
from hiercache.signing import SIGNATURE_SIZE, Signer, key_id, parse_signing_keys

KEY_A = "a-long-secret-key-number-one-0001"
KEY_B = "b-long-secret-key-number-two-0002"
PICKLE = SerializationFormat.PICKLE


class Marker:
    """Unpickling this creates ``path``: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def codec(*keys: str, **kw: object) -> Codec:
    return Codec(PICKLE, signer=Signer([k.encode() for k in keys]), **kw)  # type: ignore[arg-type]


def signed_marker(path: Path, *keys: str, compressed: bool = False) -> bytes:
    """A correctly signed frame (made by hand, as ``encode`` unpickles to copy the value)."""
    body = pickle.dumps(Marker(path))
    flags = SER_SIGNED_PICKLE
    if compressed:
        import zstandard

        body, flags = zstandard.ZstdCompressor().compress(body), flags | COMPRESSED
    header = MAGIC + bytes((VERSION, flags))
    return header + Signer([k.encode() for k in keys]).sign(header, body) + body


def test_control_a_correctly_signed_marker_does_run(tmp_path: Path) -> None:
    """The marker works: so the refusals below are real refusals."""
    marker = tmp_path / "ran"
    codec(KEY_A).decode(signed_marker(marker, KEY_A))
    assert marker.exists()


def flip(payload: bytes, index: int) -> bytes:
    return payload[:index] + bytes((payload[index] ^ 0x01,)) + payload[index + 1 :]


@pytest.mark.parametrize(
    ("where", "index"),
    [
        ("mac", HEADER_SIZE + 4),
        ("last mac byte", HEADER_SIZE + SIGNATURE_SIZE - 1),
        ("pickle body", HEADER_SIZE + SIGNATURE_SIZE + 3),
        ("last byte", -1),
    ],
)
def test_a_tampered_frame_is_never_unpickled(tmp_path: Path, where: str, index: int) -> None:
    marker = tmp_path / "ran"
    payload = signed_marker(marker, KEY_A)
    index = index % len(payload)
    with pytest.raises(CorruptValueError, match="signature"):
        codec(KEY_A).decode(flip(payload, index))
    assert not marker.exists(), where


def test_a_tampered_header_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = signed_marker(marker, KEY_A, compressed=True)
    plain_flag = payload[:3] + bytes((payload[3] & ~COMPRESSED,)) + payload[4:]
    with pytest.raises(CorruptValueError):
        codec(KEY_A).decode(plain_flag)
    assert not marker.exists()


def test_a_truncated_signature_is_refused(tmp_path: Path) -> None:
    payload = signed_marker(tmp_path / "ran", KEY_A)
    with pytest.raises(CorruptValueError, match="too short"):
        codec(KEY_A).decode(payload[: HEADER_SIZE + 10])


def test_an_unsigned_pickle_frame_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    legacy = MAGIC + bytes((VERSION, SER_PICKLE)) + pickle.dumps(Marker(marker))
    with pytest.raises(CorruptValueError, match="unsigned"):
        codec(KEY_A).decode(legacy)
    # Nor dressed as a signed frame with a made-up signature.
    forged = MAGIC + bytes((VERSION, SER_SIGNED_PICKLE)) + key_id(KEY_A.encode()) + bytes(32)
    with pytest.raises(CorruptValueError, match="signature"):
        codec(KEY_A).decode(forged + pickle.dumps(Marker(marker)))
    assert not marker.exists()


def test_a_frame_signed_with_another_key_is_incompatible_not_corrupt(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(UnknownSigningKeyError) as info:
        codec(KEY_B).decode(signed_marker(marker, KEY_A))
    assert isinstance(info.value, IncompatibleValueError)
    assert not isinstance(info.value, CorruptValueError)
    assert not marker.exists()


def test_signed_pickle_is_refused_when_pickle_is_not_enabled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(CorruptValueError, match="not enabled"):
        Codec(signer=Signer([KEY_A.encode()])).decode(signed_marker(marker, KEY_A))
    assert not marker.exists()


def test_rotation_signs_with_the_first_key_and_verifies_with_any() -> None:
    old_writer, rotated = codec(KEY_A), codec(KEY_B, KEY_A)
    assert rotated.decode(old_writer.encode("k", {1, 2})) == {1, 2}
    new_payload = rotated.encode("k", {3})
    assert new_payload[HEADER_SIZE : HEADER_SIZE + 4] == key_id(KEY_B.encode())
    assert codec(KEY_B).decode(new_payload) == {3}
    with pytest.raises(UnknownSigningKeyError):
        old_writer.decode(new_payload)  # not yet rotated: a miss, not corruption


def test_compressed_signed_pickle_round_trips() -> None:
    c = codec(KEY_A, threshold=16)
    payload = c.encode("k", ["x" * 5000])
    assert payload[3] == SER_SIGNED_PICKLE | COMPRESSED
    assert c.decode(payload) == ["x" * 5000]


@pytest.mark.parametrize(
    "text",
    [f"{KEY_A},{KEY_B}", f" {KEY_A} , {KEY_B} ", f'["{KEY_A}", "{KEY_B}"]'],
)
def test_signing_key_accepts_a_list(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_signing_keys(text) == (KEY_A.encode(), KEY_B.encode())
    monkeypatch.setenv("CACHE_SIGNING_KEY", text)
    config = CacheConfig(serialization_format="pickle")
    writer = Codec.from_config(config)
    assert codec(KEY_A).decode(writer.encode("k", {5})) == {5}  # signed with the first


@pytest.mark.parametrize(
    "text", ["sh0rtk3y", f"{KEY_A},", "[1, 2]", "[not json", f"{KEY_A},t1nyk3y", "[]", " "]
)
def test_bad_signing_keys_are_refused_naming_the_setting_not_the_key(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        CacheConfig(signing_key=text)
    message = str(info.value)
    assert "signing_key" in message
    for secret in ("sh0rtk3y", "t1nyk3y", KEY_A):
        assert secret not in message


def test_the_key_is_in_no_repr_or_log(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    config = CacheConfig(signing_key=f"{KEY_A},{KEY_B}", serialization_format="pickle")
    c = Codec.from_config(config)
    shown = [repr(config), str(config), repr(c), repr(Signer([KEY_A.encode()]))]
    for bad in (signed_marker(tmp_path / "x", KEY_B)[:-1], signed_marker(tmp_path / "x", "z" * 20)):
        with pytest.raises((CorruptValueError, IncompatibleValueError)) as info:
            c.decode(bad)
        shown.append(str(info.value))
    shown.extend(r.getMessage() for r in caplog.records)
    for text in shown:
        assert KEY_A not in text
        assert KEY_B not in text


RANDOM_KEY_CHILD = """
import logging, sys
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from hiercache import SerializationFormat
from hiercache.codec import Codec
a = Codec(SerializationFormat.PICKLE)
b = Codec(SerializationFormat.PICKLE)
assert b.decode(a.encode("k", {1})) == {1}  # one process, one random key
sys.stdout.write(a.encode("k", {2}).hex())
"""


def test_without_a_key_values_are_readable_by_this_process_only() -> None:
    child = subprocess.run(
        [sys.executable, "-c", RANDOM_KEY_CHILD], capture_output=True, text=True, check=True
    )
    assert child.stderr.count("random per-process key") == 1  # one warning, not one per codec
    assert "other processes cannot read them" in child.stderr
    payload = bytes.fromhex(child.stdout)
    with pytest.raises(UnknownSigningKeyError):
        Codec(PICKLE).decode(payload)
