#!/bin/sh
# Create the service user before files owned by it are unpacked.
set -e
if ! getent group otelcol-gpu >/dev/null; then
    groupadd --system otelcol-gpu
fi
if ! getent passwd otelcol-gpu >/dev/null; then
    useradd --system --gid otelcol-gpu --home-dir /var/lib/otelcol-gpu-agent --no-create-home \
        --shell /usr/sbin/nologin --comment "otelcol-gpu collector" otelcol-gpu
fi
# NVML needs the GPU device nodes; on distributions that gate them by group, join it.
if getent group video >/dev/null; then
    usermod -a -G video otelcol-gpu || true
fi
