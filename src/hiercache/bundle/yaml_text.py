"""YAML output with PyYAML: block style, keys in insertion order, multi-line strings as
``|-`` literal blocks where that round-trips (PyYAML falls back to quotes otherwise)."""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["to_yaml"]


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents list items under their key and writes multi-line strings
    as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(data: Any, header: str = "") -> str:
    """``data`` (dicts, lists, strings, numbers, booleans, None) as block-style YAML, after
    ``header`` as ``#`` comment lines. Anything else raises ``TypeError``."""
    try:
        body = yaml.dump(
            data,
            Dumper=_Dumper,
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=False,
            width=1_000_000,
            indent=2,
        )
    except yaml.representer.RepresenterError as exc:
        raise TypeError(f"cannot emit {type(exc.args[-1]).__name__} as YAML") from None
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*lines, body]) if lines else body
