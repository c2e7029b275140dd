# inventory-sink: FastStream Kafka consumer writing to PostgreSQL.
#
#   docker build -t inventory-sink .
#   docker run --env-file .env inventory-sink python -m service migrate   # alembic upgrade head
#   (docker run --read-only works too: the service writes nothing to its filesystem)
#   docker run --env-file .env -p 8080:8080 inventory-sink                 # the consumer
#
# The builder stage installs the locked dependency set (requirements.lock, hashes checked) and
# then the package, migrations included, into /opt/venv; the final stage copies only that venv.
# No compilers, no apt, no pip cache, one copy of the code.
#
# Behind a TLS-intercepting proxy, hand pip the proxy's CA bundle as a build secret; it is
# mounted for the pip steps only and never stored in a layer:
#   docker build --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt -t inventory-sink .

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
# Dependencies first: a change to the code alone reuses this layer.
COPY requirements.lock ./
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
    && pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock

# The package (pyproject.toml needs README.md); its build backend is in the lock already.
COPY pyproject.toml README.md ./
COPY service/ ./service/
# pip and setuptools have done their job: the runtime venv does without them (about 25 MB).
RUN pip install --no-cache-dir --no-deps --no-build-isolation --no-index . \
    && python -c "import service.postgres.schema_gate as s; assert s.packaged_migrations().is_dir()" \
    && python -m pip uninstall --yes --quiet setuptools pip

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

# The package and its migrations live in /opt/venv only, owned by root: read-only for the app
# user. `python -m service migrate` finds the migrations there from any working directory.
WORKDIR /app

USER 10001:10001

EXPOSE 8080

# Readiness, not liveness: Docker has one health state (docker ps, depends_on), and a consumer
# that is stuck (Kafka or PostgreSQL down, schema unusable, a partition stalled with lag) must
# show as unhealthy. /health/ready answers 503 then (urlopen raises), and until the consumer
# has started; a start that fails ends the process (exit 1), which compose's restart policy
# restarts. Orchestrators with more probes use /health/started for startup, /health/live for
# liveness and /health/ready for readiness (README, Operations).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/ready' % (os.environ.get('HTTP_PORT') or '8080'), timeout=4)"]

CMD ["python", "-m", "service", "run"]
