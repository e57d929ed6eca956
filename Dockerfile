# The hiercache demo workload for the observability stack (docker-compose.observability.yml):
# runs `hiercache demo` forever against the stack's Redis and serves Prometheus /metrics on
# port 9464; traces go to OTEL_EXPORTER_OTLP_ENDPOINT when set.
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[telemetry,embedded,cli]"

USER nobody
EXPOSE 9464
CMD ["hiercache", "demo", "--forever", "--metrics-port", "9464", "--metrics-host", "0.0.0.0"]
