"""hiercache.contrib.flask in process: settings from app.config, errors naming the key,
init_app, close(). (Under a real gunicorn: tests/test_gunicorn.py.)"""

from __future__ import annotations

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
        assert hc.cache.get("abc") == "ABC"
        hc.close()  # flushes the queued write, then closes
    assert raw.get("hiercache:abc") is not None


def test_no_app_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="no app"):
        Hiercache().cache  # noqa: B018
