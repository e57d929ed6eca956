"""The repository stands alone: a fresh clone with nothing beside it tests cleanly.

- No tracked file holds an absolute path into this machine's workspace, and the only code
  that reads the folder beside the clone (``../shared``) is listed here with how it copes
  when the folder is absent.
- The tests that need the seed guide skip, with the reason, when the shared folder is missing
  (its location is ``$HIERCACHE_SHARED_DIR``, by default ``<repo>/../shared``).
- A copy of the tracked files, alone in a temporary directory, collects every test module
  without an error: nothing reads ``../shared`` at import time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DIR_VARIABLE = "HIERCACHE_SHARED_DIR"

#: Test modules that read the seed guide from the shared folder; each must skip without it.
SEED_READERS = ["tests/test_seed_examples.py"]

#: Code outside the test suite that reads the shared folder, and how it copes without it.
OTHER_READERS = {
    "benchmarks/hit_ratio.py": "a benchmark, not a test: takes --traces and prints a SKIP "
    "line saying how to get the traces when they are missing",
    "tests/test_policies.py": "its public-trace test skips with the reason when they are absent",
}

#: Absolute paths into a workspace: home directories, scratch and work roots. Container paths
#: that configuration files legitimately name (``/etc/...``, ``/var/lib/...``) are not these.
WORKSPACE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|home|Users|root|tmp|mnt|srv)/[\w.-]")

#: A path built to the folder beside the clone: ``../shared``, or ``"shared"`` joined onto one.
SHARED_READ = re.compile(r"\.\./shared\b|/\s*[\"']shared[\"']|[\"']shared[\"']\s*/")

#: Files that are code or configuration (documentation may mention ``../shared``).
CODE_SUFFIXES = {".py", ".sh", ".toml", ".yml", ".yaml", ".json", ".cfg", ".ini", ".txt"}
CODE_NAMES = {"Makefile", "Dockerfile", "run"}


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode()
    return [name for name in out.split("\0") if name and (REPO / name).is_file()]


def text_of(name: str) -> str | None:
    try:
        return (REPO / name).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # a binary file


def is_code(name: str) -> bool:
    path = Path(name)
    return path.suffix in CODE_SUFFIXES or path.name in CODE_NAMES


def test_no_tracked_file_holds_an_absolute_workspace_path() -> None:
    literal = {str(REPO), str(REPO.parent / "shared")}
    found = []
    for name in tracked_files():
        text = text_of(name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if WORKSPACE_PATH.search(line) or any(path in line for path in literal):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []


def test_only_listed_code_reads_the_shared_folder() -> None:
    readers = set()
    for name in tracked_files():
        text = text_of(name)
        if text is None or not is_code(name) or name == "tests/test_standalone.py":
            continue
        if SHARED_READ.search(text):
            readers.add(name)
    assert readers <= set(SEED_READERS) | set(OTHER_READERS)
    for name in readers & set(SEED_READERS):
        text = text_of(name) or ""
        assert SHARED_DIR_VARIABLE in text, f"{name}: the shared folder cannot be moved"


def test_the_shared_folder_pattern_finds_reads() -> None:
    # The check above is only as good as this pattern: it must see the ways a path is built.
    for source in (
        'Path(__file__).resolve().parents[2] / "shared" / "schemas"',
        "open('../shared/seeds/x.txt')",
        "os.path.join(root, 'shared' / 'x')",
    ):
        assert SHARED_READ.search(source), source
    assert not SHARED_READ.search('return "shared"')
    assert WORKSPACE_PATH.search('Path("' + "/work" + '/shared/seeds/x.txt")')
    assert not WORKSPACE_PATH.search("WORKDIR /app; path: /var/lib/grafana/dashboards")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of a child pytest: no shared-folder override, and no coverage
    measurement of a temporary copy whose files are gone when the report is written."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != SHARED_DIR_VARIABLE and not key.startswith(("COVERAGE_", "COV_CORE_"))
    }
    env.update(extra)
    return env


@pytest.mark.parametrize("module", SEED_READERS)
def test_seed_tests_skip_with_the_reason_when_the_shared_folder_is_missing(
    module: str, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-shared-folder"
    report = tmp_path / "report.xml"
    env = subprocess_env(**{SHARED_DIR_VARIABLE: str(missing)})
    result = subprocess.run(
        [sys.executable, "-m", "pytest", module, "-q", "-p", "no:cacheprovider",
         f"--junitxml={report}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    cases = ET.parse(report).getroot().iter("testcase")
    outcomes: dict[str, list[str]] = {"passed": [], "skipped": [], "failed": []}
    skip_messages = set()
    for case in cases:
        name = case.get("name", "")
        if case.find("skipped") is not None:
            outcomes["skipped"].append(name)
            skip_messages.add(case.find("skipped").get("message", ""))  # type: ignore[union-attr]
        elif case.find("failure") is not None or case.find("error") is not None:
            outcomes["failed"].append(name)
        else:
            outcomes["passed"].append(name)
    assert outcomes["failed"] == []
    assert len(outcomes["skipped"]) > 30  # the guide's examples, and the checks of its blocks
    (message,) = skip_messages
    assert str(missing / "seeds") in message
    assert SHARED_DIR_VARIABLE in message
    # Only checks that need no guide may run.
    assert outcomes["passed"] == ["test_every_runnable_block_has_a_check"]


def test_a_copy_alone_collects_every_test_module(tmp_path: Path) -> None:
    files = tracked_files()
    copy = tmp_path / "hiercache"  # nothing beside it: tmp_path holds only this copy
    for name in files:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    env = subprocess_env(PYTHONPATH=str(copy / "src"))
    where = subprocess.run(
        [sys.executable, "-c", "import hiercache; print(hiercache.__file__)"],
        cwd=copy, env=env, capture_output=True, text=True,
    )  # fmt: skip
    # A failure here is usually a module imported by tracked code but never `git add`ed.
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(copy)  # the copy's package, not ours
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"\d+ tests? collected in", output), output
    assert not re.search(r"\d+ errors?\b|^ERROR ", output, re.MULTILINE), output
    collected = {line.split("::")[0] for line in result.stdout.splitlines() if "::" in line}
    modules = {n for n in files if re.fullmatch(r"tests/test_\w+\.py", n)}
    assert collected == modules
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hiercache"]
