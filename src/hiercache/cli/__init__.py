"""The ``hiercache`` command. It needs the ``cli`` extra (Typer and Rich); without it,
``hiercache`` prints which extra to install and exits 2."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["MISSING_EXTRA", "main"]

MISSING_EXTRA = (
    "hiercache: the command line needs the 'cli' extra: pip install -e '.[cli]' "
    "(from a clone of the repository), or pip install 'hiercache[cli]'"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hiercache ARGV`` (default: ``sys.argv[1:]``); returns the exit code."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError:
        print(MISSING_EXTRA, file=sys.stderr)
        return 2
    from hiercache.cli.app import run

    return run(sys.argv[1:] if argv is None else list(argv))
