# pdsidecar: the gRPC sidecar serving Pipedream Connect credentials.
#
#   docker build -t pdsidecar .
#   docker run --rm -v pdsidecar-socket:/run/pdsidecar \
#     -v "$PWD/pdsidecar.toml:/etc/pdsidecar/pdsidecar.toml:ro" \
#     -v "$PWD/pipedream-secret:/run/secrets/pipedream:ro" pdsidecar
#
# (pdsidecar.toml names client_secret_file = "/run/secrets/pipedream"; README "Docker".)
#
# The build stage installs pdsidecar into /opt/pdsidecar with deploy/docker/install.sh;
# scripts/check_deploy.sh runs that same script in a fresh venv in CI (and lints this
# file with hadolint), since no Docker engine runs there. Tracing: --build-arg EXTRAS=fast,otel.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY client/python/ client/python/
COPY server/ server/
COPY deploy/docker/install.sh deploy/docker/install.sh
ARG EXTRAS=fast
RUN PDSIDECAR_EXTRAS="${EXTRAS}" sh deploy/docker/install.sh /opt/pdsidecar /src

FROM ${PYTHON_IMAGE}
# A fixed, numeric, non-root user: Kubernetes' runAsNonRoot can verify it, and a
# worker container with the same group can use the 0660 socket.
RUN groupadd --system --gid 10001 pdsidecar \
 && useradd --system --uid 10001 --gid pdsidecar --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin pdsidecar \
 && install -d -o 10001 -g 10001 -m 0770 /run/pdsidecar
# Only the venv: no compiler, no build tools, no development packages.
COPY --from=build /opt/pdsidecar /opt/pdsidecar
ENV PATH=/opt/pdsidecar/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PDSIDECAR_TARGET=unix:/run/pdsidecar/pdsidecar.sock
USER 10001:10001
# The Unix socket lives here; share the volume with the containers that call pdsidecar.
VOLUME ["/run/pdsidecar"]
# Prometheus metrics, when started with --metrics-listen 0.0.0.0:9464.
EXPOSE 9464
# SIGTERM: health turns NOT_SERVING, new calls are refused, calls in flight finish (--grace).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
  CMD ["pdsidecar", "health"]
ENTRYPOINT ["pdsidecar", "serve"]
CMD ["--config", "/etc/pdsidecar/pdsidecar.toml", \
     "--listen", "unix:/run/pdsidecar/pdsidecar.sock", "--socket-mode", "0660"]
