#!/bin/sh
# Units are installed, not enabled: provisioning enables the role this host has
# (systemctl enable --now otelcol-gpu-agent, otelcol-gpu-gateway,
# otelcol-gpu-query or, on one host per store, otelcol-gpu-usage). An upgrade
# restarts the ones that were running, keeping their config and queues.
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    for unit in otelcol-gpu-agent.service otelcol-gpu-gateway.service otelcol-gpu-usage.service otelcol-gpu-query.service; do
        if systemctl is-active --quiet "$unit"; then
            systemctl restart "$unit" || true
        fi
    done
fi
