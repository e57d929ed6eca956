"""The benchmark suite's harness: paired ratios, verdicts, the table, and one real run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from harness import Case, Row, run_case, skipped, summarise, table  # noqa: E402


async def _never(n: int) -> float:
    raise AssertionError("not run")


def case(target: float, higher: bool = False) -> Case:
    return Case("path", _never, _never, "base", target, 1, higher_is_better=higher)


def test_ratios_are_paired_by_round_and_their_median_is_the_verdict() -> None:
    # Round 2 is slow for both sides (a noisy neighbour): paired, it is still 2x.
    row = summarise("p", case(2.5), [2.0, 20.0, 2.2, 1.8], [1.0, 10.0, 1.0, 1.0])
    assert row.ours == pytest.approx(2.1)  # medians of each side, for the table
    assert row.base == pytest.approx(1.0)
    assert row.ratio == pytest.approx(2.0)  # the median of 2.0, 2.0, 2.2, 1.8
    assert row.spread[0] <= row.ratio <= row.spread[1]
    assert row.ok
    assert not summarise("p", case(1.9), [2.0, 2.0, 2.2], [1.0, 1.0, 1.0]).ok


def test_higher_is_better_inverts_the_ratio() -> None:
    # hiercache takes 1 unit where the baseline takes 3: 3x the throughput.
    row = summarise("p", case(2.5, higher=True), [1.0, 1.0, 1.0], [3.0, 3.0, 2.7])
    assert row.ratio == pytest.approx(3.0)
    assert row.ok
    assert not summarise("p", case(2.5, higher=True), [1.0] * 3, [2.0] * 3).ok


def test_table_rows_name_baseline_target_and_verdict() -> None:
    rows = [
        summarise("fast path", case(1.25), [1.1e-6] * 3, [1e-6] * 3),
        summarise(
            "memory", Case("m", _never, _never, "lru", 1.25, 1, unit="bytes"), [500.0], [400.0]
        ),
        skipped("vs peer", "peer", 15, "not installed", higher=True),
    ]
    text = table(rows)
    lines = text.splitlines()
    assert lines[0].startswith("| path | hiercache | baseline | ratio |")
    assert "| fast path | 1.10 us | base: 1.00 us | 1.10x |" in lines[2]
    assert lines[2].endswith("| <= 1.25x | OK |")
    assert "| memory | 500 B | lru: 400 B | 1.25x |" in lines[3]
    assert lines[4].endswith("| >= 15x | SKIP (not installed) |")
    assert all(isinstance(r, Row) for r in rows)


async def test_run_case_interleaves_the_two_sides() -> None:
    order: list[str] = []

    async def ours(n: int) -> float:
        order.append("A")
        return 2.0

    async def base(n: int) -> float:
        order.append("B")
        return 1.0

    row = await run_case(Case("p", ours, base, "b", 3.0, 10), rounds=4)
    warm_up, rounds = order[:2], order[2:]
    assert warm_up == ["A", "B"]
    assert rounds == ["A", "B", "B", "A", "A", "B", "B", "A"]  # AB, BA, AB, BA
    assert row.ratio == 2.0
    assert row.ok


def test_the_suite_runs_against_its_own_redis_and_exits_by_its_verdicts() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "suite.py"), "--rounds", "2", "--only",
         "statistics()", "write-through set"],
        capture_output=True, text=True, timeout=600, cwd=REPO, check=False,
    )  # fmt: skip
    out = done.stdout
    assert "| statistics() in a coroutine |" in out, done.stderr[-2000:]
    assert "| write-through set |" in out
    assert "redis.asyncio SET PX + orjson.dumps" in out
    missed = [line for line in out.splitlines() if line.endswith("| MISSED |")]
    assert done.returncode == (1 if missed else 0)
    assert "OK: every target met" in out or "MISSED:" in out
