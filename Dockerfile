# csi-disk driver image: one image for the controller StatefulSet and the node DaemonSet.
#
#   docker build -t <registry>/csi-disk:0.1.0 .
#
# The node plugin runs it privileged as root (it formats and mounts host devices); the
# controller runs it as the unprivileged user below (the StatefulSet sets runAsNonRoot).
#
# The image carries the driver only: the csi_disk package, its Python dependencies and the
# host tools its node service runs. The ECS emulator, the demo and the build-time helpers
# (csi_disk_emulator, csi_disk_demo, csi_disk_tools) are programs for a development machine
# and stay out; the console scripts pyproject declares for them are removed, and
# `csi-disk emulator` or `csi-disk demo` in the image says that their package is not installed.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: turn the source tree and its dependencies into wheels -------------------------
FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY csi_disk ./csi_disk
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="csi-disk" \
      org.opencontainers.image.description="CSI driver for Alibaba Cloud ECS cloud disks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# Tools the node service runs: mkfs/resize/fsck for ext4 and xfs, blkid/findmnt/mount, and
# udev's database for device lookups.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        e2fsprogs \
        xfsprogs \
        util-linux \
        mount \
        udev \
    && rm -rf /var/lib/apt/lists/*

COPY --from=builder /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links=/wheels csi-disk \
    && rm -rf /wheels \
    && rm /usr/local/bin/csi-disk-emulator /usr/local/bin/csi-disk-demo

RUN groupadd --gid 65532 csi-disk \
    && useradd --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin csi-disk
USER 65532:65532

ENTRYPOINT ["csi-disk", "serve"]
