#!/bin/sh
# Stop the services on removal (not on upgrade: deb passes "upgrade", rpm a count of 1).
set -e
case "$1" in
    remove|0)
        if [ -d /run/systemd/system ]; then
            systemctl stop otelcol-gpu-agent.service otelcol-gpu-gateway.service otelcol-gpu-usage.service otelcol-gpu-query.service 2>/dev/null || true
            systemctl disable otelcol-gpu-agent.service otelcol-gpu-gateway.service otelcol-gpu-usage.service otelcol-gpu-query.service 2>/dev/null || true
        fi
        ;;
esac
