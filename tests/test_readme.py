"""The README is the settings reference: it must not drift from ``CacheConfig``."""

from __future__ import annotations

from pathlib import Path

import pytest

from hiercache import CacheConfig

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def settings_rows() -> dict[str, str]:
    rows = {}
    for line in README.splitlines():
        if line.startswith("| `") and "`CACHE_" in line:
            name = line.split("`")[1]
            rows[name] = line
    return rows


@pytest.mark.parametrize("name", sorted(CacheConfig.model_fields))
def test_every_setting_is_documented_with_its_variables(name: str) -> None:
    row = settings_rows().get(name)
    assert row is not None, f"README settings table lacks {name}"
    alias = CacheConfig.model_fields[name].validation_alias
    names = list(getattr(alias, "choices", [])) or [f"CACHE_{name.upper()}"]
    for variable in names:
        assert f"`{variable}`" in row, f"README row of {name} lacks {variable}"


def test_the_readme_gives_the_two_commands() -> None:
    assert "make demo" in README
    assert "make test" in README
