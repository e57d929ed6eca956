"""The L1 glob matcher is Redis' own: proven against SCAN MATCH on a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hiercache.redis_glob import RedisGlob, compile_glob, escape_glob, glob_match
from servers import RedisServer


@pytest.fixture(scope="module")
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    c = redis.Redis(host=redis_server.host, port=redis_server.port, db=3)
    c.flushdb()
    yield c
    c.flushdb()
    c.close()


def scan(client: redis.Redis, pattern: str | bytes, keys: list[bytes]) -> set[bytes]:
    client.flushdb()
    client.mset(dict.fromkeys(keys, b"1"))
    return set(client.scan_iter(match=pattern, count=1000))


KEY_ALPHABET = "ab-^!\\[]*?éx日\x00"
PATTERN_ALPHABET = KEY_ALPHABET + "**??[[]]^^\\-"
KEYS = st.lists(st.text(KEY_ALPHABET, min_size=1, max_size=6), min_size=1, max_size=12)


@st.composite
def keys_and_pattern(draw: st.DrawFn) -> tuple[list[str], str]:
    """A pattern, and keys that include near-instances of it, so many patterns match some."""
    pattern = draw(st.text(PATTERN_ALPHABET, max_size=8))
    filler = draw(st.text(KEY_ALPHABET, max_size=3))
    one = draw(st.sampled_from(KEY_ALPHABET))
    near = [
        pattern,
        pattern.replace("*", ""),
        pattern.replace("*", filler).replace("?", one),
        pattern.replace("*", filler).replace("?", one).replace("[", "").replace("]", ""),
        pattern.replace("\\", "").replace("*", one),
    ]
    keys = draw(KEYS) + [k for k in near if k]
    return keys, pattern


SLOW = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SLOW
@given(case=keys_and_pattern())
def test_near_instances_of_a_pattern_match_as_in_scan(
    client: redis.Redis, case: tuple[list[str], str]
) -> None:
    keys, pattern = case
    encoded = [k.encode() for k in keys]
    assert {k for k in encoded if glob_match(pattern, k)} == scan(client, pattern, encoded)


@SLOW
@given(keys=KEYS, pattern=st.text(PATTERN_ALPHABET, max_size=8))
@example(keys=["é", "ab", "a", "日"], pattern="?")
@example(keys=["é", "ab", "a", "日"], pattern="??")
@example(keys=["b", "!", "x", "^"], pattern="[!b]")
@example(keys=["b", "!", "x", "^"], pattern="[^b]")
@example(keys=["a\\", "a", "ab"], pattern="a\\")
@example(keys=["a", "b", "[", "ab"], pattern="[ab")
@example(keys=["a", "é", "x"], pattern="[a-é]")
def test_matches_exactly_what_scan_match_returns(
    client: redis.Redis, keys: list[str], pattern: str
) -> None:
    encoded = [k.encode() for k in keys]
    expected = scan(client, pattern, encoded)
    assert {k for k in encoded if glob_match(pattern, k)} == expected
    assert {k.encode() for k in keys if glob_match(pattern, k)} == expected  # str keys too


BYTE_ALPHABET = st.sampled_from([*b"ab*?[]^\\-!", 0x00, 0x7F, 0x80, 0xA9, 0xC3, 0xFF])


@SLOW
@given(
    keys=st.lists(st.binary(min_size=1, max_size=5), min_size=1, max_size=12),
    pattern=st.lists(BYTE_ALPHABET, max_size=8).map(bytes),
)
@example(keys=[b"A", b"\xc3", b"\x80", b"z"], pattern=b"[a-\xc3]")
@example(keys=[b"A", b"\xc3", b"\x80", b"\xff"], pattern=b"[\x80-\xff]")
def test_raw_byte_patterns_and_signed_ranges_match_scan(
    client: redis.Redis, keys: list[bytes], pattern: bytes
) -> None:
    assert {k for k in keys if glob_match(pattern, k)} == scan(client, pattern, keys)


@SLOW
@given(keys=KEYS, text=st.text(KEY_ALPHABET, min_size=1, max_size=6))
def test_escaped_text_matches_only_itself(client: redis.Redis, keys: list[str], text: str) -> None:
    keys = [*keys, text]
    pattern = escape_glob(text)
    assert scan(client, pattern, [k.encode() for k in keys]) == {text.encode()}
    assert [k for k in keys if glob_match(pattern, k)] == [k for k in keys if k == text]


@SLOW
@given(
    keys=KEYS,
    prefix=st.text(PATTERN_ALPHABET, max_size=5),
    pattern=st.text(PATTERN_ALPHABET, max_size=6),
)
def test_an_escaped_prefix_plus_pattern_matches_like_the_pattern_on_bare_keys(
    client: redis.Redis, keys: list[str], prefix: str, pattern: str
) -> None:
    """What the core relies on: L1 holds bare keys, Redis holds ``key_prefix + key``."""
    in_redis = scan(client, escape_glob(prefix) + pattern, [(prefix + k).encode() for k in keys])
    assert {(prefix + k).encode() for k in keys if glob_match(pattern, k)} == in_redis


@pytest.mark.parametrize(
    ("pattern", "yes", "no"),
    [
        ("user:*", ["user:", "user:1", "user:é"], ["use", "xuser:1"]),
        ("?", ["a", "\x00"], ["é", "", "ab"]),  # é is two bytes
        ("??", ["é", "ab"], ["a", "日"]),  # 日 is three bytes
        ("[^b]", ["a", "!"], ["b", "é"]),
        ("[!b]", ["!", "b"], ["a", "c"]),  # not a negation in Redis
        ("[b-a]", ["a", "b"], ["c"]),  # reversed ranges work
        ("\\*", ["*"], ["a", "\\*"]),
        ("a\\", ["a\\"], ["a"]),  # trailing backslash is literal
        ("[ab", ["a", "b"], ["[", "ab", "c"]),  # unclosed bracket: the rest is the set
        ("[", [], ["[", "a"]),
        ("[]", [], ["]", "a"]),
        ("[^]", ["a", "]"], ["", "ab"]),
        ("[\\]]", ["]"], ["\\"]),
        ("a*b*c", ["abc", "axxbyyc", "abcbc"], ["acb", "ab"]),
        ("*a*a*a*b", ["aaab", "xaxaxaxb"], ["aaa" * 20 + "c"]),
        ("", [""], ["a"]),
    ],
)
def test_documented_cases(pattern: str, yes: list[str], no: list[str]) -> None:
    matcher = RedisGlob(pattern)
    assert [k for k in yes if matcher.match(k)] == yes
    assert [k for k in no if matcher.match(k)] == []


def test_escape_glob_escapes_every_metacharacter() -> None:
    assert escape_glob("a*b?c[d]e\\f^g-h!") == "a\\*b\\?c\\[d\\]e\\\\f^g-h!"


def test_patterns_are_compiled_once() -> None:
    assert compile_glob("tenant:*:user") is compile_glob("tenant:*:user")
    assert repr(compile_glob("x*")) == "RedisGlob('x*')"


def test_a_pathological_pattern_is_linear() -> None:
    """No backtracking blow-up: 40 stars against a 1 KB non-matching key."""
    matcher = RedisGlob("*a" * 40 + "b")
    assert not matcher.match("a" * 1024)
    assert matcher.match("a" * 1024 + "b")
