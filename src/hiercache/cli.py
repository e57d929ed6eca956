"""The ``hiercache`` command: ``demo`` and ``bundle``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hiercache", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    from hiercache import demo

    demo_parser = sub.add_parser("demo", help="replay an LLM-like workload and print a table")
    demo.add_arguments(demo_parser)

    bundle_parser = sub.add_parser(
        "bundle", help="render the Grafana dashboards and Prometheus rules for a metric prefix"
    )
    bundle_parser.add_argument("--prefix", default="hiercache")
    bundle_parser.add_argument("--out", type=Path, required=True)
    bundle_parser.add_argument(
        "--runbook",
        default=None,
        help="base URL of the runbook for the alerts' runbook_url (default docs/runbooks.md)",
    )

    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.main(args)
    from hiercache.bundle import write_bundle

    extra = {"runbook": args.runbook} if args.runbook else {}
    for path in write_bundle(args.out, prefix=args.prefix, **extra):
        print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
