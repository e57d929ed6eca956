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


def architecture_modules() -> set[str]:
    """The module paths named in the first column of the README's architecture table."""
    section = README.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            named.update(part for part in first.split("`")[1::2])
    return named


def test_the_architecture_table_matches_the_source_tree() -> None:
    src = Path(__file__).resolve().parents[1] / "src" / "hiercache"
    named = architecture_modules()
    for name in named:
        assert (src / name).exists(), f"README names {name}, which does not exist"
    modules = {
        str(p.relative_to(src))
        for p in src.glob("*.py")
        if p.name not in ("__init__.py", "__main__.py", "py.typed")
    }
    modules |= {f"_async/{p.name}" for p in (src / "_async").glob("*.py")} - {"_async/__init__.py"}
    packages = {f"{p.name}/" for p in src.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = (modules | packages - {"_async/"}) - named
    assert not missing, f"README architecture table lacks {sorted(missing)}"
