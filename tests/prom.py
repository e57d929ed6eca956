"""Helpers for the observability tests: a small PromQL reader and a real ``prometheus`` server.

The PromQL reader is just enough to check Grafana dashboard-linter's rules on our queries: it
finds every vector selector (metric name and label matchers), its range, and the function whose
parentheses directly enclose it. The server runs the Debian ``prometheus`` binary on a free
loopback port; readiness comes from its log line, and data from polling its HTTP API with a
bounded deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from servers import drain_in_background, free_port, require_binary, wait_for_line

# ---------------------------------------------------------------------------------------------
# PromQL reading
# ---------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]+\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]+\]\])
  | (?P<number>(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(?:[smhdwy]|ms)*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^=<>,(){}\[\]:@])
    """,
    re.VERBOSE,
)

#: Keywords that take a parenthesised list of label names.
_LABEL_LIST = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_KEYWORDS = _LABEL_LIST | {"bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"}


@dataclass
class Selector:
    """One vector selector: ``name{matchers}[range]``, and the function enclosing it."""

    name: str | None
    matchers: list[tuple[str, str, str]] = field(default_factory=list)
    range: str | None = None
    enclosing: str = ""

    def matcher(self, label: str) -> tuple[str, str] | None:
        for name, op, value in self.matchers:
            if name == label:
                return op, value
        return None

    def metric_names(self) -> list[str]:
        """The metric names this selector may select (a ``__name__`` regex is expanded)."""
        if self.name:
            return [self.name]
        found = self.matcher("__name__")
        if found is None:
            return []
        op, value = found
        return value.split("|") if op == "=~" else [value]


def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read PromQL at {expr[pos : pos + 20]!r} in {expr!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group()))
    return out


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return str(json.loads(token))
    if token.startswith("'"):
        return token[1:-1].replace("\\'", "'")
    return token[1:-1]


def selectors(expr: str) -> list[Selector]:
    """Every vector selector in ``expr``, with its matchers, range and enclosing function."""
    toks = _tokens(expr)
    found: list[Selector] = []
    stack: list[str] = []  # per open "(": the function it belongs to ("" for grouping)
    pending_aggregation = ""  # the aggregation waiting for its "(" after "by (...)"
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else ""
        if kind == "op" and text == "(":
            stack.append(pending_aggregation)
            pending_aggregation = ""
            i += 1
            continue
        if kind == "op" and text == ")":
            stack.pop()
            i += 1
            continue
        if kind == "ident" and text in _LABEL_LIST and nxt == "(":
            # Skip the label list; remember the aggregation it qualifies.
            close = next(j for j in range(i + 1, len(toks)) if toks[j][1] == ")")
            if text in ("by", "without") and i > 0 and toks[i - 1][0] == "ident":
                pending_aggregation = toks[i - 1][1]
            i = close + 1
            continue
        if kind == "ident" and nxt == "(":
            stack.append(text)
            i += 2
            continue
        is_named = kind == "ident" and text.lower() not in _KEYWORDS
        if is_named or (kind == "op" and text == "{"):
            if is_named and nxt in ("by", "without"):
                # `sum by (x) (...)`: the aggregation comes first; handled above.
                pending_aggregation = text
                i += 1
                continue
            sel = Selector(name=text if is_named else None)
            j = i + 1 if is_named else i
            if j < len(toks) and toks[j][1] == "{":
                j += 1
                while toks[j][1] != "}":
                    if toks[j][1] == ",":
                        j += 1
                        continue
                    label, op, value = toks[j][1], toks[j + 1][1], toks[j + 2][1]
                    sel.matchers.append((label, op, _unquote(value)))
                    j += 3
                j += 1
            if j < len(toks) and toks[j][1] == "[":
                close = next(k for k in range(j, len(toks)) if toks[k][1] == "]")
                sel.range = "".join(t for _, t in toks[j + 1 : close])
                j = close + 1
            sel.enclosing = stack[-1] if stack else ""
            found.append(sel)
            i = j
            continue
        i += 1
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace Grafana ``$var`` / ``${var}`` references (longest names first)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return expr


# ---------------------------------------------------------------------------------------------
# A real Prometheus
# ---------------------------------------------------------------------------------------------

T = TypeVar("T")


class PrometheusError(AssertionError):
    pass


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[str]

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises if Prometheus rejects the expression."""
        try:
            data = self.api("/api/v1/query", query=expr)
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression
            raise PrometheusError(f"{expr!r}: {exc.read().decode()}") from exc
        result: list[dict[str, Any]] = data["result"]
        return result

    def poll(self, check: Callable[[], T | None], what: str, timeout: float = 45.0) -> T:
        """Poll ``check`` until it returns a value, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)  # polling interval of an external system, bounded by the deadline


@contextmanager
def run_prometheus(config: str, *, rule_files: list[Path] | None = None) -> Iterator[Prometheus]:
    """Start ``prometheus`` with ``config`` (YAML text) on a free loopback port."""
    binary = require_binary("prometheus", "prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hiercache-prom-") as workdir:
        config_file = Path(workdir) / "prometheus.yml"
        config_file.write_text(config)
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=info",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_for_line(proc, "Server is ready to receive web requests.", "prometheus")
            drain_in_background(proc)
            yield Prometheus(f"http://127.0.0.1:{port}", proc)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)
