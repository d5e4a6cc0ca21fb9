#!/usr/bin/env bash
# make screenshot: run the demo for a few minutes and photograph the store's
# UI (GPU utilization per tenant) with headless Chromium, for the README.
#
# Chromium comes from Debian (apt-get install chromium), installed here if it
# is missing. Variables: OUT (the PNG; docs/img/demo-vmui.png), RUN_SECONDS
# (how long the demo runs before the picture; 200), DEMO (the demo binary),
# and the demo's own DEMO_* variables.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$root/docs/img/demo-vmui.png}
RUN_SECONDS=${RUN_SECONDS:-200}
DEMO=${DEMO:-$root/bin/demo}
export DEMO_STORE_ADDR=${DEMO_STORE_ADDR:-127.0.0.1:8428}
export DEMO_INTERVAL=${DEMO_INTERVAL:-2s}
export DEMO_SUMMARY_EVERY=${DEMO_SUMMARY_EVERY:-30s}

if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core
fi

DEMO_SECONDS=$((RUN_SECONDS + 30)) "$DEMO" "$@" &
demo=$!
trap 'kill -TERM $demo 2>/dev/null || true; wait $demo 2>/dev/null || true' EXIT
sleep "$RUN_SECONDS"
kill -0 "$demo" # the demo must still be running

# The query, percent-encoded byte by byte (no python or curl needed).
query='avg by (tenant_id) (hw.gpu.utilization{hw.gpu.task="general"}) * 100'
enc=$(printf '%s' "$query" | od -An -tx1 -v | tr -s ' \n' ' ' | sed 's/^ //; s/ $//; s/ /%/g; s/^/%/')
url="http://$DEMO_STORE_ADDR/vmui/#/?g0.expr=$enc&g0.range_input=$((RUN_SECONDS / 60 + 1))m&g0.relative_time=none&g0.tab=0"
mkdir -p "$(dirname "$OUT")"
chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,1000 \
  --virtual-time-budget=20000 --screenshot="$OUT" "$url" 2>/dev/null
echo "screenshot: $OUT ($url)"
