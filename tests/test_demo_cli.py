"""``hiercache demo``: as a subprocess on the embedded L2 and on a real Redis, and in-process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from hiercache.cli import main

# A row of the Rich table: "  l1_memory   186   62.0%   ..."
TIER_ROW = re.compile(r"^\s*(l1_memory|l2_redis|coalesced|backend)\s+(\d+)\s+[\d.]+%", re.M)


def run_demo(tmp_path: Path, *args: str, redis_url: str | None = None) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CACHE_", "REDIS_", "OTEL_")) and k != "REDIS_URL"
    }
    if redis_url is not None:
        env["CACHE_REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, "-m", "hiercache", "demo", *args],
        cwd=tmp_path,  # no stray .env
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def check_table(out: str, requests: int) -> dict[str, int]:
    rows = {tier: int(n) for tier, n in TIER_ROW.findall(out)}
    assert set(rows) == {"l1_memory", "l2_redis", "coalesced", "backend"}
    assert sum(rows.values()) == requests
    assert rows["backend"] >= 1
    assert rows["l1_memory"] >= 1
    assert "hit ratio: overall" in out
    assert re.search(r"[\d.]+x speedup", out)
    return rows


def test_demo_without_redis_uses_the_embedded_l2(tmp_path: Path) -> None:
    out = run_demo(tmp_path, "--requests", "300", "--backend-ms", "1")
    check_table(out, 300)
    assert "(L2: embedded)" in out


def test_demo_reports_the_real_redis_it_used(tmp_path: Path, redis_url: str) -> None:
    out = run_demo(tmp_path, "--requests", "300", "--backend-ms", "1", redis_url=redis_url)
    rows = check_table(out, 300)
    assert f"(L2: {redis_url})" in out
    # the demo's results really went to that Redis
    client = redis.Redis.from_url(redis_url)
    try:
        stored = sum(1 for _ in client.scan_iter(match="hiercache:llm_completion:*"))
    finally:
        client.close()
    loads = int(re.search(r"backend calls: (\d+) of", out).group(1))  # type: ignore[union-attr]
    # Every stored result came from a backend call. A prompt can be loaded twice (its first
    # result still in the write-behind queue and already evicted from the small L1 when the
    # second caller looked), so distinct stored keys can be fewer than the calls.
    assert 0 < stored <= loads
    assert loads >= rows["backend"] > 0


def test_cli_main_in_process(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("CACHE_REDIS_URL", "REDIS_URL", "CACHE_L2_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    code = main(
        ["demo", "--requests", "120", "--prompts", "20", "--backend-ms", "0", "--seed", "3"]
    )
    assert code == 0
    out = capsys.readouterr().out
    check_table(out, 120)
    assert "(L2: embedded)" in out


def test_cli_requires_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "missing command: one of demo, stats" in line
