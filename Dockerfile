# inventory-sink: FastStream Kafka consumer writing to PostgreSQL.
#
#   docker build -t inventory-sink .
#   docker run --env-file .env inventory-sink python -m service migrate   # alembic upgrade head
#   docker run --env-file .env -p 8080:8080 inventory-sink                 # the consumer
#
# The builder stage installs the package and its dependencies into /opt/venv; the final stage
# copies only that venv plus the code Alembic and the CLI need. No compilers, no apt, no pip cache.

# --- builder ---------------------------------------------------------------------------------
FROM python:3.11-slim AS builder

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
# Metadata first, then the package: `pip install .` needs all three (readme = "README.md").
COPY pyproject.toml README.md ./
COPY service/ ./service/
RUN pip install --no-cache-dir .

# --- runtime ---------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HTTP_HOST=0.0.0.0 \
    HTTP_PORT=8080

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# Owned by root, read-only for the app user. `python -m service` run from /app imports this copy
# of the package, so service/schema_check.py finds /app/alembic.ini and /app/migrations.
COPY alembic.ini ./
COPY migrations/ ./migrations/
COPY service/ ./service/

USER 10001:10001

EXPOSE 8080

# Readiness, not liveness: Docker has one health state (docker ps, depends_on), and a consumer
# that is stuck (Kafka or PostgreSQL down, schema unusable, a partition stalled with lag) must
# show as unhealthy. /health/ready answers 503 then (urlopen raises). Orchestrators with two
# probes use /health/live for liveness and /health/ready for readiness (README, Operations).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % (os.environ.get('HTTP_PORT') or '8080'), timeout=4)"]

CMD ["python", "-m", "service", "run"]
