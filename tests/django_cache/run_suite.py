"""Run Django's own cache-backend tests (``BaseCacheTests``) against ``HiercacheCache``.

Usage: ``python run_suite.py REDIS_URL RESULT_JSON [OPTIONS_JSON]`` (the backend's
``OPTIONS``, e.g. ``{"write_behind": true}``). Run in a subprocess of its own
(``tests/test_django_suite.py``): it configures Django's settings for the whole process.

``BaseCacheTests`` is not in Django's wheel: the source release of the installed Django
is fetched with ``pip download --no-binary :all:`` (cached under ``~/.cache``, or taken
from ``HIERCACHE_DJANGO_SDIST``) and only ``tests/cache/`` is extracted, into a temporary
directory. Nothing of it is copied into this repository (Django is BSD-licensed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import django

#: Tests that do not apply to this backend, with the reason. Everything else must pass.
NOT_APPLICABLE = {
    "test_cull": "culling (MAX_ENTRIES/CULL_FREQUENCY) belongs to the database, file and "
    "local-memory caches; Redis bounds itself (maxmemory) and L1 by l1_max_size",
    "test_zero_cull": "culling: as test_cull",
    "test_cull_delete_when_store_empty": "culling: as test_cull",
}


def django_sdist() -> Path:
    """The source release of the installed Django (downloaded once)."""
    given = os.environ.get("HIERCACHE_DJANGO_SDIST")
    if given:
        return Path(given)
    version = django.get_version()
    cache = Path.home() / ".cache" / "hiercache-tests"
    found = sorted(cache.glob(f"[Dd]jango-{version}.tar.gz"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
         "--no-deps", f"django=={version}", "-d", str(cache)],
        check=True,
    )  # fmt: skip
    return sorted(cache.glob(f"[Dd]jango-{version}.tar.gz"))[0]


def extract_cache_tests(sdist: Path, into: Path) -> Path:
    """Extract ``tests/cache/`` of ``sdist`` under ``into``; returns the ``tests`` dir."""
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/cache/" in m.name and m.isfile()]
        if not members:
            raise RuntimeError(f"{sdist} has no tests/cache/")
        for member in members:
            member.name = "tests/cache/" + member.name.split("/tests/cache/", 1)[1]
        tar.extractall(into, members=members, filter="data")
    return into / "tests"


def configure(redis_url: str) -> None:
    from django.conf import settings

    settings.configure(
        SECRET_KEY="django-suite-secret",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "cache"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=False,
        CACHES={
            "default": {
                "BACKEND": "hiercache.contrib.django.HiercacheCache",
                "LOCATION": redis_url,
            }
        },
        # Django's own test settings (tests/runtests.py) do this too.
        MIDDLEWARE=[],
        ROOT_URLCONF=None,
    )
    django.setup()


def main(redis_url: str, result_path: str, options: dict[str, object]) -> int:
    with tempfile.TemporaryDirectory(prefix="hiercache-django-") as tmp:
        sys.path.insert(0, str(extract_cache_tests(django_sdist(), Path(tmp))))
        configure(redis_url)
        from cache.tests import BaseCacheTests, caches_setting_for_tests
        from django.test import TestCase, override_settings
        from django.test.runner import DiscoverRunner

        base = {
            "BACKEND": "hiercache.contrib.django.HiercacheCache",
            "LOCATION": redis_url,
            "OPTIONS": options,
        }

        @override_settings(
            CACHES=caches_setting_for_tests(base=base, exclude={"cull", "zero_cull"})
        )
        class HiercacheCacheTests(BaseCacheTests, TestCase):  # type: ignore[misc]
            pass

        for name, reason in NOT_APPLICABLE.items():
            setattr(
                HiercacheCacheTests,
                name,
                unittest.skip(f"not applicable: {reason}")(getattr(HiercacheCacheTests, name)),
            )

        runner = DiscoverRunner(verbosity=1, interactive=False)
        runner.setup_test_environment()
        old = runner.setup_databases()
        try:
            suite = unittest.TestLoader().loadTestsFromTestCase(HiercacheCacheTests)
            result = runner.run_suite(suite)
        finally:
            runner.teardown_databases(old)
            runner.teardown_test_environment()
    ran = result.testsRun
    skipped = {test.id().rsplit(".", 1)[1]: why for test, why in result.skipped}
    failed = [t.id() for t, _ in result.failures] + [t.id() for t, _ in result.errors]
    passed = ran - len(skipped) - len(failed)
    summary = {"django": django.get_version(), "ran": ran, "passed": passed}
    Path(result_path).write_text(json.dumps({**summary, "skipped": skipped, "failed": failed}))
    print(
        f"Django {django.get_version()} BaseCacheTests on HiercacheCache{' ' if options else ''}"
        f"{options or ''}: "
        f"{passed} passed, "
        f"{len(skipped)} skipped as not applicable, {len(failed)} failed, of {ran}"
    )
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}))
