"""hiercache.contrib.flask in process: settings from app.config, errors naming the key,
init_app, close(). (Under a real gunicorn: tests/test_gunicorn.py.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

pytest.importorskip("flask", reason="the flask extra is not installed")

from flask import Flask

from hiercache.contrib.flask import FlaskConfigError, Hiercache, config_from_app


def test_hiercache_keys_map_to_settings() -> None:
    config = config_from_app(
        {
            "HIERCACHE_NAME": "web",
            "HIERCACHE_L1_MAX_SIZE": 42,
            "HIERCACHE_WRITE_THROUGH": True,
            "HIERCACHE_REDIS_URL": "redis://cache:6379/2",
            "SECRET_KEY": "not ours",
        }
    )
    assert config.name == "web"
    assert config.l1_max_size == 42
    assert config.write_through
    assert not config.write_behind
    assert config.redis_url is not None
    assert config.redis_url.get_secret_value() == "redis://cache:6379/2"


@pytest.mark.parametrize(
    ("app_config", "named"),
    [
        ({"HIERCACHE_L1_MAXSIZE": 1}, "HIERCACHE_L1_MAXSIZE"),
        ({"HIERCACHE_L1_MAX_SIZE": -1}, "HIERCACHE_L1_MAX_SIZE"),
        ({"HIERCACHE_REDIS_URL": "http://nope"}, "HIERCACHE_REDIS_URL"),
    ],
)
def test_bad_keys_and_values_name_the_key(app_config: dict[str, object], named: str) -> None:
    with pytest.raises(FlaskConfigError, match=named) as info:
        config_from_app(app_config)
    assert info.value.key == named


def test_init_app_serves_the_app_and_close_flushes(redis_url: str, raw: redis.Redis) -> None:
    hc = Hiercache()
    app = Flask(__name__)
    app.config.update(HIERCACHE_REDIS_URL=redis_url, HIERCACHE_WRITE_BEHIND=True)
    manager = hc.init_app(app)
    assert app.extensions["hiercache"] is manager
    assert manager.write_behind is not None

    @app.get("/<key>")
    def read(key: str) -> dict[str, object]:
        return {"value": hc.cache.get_or_load(key, key.upper, 60)}

    assert app.test_client().get("/abc").json == {"value": "ABC"}
    with app.app_context():
        assert hc.manager is manager
        assert hc.cache is manager.sync
        hc.close()  # flushes the queued write, then closes
    assert raw.get("hiercache:abc") is not None


def test_no_app_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no app"):
        Hiercache().cache  # noqa: B018


DOCS = Path(__file__).resolve().parents[1] / "docs" / "integrations.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
FRAGMENT = re.compile(r"<!-- fragment: (.{10,}?) -->\s*$")


def doc_blocks() -> list[tuple[int, str, str, bool]]:
    """(line, language, code, marked as a fragment) of docs/integrations.md's blocks."""
    text = DOCS.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        fragment = bool(before and FRAGMENT.search(before[-1]))
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(1), match.group(2), fragment))
    return found


@pytest.mark.parametrize(
    ("line", "language", "code"),
    [pytest.param(*b[:3], id=f"integrations.md:{b[0]}") for b in doc_blocks() if not b[3]],
)
def test_integrations_page_blocks_run(
    line: int, language: str, code: str, redis_url: str, tmp_path: Path
) -> None:
    """Every block of docs/integrations.md runs (python, or a pip install as a dry run
    against this checkout), or is marked as a fragment with a reason."""
    assert language in ("python", "bash"), f"line {line}: mark {language} as a fragment"
    if language == "bash":  # the install lines: check the extras exist (no download)
        assert code.startswith("pip install -e '.["), code
        extras = code.split("[", 1)[1].split("]", 1)[0].split(",")
        pyproject = (DOCS.parents[1] / "pyproject.toml").read_text()
        for extra in extras:
            assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHE_", "OTEL_"))}
    env["CACHE_REDIS_URL"] = redis_url
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"integrations.md:{line}\n{done.stderr}"
