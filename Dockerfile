# syntax=docker/dockerfile:1
# One image for the operator, the reporting API and the token-gateway sidecar (`aiconn operator`,
# `aiconn api`, `aiconn gateway`), published as ghcr.io/aiconn/aiconn:<version>
# (aiconn/inference/images.py). The build stage turns the package and every dependency into
# wheels; the runtime stage installs only those, with no compiler, no pip cache and no source tree.
# It runs as UID 65532 on a read-only root filesystem: nothing is written outside /tmp and the
# ledger volume the manifests mount.
# Without a Docker engine (the dev machines), tools/images/build.sh builds the equivalent image from
# Debian packages and the same wheels, for the dev cluster's real node.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY aiconn ./aiconn
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels aiconn \
    && groupadd --gid 65532 nonroot \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin nonroot \
    && install -d -o 65532 -g 65532 /var/lib/aiconn
WORKDIR /var/lib/aiconn
# Numeric, so the kubelet can check runAsNonRoot without reading /etc/passwd.
USER 65532:65532
ENTRYPOINT ["aiconn"]
CMD ["--help"]
