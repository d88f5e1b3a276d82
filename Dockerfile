# storesync's container image: one image for every process (web tier, workers, migrations, the
# CLI); the command picks the process: `docker run IMAGE serve`, `... worker`, `... migrate`.
# Build from the checkout: docker build -t storesync .
# Nothing secret is baked in: database URLs, STORESYNC_ENCRYPTION_KEY, the dashboard token and
# storesync.toml come from the environment or mounted secrets at run time (deploy/compose.yaml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a venv with storesync
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/storesync
# Dependencies first (their layer is reused while only the code changes), every one pinned by
# deploy/constraints.txt (`make constraints` regenerates it from pyproject.toml).
COPY deploy/constraints.txt /src/deploy/constraints.txt
RUN /opt/storesync/bin/pip install --constraint deploy/constraints.txt \
        $(grep -E '^[A-Za-z0-9_.-]+==' deploy/constraints.txt)
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/storesync/bin/pip install --no-deps --constraint deploy/constraints.txt . \
    && /opt/storesync/bin/pip check \
    && /opt/storesync/bin/python -m compileall -q /opt/storesync

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="storesync" \
      org.opencontainers.image.description="Sync engine for networks of Shopify storefronts"
RUN groupadd --system --gid 10001 storesync \
    && useradd --system --uid 10001 --gid storesync --home-dir /home/storesync --create-home \
        --shell /usr/sbin/nologin storesync
COPY --from=build /opt/storesync /opt/storesync
ENV PATH=/opt/storesync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STORESYNC_LOG_FORMAT=json \
    STORESYNC_WEB_HOST=0.0.0.0 \
    STORESYNC_WEB_PORT=8080 \
    STORESYNC_CONFIG_FILE=/etc/storesync/storesync.toml
USER storesync:storesync
WORKDIR /home/storesync
EXPOSE 8080
# For the web tier (the default command). Workers override it in compose with
# `python -m storesync.healthcheck worker` (their heartbeat file); one-shot commands disable it.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "storesync.healthcheck", "web"]
ENTRYPOINT ["storesync"]
CMD ["serve"]
