"""The sync front is generated: the committed output matches the generator, and the
check fails on drift and on rules that no longer apply."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def check(root: Path) -> subprocess.CompletedProcess[str]:
    bindir = str(Path(sys.executable).parent)
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": bindir + ":/usr/bin:/bin"},
    )


def copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", root / "scripts")
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_committed_sync_front_matches_the_generator() -> None:
    done = check(ROOT)
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_hand_edit_of_the_generated_code(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    target = root / "src" / "hiercache" / "_sync" / "reading.py"
    target.write_text(target.read_text().replace("return entry.value", "return None", 1))
    done = check(root)
    assert done.returncode == 1
    assert "src/hiercache/_sync/reading.py is stale" in done.stderr


def test_check_fails_on_an_async_edit_not_regenerated(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    source = root / "src" / "hiercache" / "_async" / "writing.py"
    source.write_text(source.read_text() + "\n\nEXTRA = 1\n")
    done = check(root)
    assert done.returncode == 1
    assert "writing.py is stale" in done.stderr


def test_check_fails_on_an_unused_rule(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    script = root / "scripts" / "unasync.py"
    text = script.read_text()
    script.write_text(
        text.replace(
            "RULES: list[tuple[str, str]] = [",
            'RULES: list[tuple[str, str]] = [\n    (r"\\bnever_used\\b", "x"),',
            1,
        )
    )
    done = check(root)
    assert done.returncode == 1
    assert "unused rule" in done.stderr
