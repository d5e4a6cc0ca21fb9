#!/bin/sh
# Removal keeps config and queued data; purge removes them and the user.
set -e
case "$1" in
    purge)
        rm -rf /var/lib/otelcol-gpu-agent /var/lib/otelcol-gpu-gateway /var/lib/otelcol-gpu-usage /var/lib/otelcol-gpu-query /etc/otelcol-gpu
        if getent passwd otelcol-gpu >/dev/null; then userdel otelcol-gpu || true; fi
        if getent group otelcol-gpu >/dev/null; then groupdel otelcol-gpu || true; fi
        ;;
esac
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
