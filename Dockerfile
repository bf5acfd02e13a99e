# Every Meshplate image: SERVICE names the one to build (auth, users, ratelimit, gateway, worker).
# Build from the repository root, the uv workspace:
#   docker build --build-arg SERVICE=auth -t meshplate/auth .
# SERVICE picks both the packages installed and the final stage; PYTHON_IMAGE swaps the base for
# another Python 3.11 image (the same for both stages, as the environment links to its python).
ARG PYTHON_IMAGE=docker.io/library/python:3.11.14-slim-bookworm
# Without the argument, the `none` stage stops the build with a hint (an empty default would fail
# less clearly, and BuildKit warns of it at every build).
ARG SERVICE=none

# --- build: the service and only the packages it needs, into /app/.venv -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install --no-cache-dir --root-user-action=ignore uv==0.13.8
WORKDIR /src
# The whole workspace (see .dockerignore): uv resolves it with the root's pinned versions, then
# installs this member and its dependencies only, as wheels (no sources, no dev tools).
COPY . .
ARG SERVICE
# uv's download cache stays with the builder (not in a layer), for the next service's build. The
# test suites some packages ship are dropped, as the official image drops Python's own.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --package meshplate-${SERVICE} --no-dev --no-editable \
    && find /app/.venv -depth -type d \( -name tests -o -name test \) -exec rm -rf '{}' +

# --- runtime: the virtual environment alone, run by an unprivileged user -----------------------
FROM ${PYTHON_IMAGE} AS runtime
# /app/var: the one writable place (local SQLite files, a generated signing key); mount a volume
# there, or nothing at all with a read-only root filesystem and PostgreSQL.
RUN groupadd --system --gid 10001 meshplate \
    && useradd --system --uid 10001 --gid meshplate --no-create-home --shell /usr/sbin/nologin meshplate \
    && mkdir -p /app/var \
    && chown meshplate:meshplate /app/var
COPY --from=build /app/.venv /app/.venv
# glibc's allocator: two arenas, and blocks of 1 MiB and more always given back (docs/benchmarks.md).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    MALLOC_MMAP_THRESHOLD_=1048576
WORKDIR /app
USER 10001:10001
# What the image holds (OCI annotations): `make images` passes the package's version, the
# commit and where its source lives.
ARG SERVICE
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="meshplate-${SERVICE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"

# --- one stage per service: where it listens, how it is probed, how it starts ------------------
# The listeners bind every address of the container; the probe asks the service itself
# (meshplate_core.probe), and `migrate` as the argument runs the migrations instead.

# auth: tokens, signing keys, revocations (gRPC 50051, metrics 9151).
FROM runtime AS auth
ENV AUTH_GRPC_HOST=0.0.0.0 \
    AUTH_METRICS_HOST=0.0.0.0
EXPOSE 50051 9151
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "meshplate_core.probe", "grpc", "127.0.0.1:50051", "meshplate.auth.v1.AuthService"]
ENTRYPOINT ["python", "-m", "auth"]

# users: users, tiers, posts (gRPC 50052, metrics 9152). The allocator's large blocks go into
# transparent huge pages where the kernel allows: a password hash's 7 MiB in a few page faults
# instead of about 1,800 (docs/benchmarks.md).
FROM runtime AS users
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    USERS_GRPC_HOST=0.0.0.0 \
    USERS_METRICS_HOST=0.0.0.0
EXPOSE 50052 9152
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "meshplate_core.probe", "grpc", "127.0.0.1:50052", "meshplate.users.v1.UsersService"]
ENTRYPOINT ["python", "-m", "users"]

# ratelimit: rules and counters, Envoy's RLS API (gRPC 50053, metrics 9153).
FROM runtime AS ratelimit
ENV RATELIMIT_GRPC_HOST=0.0.0.0 \
    RATELIMIT_METRICS_HOST=0.0.0.0
EXPOSE 50053 9153
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "meshplate_core.probe", "grpc", "127.0.0.1:50053", "meshplate.ratelimit.v1.RateLimitService"]
ENTRYPOINT ["python", "-m", "ratelimit"]

# gateway: the REST API (HTTP 8000, /metrics on the same port).
FROM runtime AS gateway
ENV GATEWAY_HOST=0.0.0.0
EXPOSE 8000
# `web`: over HTTPS with the workload's certificate when the gateway serves it (GATEWAY_HTTPS),
# else over HTTP.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "meshplate_core.probe", "web", "127.0.0.1:8000/health"]
ENTRYPOINT ["python", "-m", "gateway"]

# worker: background jobs (health and /metrics on HTTP 8001).
FROM runtime AS worker
ENV WORKER_HTTP_HOST=0.0.0.0
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-m", "meshplate_core.probe", "http", "http://127.0.0.1:8001/health"]
ENTRYPOINT ["python", "-m", "worker"]

# Without SERVICE: no image, but a word on what is missing.
FROM ${PYTHON_IMAGE} AS none
RUN echo "Name the service: --build-arg SERVICE=auth (or users, ratelimit, gateway, worker)" >&2 \
    && exit 1

# --- the image: the stage SERVICE names ---------------------------------------------------------
FROM ${SERVICE}
