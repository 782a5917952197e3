# syntax=docker/dockerfile:1
# dexecutor in one image: `up` (default), `api`, `worker`, `migrate`, and the client
# commands (`submit`, `orders`, `quote`). See docs/deploy.md.
#
#   docker build -t dexecutor .
#   docker run --rm -p 3000:3000 -v dexecutor-data:/app/.data dexecutor   # embedded PostgreSQL and Valkey
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... dexecutor worker

ARG PYTHON_IMAGE=python:3.11-slim

# Build stage: install the package and its dependencies into a virtualenv. Only the
# files the build needs are copied, so a local .venv or .data never reaches the image.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /build
# The runtime dependencies exactly as locked (versions pinned, files hashed), in a layer
# of their own that a code change does not rebuild.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# A regular (non-editable) install of the package alone: the code,
# store/migrations/*.sql and api/static/* (package data) land in site-packages; the
# source tree stays in this stage.
RUN /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/python -c "import importlib.resources as r; \
assert r.files('dexecutor.store').joinpath('migrations').is_dir(); \
assert r.files('dexecutor.api').joinpath('static/index.html').is_file()"

# Runtime stage: the same base image (the venv's interpreter path must match), the
# venv, and an unprivileged user whose home is the working directory.
FROM ${PYTHON_IMAGE}
RUN useradd --system --user-group --uid 10001 --create-home --home-dir /app \
      --shell /usr/sbin/nologin dexecutor
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
USER dexecutor
# Embedded PostgreSQL / Valkey (used only when no DATABASE_URL / REDIS_URL is given)
# keep their data here; created as the app user so a volume mounted on it is writable.
RUN mkdir /app/.data
EXPOSE 3000 8899
# `up` and `api` answer /readyz on PORT (PostgreSQL and Redis reachable); a `worker`
# serves no HTTP, so with METRICS_PORT set it is checked on its metrics listener instead
# (docker-compose.yml does so). A worker without METRICS_PORT reports unhealthy: run it
# with --no-healthcheck, or set METRICS_PORT. The `chain` service answers /health on
# CHAIN_PORT; docker-compose.yml gives it its own check.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; m = os.environ.get('METRICS_PORT'); u.urlopen(f'http://127.0.0.1:{m}/metrics' if m else f\"http://127.0.0.1:{os.environ.get('PORT', '3000')}/readyz\", timeout=4)"]
# Exec form: dexecutor is PID 1 and receives SIGTERM itself (it handles it: in-flight
# orders finish, WebSockets close 1012). `docker run --init` / compose `init: true`
# adds a reaper in front of it.
ENTRYPOINT ["dexecutor"]
CMD ["up"]
