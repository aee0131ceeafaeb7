# kafka-sse-bridge: the service, as `kafka-sse-bridge serve`, for docker-compose.yml or any container runtime.
#
#   docker build -t kafka-sse-bridge .
#   docker run --rm -p 8000:8000 -e BRIDGE_BOOTSTRAP_SERVERS=kafka:9092 -e BRIDGE_TOPICS='orders,metrics.*' kafka-sse-bridge
#
# Settings are BRIDGE_* environment variables (or flags after `serve`); see
# config/bridge.toml. The base is pinned to a patch release; pin its digest as
# well where builds must be reproducible (python:3.11.14-slim-bookworm@sha256:…).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# Build stage: the project and its dependencies into a virtualenv (binary
# wheels only, so no compiler is needed and none is shipped). The dependencies
# are the lock's (requirements/service.txt, made by scripts/lock): the versions
# CI tested, each file checked against its hash; then the project alone.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ONLY_BINARY=:all:
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements/service.txt ./requirements/
RUN /opt/venv/bin/pip install --require-hashes -r requirements/service.txt
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN /opt/venv/bin/pip install --no-deps .

# Runtime stage: the virtualenv and an unprivileged user, nothing else.
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 bridge \
    && useradd --system --uid 10001 --gid bridge --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin bridge
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BRIDGE_HOST=0.0.0.0 \
    BRIDGE_PORT=8000
USER 10001:10001
EXPOSE 8000
# Liveness only (/healthz answers while the process runs); /readyz tells
# whether Kafka answers. No curl in slim images: Python's urllib does it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BRIDGE_PORT', '8000'), timeout=2)"]
ENTRYPOINT ["kafka-sse-bridge"]
CMD ["serve"]
