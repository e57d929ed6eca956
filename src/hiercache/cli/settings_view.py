"""The settings as the environment resolves them: each field's environment variables,
its value with secrets masked, and invalid settings as one clear line each."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from hiercache.settings import CacheConfig

__all__ = ["MASK", "ConfigError", "SettingRow", "env_names", "load_config", "rows"]

MASK = "******"


class ConfigError(Exception):
    """Invalid settings: ``lines`` has one line per invalid setting."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


def env_names(name: str, info: FieldInfo) -> list[str]:
    """The environment variables that set field ``name``, the canonical one first."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    if isinstance(alias, str):
        return [alias]
    return [f"CACHE_{name.upper()}"]


def _field_of(loc: str) -> str:
    fields = CacheConfig.model_fields
    if loc in fields:
        return loc
    for name, info in fields.items():
        if loc.upper() in env_names(name, info):
            return name
    return loc


def load_config() -> CacheConfig:
    """``CacheConfig()`` from the environment and ``.env``; ``ConfigError`` if invalid."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return CacheConfig()
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = str(error["loc"][0]) if error["loc"] else ""
            message = error["msg"].removeprefix("Value error, ")
            if loc:
                name = _field_of(loc)
                info = CacheConfig.model_fields.get(name)
                env = env_names(name, info)[0] if info is not None else loc
                message = message.removeprefix(f"{name}: ")
                lines.append(f"{env} ({name}): {message}")
            else:
                lines.append(message)
        raise ConfigError(lines) from None


def shown(value: Any) -> str:
    """A value as the CLI and the docs print it; a secret is always ``MASK``."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Enum):
        return str(value.value)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class SettingRow:
    name: str
    env: str
    value: str
    source: str  # "environment" or "default"


def rows(config: CacheConfig) -> list[SettingRow]:
    """Every setting of ``config``, secrets masked."""
    out = []
    for name, info in CacheConfig.model_fields.items():
        source = "environment" if name in config.model_fields_set else "default"
        value = shown(getattr(config, name))
        out.append(SettingRow(name, env_names(name, info)[0], value, source))
    return out
