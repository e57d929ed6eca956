"""The hiercache command: demo and bundle."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hiercache.telemetry.catalogue import check_prefix

DESCRIPTION = (
    "hiercache: a two-tier (memory + Redis) cache. Commands: demo replays an LLM-like "
    "workload; bundle renders the Grafana dashboard and Prometheus rules."
)
BUNDLE_EPILOG = (
    "A --config file (YAML or JSON) maps setting names to values, e.g. prefix, selector, "
    "runbook_url, hit_ratio_warning, hit_ratio_critical, hit_ratio_for, "
    "l1_latency_p95_seconds, l2_latency_p95_seconds, memory_limit_bytes, min_request_rate; "
    "see docs/bundle.md for every key. --prefix and --runbook override the file."
)


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line on stderr and exit 2, never a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Appends each option's default to its help text, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default: Any = action.default
        if (
            "default" in text
            or action.required
            or default is None
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        if isinstance(default, bool):
            return f"{text} (default: {'on' if default else 'off'})"
        return f"{text} (default: {default})"


def _prefix(text: str) -> str:
    try:
        return check_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    from hiercache import demo

    parser = _Parser(prog="hiercache", description=DESCRIPTION, formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(
        dest="command", metavar="{demo,bundle}", required=True, parser_class=_Parser
    )
    demo_parser = sub.add_parser(
        "demo",
        help="replay an LLM-like workload and print a table",
        description="Replay an LLM-like workload through the cache and print, per tier, the "
        "share of requests, their latency and the speedup over the backend.",
        formatter_class=_HelpFormatter,
    )
    demo.add_arguments(demo_parser)

    bundle = sub.add_parser(
        "bundle",
        help="render the Grafana dashboard and Prometheus rules for a metric prefix",
        description="Render the Grafana dashboard, its provisioning files and the Prometheus "
        "rules under OUT. Needs the 'bundle' extra: pip install 'hiercache[bundle]'.",
        epilog=BUNDLE_EPILOG,
        formatter_class=_HelpFormatter,
    )
    bundle.add_argument(
        "--out", type=Path, required=True, help="directory to write the files under (required)"
    )
    bundle.add_argument(
        "--prefix",
        type=_prefix,
        default=None,
        help="metric prefix the services use, their CACHE_METRICS_PREFIX "
        "(default: the config file's, else hiercache)",
    )
    bundle.add_argument(
        "--runbook",
        default=None,
        help="base URL of the runbook for the alerts' runbook_url "
        "(default: the config file's, else docs/runbooks.md)",
    )
    bundle.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML or JSON file of bundle settings (default: none, the shipped values)",
    )
    return parser


def _bundle(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    try:
        from hiercache import bundle
    except ImportError as exc:  # the bundle extra is not installed
        print(f"hiercache: {exc}", file=sys.stderr)
        return 2
    overrides = {"prefix": args.prefix, "runbook_url": args.runbook}
    try:
        if args.config is not None:
            config = bundle.BundleConfig.from_file(args.config, **overrides)
        else:
            config = bundle.BundleConfig.from_mapping({}, **overrides)
    except bundle.BundleConfigError as exc:
        parser.error(str(exc))
    for path in bundle.write_bundle(args.out, config=config):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from hiercache import demo

        return demo.main(args)
    return _bundle(parser, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
