"""``config``, ``doctor``, ``ping``, ``get``, ``delete``, ``invalidate`` and ``bench``, end to
end: ``hiercache`` in a subprocess, with settings from its environment, against a real
redis-server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import trustme

from hiercache import CacheConfig, HierarchicalCacheManager
from servers import run_redis


def hiercache(
    *args: str, env: dict[str, str] | None = None, stdin: str = "", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CACHE_", "REDIS_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-m", "hiercache", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        input=stdin,
        cwd=cwd,
        env={**base, "COLUMNS": "160", **(env or {})},
    )


@pytest.fixture
def cache(redis_url: str) -> Iterator[HierarchicalCacheManager]:
    """The cache the CLI will see (the same settings), to write values with."""
    manager = HierarchicalCacheManager(
        CacheConfig(redis_url=redis_url, write_through=True, name="cli")
    )
    yield manager
    manager.sync.close()


def env_for(redis_url: str, **more: str) -> dict[str, str]:
    return {"CACHE_REDIS_URL": redis_url, **more}


def test_config_shows_settings_with_secrets_masked(tmp_path: Path) -> None:
    done = hiercache(
        "config",
        env={
            "CACHE_REDIS_URL": "redis://:hunter2@db.internal:6380/2",
            "CACHE_SIGNING_KEY": "s3cret-signing-key-of-enough-length-0123456789",
            "CACHE_L1_MAX_SIZE": "250",
        },
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout
    assert "s3cret" not in done.stdout
    lines = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert "******" in lines["redis_url"]
    assert "******" in lines["signing_key"]
    assert "250" in lines["l1_max_size"]
    assert "environment" in lines["l1_max_size"]
    assert "default" in lines["l1_strategy"]
    assert "CACHE_L1_MAX_SIZE" in lines["l1_max_size"]
    assert "redis://db.internal:6380/2" in done.stdout  # the target, without credentials
    assert set(lines) >= set(CacheConfig.model_fields)


def test_config_changed_lists_only_the_environment(tmp_path: Path) -> None:
    done = hiercache("config", "--changed", env={"CACHE_L1_MAX_SIZE": "9"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [line.split("│")[1].strip() for line in done.stdout.splitlines() if "│" in line]
    assert rows == ["l1_max_size"]  # the header row uses heavy rules


def test_invalid_settings_exit_2_one_line_each(tmp_path: Path) -> None:
    done = hiercache(
        "config",
        env={"CACHE_L1_MAX_SIZE": "0", "CACHE_REDIS_URL": "http://:pw@x", "REDIS_PORT": "99999"},
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "pw" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 3, lines
    assert any(
        line.startswith("hiercache config: error: invalid setting CACHE_L1_MAX_SIZE")
        for line in lines
    )
    assert any("CACHE_REDIS_URL (redis_url): must start with redis://" in line for line in lines)
    assert any("CACHE_REDIS_PORT (redis_port)" in line for line in lines)
    # every command that reads the settings says the same
    for command in ("ping", "doctor", "get k", "delete k --yes", "invalidate k --yes"):
        other = hiercache(*command.split(), env={"CACHE_L1_MAX_SIZE": "0"}, cwd=tmp_path)
        assert other.returncode == 2, command
        assert f"hiercache {command.split()[0]}: error: invalid setting CACHE_L1_MAX_SIZE" in (
            other.stderr
        )


def test_ping(redis_url: str) -> None:
    done = hiercache("ping", "--count", "5", env=env_for(redis_url))
    assert done.returncode == 0, done.stderr
    target = redis_url.replace("redis://", "")
    assert done.stdout.startswith(f"PONG from redis://{target}: median ")
    assert "over 5 round trips" in done.stdout


def test_ping_unreachable_is_one_line_exit_1() -> None:
    with run_redis() as server:
        url = server.url
    done = hiercache("ping", env=env_for(url, CACHE_L2_CONNECT_TIMEOUT_SECONDS="0.5"))
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()[-1:]
    assert line.startswith("hiercache ping: error: L2 at redis://127.0.0.1:")
    assert "unreachable" in line
    assert "Traceback" not in done.stderr


def test_get_reads_through_the_key_layout(
    redis_url: str, cache: HierarchicalCacheManager, raw: redis.Redis
) -> None:
    cache.sync.set("user:1", {"name": "Ada", "tags": ["x"]})
    assert raw.exists("hiercache:user:1")  # the default key prefix
    done = hiercache("get", "user:1", env=env_for(redis_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{\n  "name": "Ada",\n  "tags": [\n    "x"\n  ]\n}\n'
    miss = hiercache("get", "user:2", env=env_for(redis_url))
    assert miss.returncode == 1
    assert (
        miss.stderr.strip() == "hiercache get: error: 'user:2' is not cached (a miss in L1 and L2)"
    )
    prefixed = hiercache("get", "user:1", env=env_for(redis_url, CACHE_KEY_PREFIX="other:"))
    assert prefixed.returncode == 1


def test_get_a_bad_key_is_a_usage_error(redis_url: str) -> None:
    done = hiercache("get", "", env=env_for(redis_url))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith("hiercache get: error: ")
    assert "key" in line


def test_delete_asks_unless_yes(
    redis_url: str, cache: HierarchicalCacheManager, raw: redis.Redis
) -> None:
    cache.sync.set("k", 1)
    refused = hiercache("delete", "k", env=env_for(redis_url), stdin="n\n")
    assert refused.returncode == 1
    assert "Delete 'k' from redis://" in refused.stderr
    assert "nothing changed" in refused.stderr
    assert raw.exists("hiercache:k")
    no_answer = hiercache("delete", "k", env=env_for(redis_url), stdin="")
    assert no_answer.returncode == 1
    assert raw.exists("hiercache:k")
    confirmed = hiercache("delete", "k", env=env_for(redis_url), stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip() == "k: deleted"
    assert not raw.exists("hiercache:k")
    again = hiercache("delete", "k", "--yes", env=env_for(redis_url))
    assert again.returncode == 0
    assert again.stdout.strip() == "k: not found"


def test_invalidate_removes_only_matching_keys(
    redis_url: str, cache: HierarchicalCacheManager, raw: redis.Redis
) -> None:
    cache.sync.set_many({"user:1": 1, "user:2": 2, "order:1": 3})
    raw.set("unrelated:user:3", b"x")  # outside the key prefix
    refused = hiercache("invalidate", "user:*", env=env_for(redis_url), stdin="n\n")
    assert refused.returncode == 1
    assert raw.exists("hiercache:user:1")
    done = hiercache("invalidate", "user:*", "--yes", env=env_for(redis_url))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2 keys matching 'user:*' removed"
    assert sorted(raw.keys()) == [b"hiercache:order:1", b"unrelated:user:3"]


def test_doctor_reports_a_healthy_redis(redis_url: str) -> None:
    done = hiercache(
        "doctor",
        env=env_for(
            redis_url,
            OTEL_SERVICE_NAME="shop",
            OTEL_EXPORTER_OTLP_HEADERS="authorization=Bearer tok3n",
        ),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    assert f"Redis {version}" in out
    assert "PING answered" in out
    assert "median" in out
    assert "standalone" in out
    assert "TLS" in out
    assert "off (loopback)" in out
    assert "backplane" in out
    assert "OTEL_SERVICE_NAME=shop" in out
    assert "tok3n" not in out
    assert "OTEL_EXPORTER_OTLP_HEADERS=******" in out
    assert "the SDK" in out
    assert "FAIL" not in out


def test_doctor_says_what_to_fix_when_redis_is_down() -> None:
    with run_redis() as server:
        url = server.url
    done = hiercache("doctor", env=env_for(url, CACHE_L2_CONNECT_TIMEOUT_SECONDS="0.5"))
    assert done.returncode == 1
    assert "FAIL" in done.stdout
    assert "What to fix:" in done.stdout
    assert "start Redis or point CACHE_REDIS_URL at it" in done.stdout
    assert "set OTEL_SERVICE_NAME" in done.stdout
    assert "Traceback" not in done.stderr


def test_doctor_warns_about_clear_text_to_a_remote_host() -> None:
    done = hiercache(
        "doctor",
        env={"CACHE_REDIS_HOST": "192.0.2.1", "CACHE_L2_CONNECT_TIMEOUT_SECONDS": "0.2"},
    )
    assert done.returncode == 1
    assert "off towards 192.0.2.1" in done.stdout
    assert "use a rediss:// URL" in done.stdout


def test_bench_needs_a_source_checkout(tmp_path: Path) -> None:
    done = hiercache("bench", "--checkout", str(tmp_path))
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "the benchmarks need a source checkout" in line
    assert "pip install -e '.[bench]'" in line


def test_bench_runs_make_bench_of_the_checkout() -> None:
    done = hiercache("bench", "--dry-run")
    assert done.returncode == 0, done.stderr
    root = Path(__file__).resolve().parents[1]
    assert done.stdout.split()[1:] == ["-C", str(root), "bench"]


def test_bench_without_the_extra_names_it() -> None:
    script = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'cachetools':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from hiercache.cli import main\n"
        "sys.exit(main(['bench', '--dry-run']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "the benchmarks need the 'bench' extra (missing: cachetools)" in line


def test_doctor_and_ping_over_tls_with_a_password(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, chain, key = tmp_path / "ca.pem", tmp_path / "chain.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    with run_redis(password="s3cr3t-pw", tls=(chain, key)) as server:
        env = {
            "CACHE_REDIS_URL": f"rediss://:s3cr3t-pw@127.0.0.1:{server.port}/0",
            "CACHE_REDIS_SSL_CA_CERTS": str(ca_file),
        }
        doctor = hiercache("doctor", env=env)
        ping = hiercache("ping", env=env)
        config = hiercache("config", env=env)
        plain = hiercache(
            "doctor",
            env=env
            | {
                "CACHE_REDIS_URL": f"redis://127.0.0.1:{server.port}/0",
                "CACHE_L2_OPERATION_TIMEOUT_SECONDS": "0.2",
            },
        )
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert f"on, server certificate checked against {ca_file}" in doctor.stdout.replace("\n", "")
    assert "a password is set" in doctor.stdout
    assert ping.returncode == 0, ping.stderr
    assert ping.stdout.startswith(f"PONG from rediss://127.0.0.1:{server.port}/0")
    for done in (doctor, ping, config):
        assert "s3cr3t-pw" not in done.stdout + done.stderr
    assert plain.returncode == 1  # plain text to a TLS port: a finding, not a traceback
    assert "FAIL" in plain.stdout
    assert "Traceback" not in plain.stderr
