"""The embedded L2 (``l2_backend=embedded``) and the ``hiercache[embedded]`` extra it needs.

fakeredis is not a run-time dependency: the library imports and works without it, and only
an embedded cache asks for it, with a ``MissingExtraError`` naming the extra when it is not
installed. "Not installed" is made real in a subprocess whose import system refuses
fakeredis (and sortedcontainers, which comes with it). The README's install section lists
every extra.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hiercache import CacheError
from hiercache.embedded import EXTRA, EmbeddedServer
from hiercache.errors import MissingExtraError

REPO = Path(__file__).resolve().parents[1]

#: Makes fakeredis and sortedcontainers unimportable, as in an install without the extra.
BLOCK = textwrap.dedent(
    """
    import sys
    sys.modules["fakeredis"] = None
    sys.modules["sortedcontainers"] = None
    """
)


def run_without_the_extra(body: str) -> dict[str, object]:
    """Run ``body`` (which sets ``out``) with the extra blocked; return ``out`` as JSON."""
    script = BLOCK + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def test_the_library_works_without_the_extra() -> None:
    out = run_without_the_extra(
        """
        import asyncio, json
        import hiercache
        from hiercache import CacheConfig, HierarchicalCacheManager

        async def main():
            cache = HierarchicalCacheManager(CacheConfig(l2_backend="none"))
            await cache.set("k", {"v": 1})
            got = await cache.get("k")
            await cache.close()
            return got

        out = {"got": asyncio.run(main()), "loaded": sorted(
            m for m in sys.modules if m.split(".")[0] in ("fakeredis", "sortedcontainers")
            and sys.modules[m] is not None
        )}
        """
    )
    assert out == {"got": {"v": 1}, "loaded": []}


def test_embedded_without_the_extra_names_it_async_and_sync() -> None:
    out = run_without_the_extra(
        """
        import asyncio, json
        from hiercache import CacheConfig, CacheError, HierarchicalCacheManager
        from hiercache.errors import MissingExtraError

        def describe(exc):
            return {
                "type": type(exc).__name__,
                "cache_error": isinstance(exc, CacheError),
                "import_error": isinstance(exc, ImportError),
                "message": str(exc),
                "extra": exc.extra,
                "setting": exc.setting,
            }

        def construct():
            try:
                HierarchicalCacheManager(CacheConfig(l2_backend="embedded"))
            except MissingExtraError as exc:
                return describe(exc)

        async def in_a_coroutine():
            return construct()

        # Refused when the cache is built, not on a first operation that would then leave
        # the cache quietly running L1-only.
        out = {"async": asyncio.run(in_a_coroutine()), "sync": construct()}
        """
    )
    expected = {
        "type": "MissingExtraError",
        "cache_error": True,
        "import_error": True,
        "message": "l2_backend=embedded needs the 'fakeredis' package, which is not installed: "
        "pip install 'hiercache[embedded]'",
        "extra": "hiercache[embedded]",
        "setting": "l2_backend=embedded",
    }
    assert out == {"async": expected, "sync": expected}


def test_missing_extra_error_is_typed() -> None:
    exc = MissingExtraError("l2_backend=embedded", EXTRA, "fakeredis")
    assert isinstance(exc, CacheError)
    assert isinstance(exc, ImportError)
    assert exc.name == "fakeredis"
    assert EXTRA in str(exc)


async def test_one_embedded_server_serves_its_async_and_sync_clients() -> None:
    server = EmbeddedServer()
    aclient = server.client(asynchronous=True)
    sclient = server.client(asynchronous=False)
    await aclient.set("k", b"from async")
    assert sclient.get("k") == b"from async"
    assert EmbeddedServer().client(asynchronous=False).get("k") is None  # another server
    await aclient.aclose()
    sclient.close()


def test_pyproject_puts_fakeredis_in_the_embedded_extra_only() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {
            r.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip() for r in requirements
        }

    extras = project["optional-dependencies"]
    runtime = names(project["dependencies"])
    assert not runtime & {"fakeredis", "sortedcontainers"}
    assert "fakeredis" in names(extras["embedded"])
    dev = " ".join(extras["dev"])
    assert "embedded" in dev  # the test suite runs the embedded backend


def test_the_readme_install_section_lists_every_extra() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Install from source", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE))
    assert extras <= rows
    assert "pip install -e '.[telemetry]'" in section
    assert "pip install hiercache" not in readme  # not on PyPI
