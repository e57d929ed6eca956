#!/usr/bin/env bash
# The observability stack without Docker: Redis, Prometheus and Alertmanager from local
# binaries, with the same configuration files as docker-compose.observability.yml, plus the
# hiercache demo serving /metrics. Grafana is not started: import dashboards/*.json into any
# Grafana (see the README's "Observability stack" section).
#
#   scripts/stack.sh            # or: make stack
#
# Ports (defaults as in the compose file) and paths can be overridden:
#   REDIS_PORT=6379 PROMETHEUS_PORT=9090 ALERTMANAGER_PORT=9093 DEMO_PORT=9464
#   STACK_DIR=<data and logs; default: a new temporary directory>
#   PYTHON=<interpreter with hiercache installed; default: .venv/bin/python, else python3>
#   DEMO_ARGS=<extra arguments for `hiercache demo`>
# Binaries: redis-server, prometheus, and alertmanager or prometheus-alertmanager
# (Debian: apt-get install redis-server prometheus prometheus-alertmanager).
#
# Prometheus reads prometheus/prometheus.yml with each compose service address
# (demo:9464, prometheus:9090, alertmanager:9093) replaced by its loopback address here and
# the rule files taken from alerts/. Ctrl-C (or SIGTERM) stops everything it started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REDIS_PORT="${REDIS_PORT:-6379}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
ALERTMANAGER_PORT="${ALERTMANAGER_PORT:-9093}"
DEMO_PORT="${DEMO_PORT:-9464}"
STACK_DIR="${STACK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/hiercache-stack.XXXXXX")}"
DEMO_ARGS="${DEMO_ARGS:-}"

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

need() {
  for name in "$@"; do
    if command -v "$name" >/dev/null 2>&1; then echo "$name"; return 0; fi
  done
  echo "stack.sh: none of [$*] is on PATH (Debian: apt-get install redis-server prometheus prometheus-alertmanager)" >&2
  exit 1
}
REDIS_BIN="$(need redis-server)"
PROMETHEUS_BIN="$(need prometheus)"
ALERTMANAGER_BIN="$(need alertmanager prometheus-alertmanager)"

mkdir -p "$STACK_DIR"/{redis,prometheus,alertmanager}

# The compose configuration, with service addresses mapped to loopback ports.
sed -e "s#\"demo:9464\"#\"127.0.0.1:${DEMO_PORT}\"#g" \
    -e "s#\"prometheus:9090\"#\"127.0.0.1:${PROMETHEUS_PORT}\"#g" \
    -e "s#\"alertmanager:9093\"#\"127.0.0.1:${ALERTMANAGER_PORT}\"#g" \
    -e "s#/etc/prometheus/rules/\\*\\.yml#${ROOT}/alerts/*.yml#g" \
    "$ROOT/prometheus/prometheus.yml" >"$STACK_DIR/prometheus.yml"

pids=()
cleanup() {
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  "$STACK_DIR/redis-stop.sh" >/dev/null 2>&1 || true
  echo "stack stopped (logs in $STACK_DIR)"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Redis is started, stopped and started again by two scripts of its own, so stopping it to
# watch the L2 alerts fire leaves the rest of the stack running.
printf '%s\n' '#!/usr/bin/env bash' \
  "\"$REDIS_BIN\" --port \"$REDIS_PORT\" --bind 127.0.0.1 --save '' --appendonly no --dir \"$STACK_DIR/redis\" --pidfile \"$STACK_DIR/redis.pid\" >>\"$STACK_DIR/redis.log\" 2>&1 &" \
  "echo \"redis started on port $REDIS_PORT\"" >"$STACK_DIR/redis-start.sh"
printf '%s\n' '#!/usr/bin/env bash' \
  "if [[ -f \"$STACK_DIR/redis.pid\" ]]; then kill \"\$(cat \"$STACK_DIR/redis.pid\")\" 2>/dev/null && echo 'redis stopped'; rm -f \"$STACK_DIR/redis.pid\"; fi" \
  >"$STACK_DIR/redis-stop.sh"
chmod +x "$STACK_DIR/redis-start.sh" "$STACK_DIR/redis-stop.sh"
"$STACK_DIR/redis-start.sh" >/dev/null

"$ALERTMANAGER_BIN" --config.file="$ROOT/alertmanager/alertmanager.yml" \
  --storage.path="$STACK_DIR/alertmanager" \
  --web.listen-address="127.0.0.1:${ALERTMANAGER_PORT}" \
  --cluster.listen-address= >"$STACK_DIR/alertmanager.log" 2>&1 &
pids+=($!)

"$PROMETHEUS_BIN" --config.file="$STACK_DIR/prometheus.yml" \
  --storage.tsdb.path="$STACK_DIR/prometheus" \
  --web.listen-address="127.0.0.1:${PROMETHEUS_PORT}" \
  --web.enable-lifecycle >"$STACK_DIR/prometheus.log" 2>&1 &
pids+=($!)

# shellcheck disable=SC2086  # DEMO_ARGS is a list of arguments
CACHE_REDIS_URL="redis://127.0.0.1:${REDIS_PORT}/0" OTEL_SERVICE_NAME=hiercache-demo \
  "$PYTHON" -m hiercache demo --forever --metrics-port "$DEMO_PORT" $DEMO_ARGS \
  >"$STACK_DIR/demo.log" 2>&1 &
pids+=($!)

# Wait (at most 60 s) until every service answers.
"$PYTHON" - "$PROMETHEUS_PORT" "$ALERTMANAGER_PORT" "$DEMO_PORT" <<'PY'
import sys, time, urllib.request

prom, am, demo = sys.argv[1:4]
urls = [
    f"http://127.0.0.1:{prom}/-/ready",
    f"http://127.0.0.1:{am}/-/ready",
    f"http://127.0.0.1:{demo}/metrics",
]
deadline = time.monotonic() + 60
for url in urls:
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"stack.sh: {url} not ready after 60 s: {exc}")
            time.sleep(0.2)
PY

cat <<EOF
stack is up
  Prometheus    http://127.0.0.1:${PROMETHEUS_PORT}  (alerts: /alerts, targets: /targets)
  Alertmanager  http://127.0.0.1:${ALERTMANAGER_PORT}
  demo metrics  http://127.0.0.1:${DEMO_PORT}/metrics
  Redis         redis://127.0.0.1:${REDIS_PORT}/0
                stop: ${STACK_DIR}/redis-stop.sh   start again: ${STACK_DIR}/redis-start.sh
  logs          ${STACK_DIR}
Grafana is not part of the local stack: import dashboards/hiercache-overview.json into a
Grafana whose Prometheus data source points at http://127.0.0.1:${PROMETHEUS_PORT}.
Press Ctrl-C to stop.
EOF

# Stop everything as soon as Prometheus, Alertmanager or the demo exits (Redis may come and
# go: that is what the L2 alerts are for).
wait -n "${pids[@]}"
echo "stack.sh: a service exited; see the logs in $STACK_DIR" >&2
exit 1
