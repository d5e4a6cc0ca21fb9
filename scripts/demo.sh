#!/usr/bin/env bash
# make demo: one gateway and one agent on loopback, agent -> gateway over
# OTLP/gRPC with TLS (development CA from `make certs`) and a bearer token.
# The gateway prints what it receives (debug exporter). Ctrl-C stops both.
#
# The agent's "VM" has 8 simulated H100s: the simulated NVML library
# (test/nvmlsim, test equipment only) is found through LD_LIBRARY_PATH, the
# way a driver's library would be; config/agent.yaml is unchanged.
#
# Variables: OTELCOL (binary), CERTS (certificate dir), NVMLSIM_DIR (folder of
# the simulated libnvidia-ml.so.1), DEMO_FLEET (fleet file), DEMO_DIR (state, logs),
# DEMO_INTERVAL (agent scrape interval, default 5s), DEMO_SECONDS (stop by
# itself after this many seconds; default: run until Ctrl-C).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
OTELCOL=${OTELCOL:-$root/bin/otelcol-gpu}
CERTS=${CERTS:-$root/.certs}
DEMO_DIR=${DEMO_DIR:-$root/.demo}
NVMLSIM_DIR=${NVMLSIM_DIR:-$root/build/nvmlsim}
DEMO_FLEET=${DEMO_FLEET:-$root/test/nvmlsim/fleets/h100x8-waves.fleet}
DEMO_INTERVAL=${DEMO_INTERVAL:-5s}
DEMO_SECONDS=${DEMO_SECONDS:-0}

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
# Provision one VM the way an operator would: a random token for the VM, its
# SHA-256 in the gateway's credentials file, the tenant id on the VM.
token="demo-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$token" >"$DEMO_DIR/agent-token"
printf 'acme\n' >"$DEMO_DIR/tenant"
cat >"$DEMO_DIR/credentials.yaml" <<YAML
credentials:
  - id: demo-vm-1
    tenant: acme
    sha256: $(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
YAML
chmod 600 "$DEMO_DIR/agent-token" "$DEMO_DIR/credentials.yaml"

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "demo: stopping (SIGTERM)..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "demo: stopped; logs in $DEMO_DIR"
}
trap stop INT TERM EXIT

# http_ok PORT: GET / on 127.0.0.1:PORT answers 200 (bash only, no curl needed).
http_ok() {
  local line
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  IFS= read -r -t 2 line <&3 || true
  exec 3<&-
  [[ $line == *" 200 "* ]]
}

wait_healthy() { # name port pid
  for _ in $(seq 1 150); do
    if http_ok "$2"; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "demo: $1 exited; see $DEMO_DIR/$1.log" >&2; tail -20 "$DEMO_DIR/$1.log" >&2; exit 1; fi
    sleep 0.2
  done
  echo "demo: $1 did not become healthy; see $DEMO_DIR/$1.log" >&2
  exit 1
}

OTELCOL_GPU_GRPC_ENDPOINT=127.0.0.1:24317 \
OTELCOL_GPU_HTTP_ENDPOINT=127.0.0.1:24318 \
OTELCOL_GPU_TLS_CERT_FILE="$CERTS/gateway.pem" \
OTELCOL_GPU_TLS_KEY_FILE="$CERTS/gateway-key.pem" \
OTELCOL_GPU_CREDENTIALS_FILE="$DEMO_DIR/credentials.yaml" \
OTELCOL_GPU_STATE_DIR="$DEMO_DIR/gateway-state" \
OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:23133 \
OTELCOL_GPU_METRICS_PORT=28888 \
  "$OTELCOL" --config "$root/config/gateway.yaml" --config "$root/config/demo/gateway-debug.yaml" \
  >"$DEMO_DIR/gateway.log" 2>&1 &
pids+=($!)
wait_healthy gateway 23133 "${pids[0]}"

LD_LIBRARY_PATH="$NVMLSIM_DIR" NVMLSIM_FLEET="$DEMO_FLEET" \
OTELCOL_GPU_GATEWAY_ENDPOINT=localhost:24317 \
OTELCOL_GPU_CA_FILE="$CERTS/ca.pem" \
OTELCOL_GPU_TOKEN_FILE="$DEMO_DIR/agent-token" \
OTELCOL_GPU_TENANT_FILE="$DEMO_DIR/tenant" \
OTELCOL_GPU_STATE_DIR="$DEMO_DIR/agent-state" \
OTELCOL_GPU_INTERVAL="$DEMO_INTERVAL" \
OTELCOL_GPU_OTLP_GRPC=127.0.0.1:34317 \
OTELCOL_GPU_OTLP_HTTP=127.0.0.1:34318 \
OTELCOL_GPU_HEALTH_ENDPOINT=127.0.0.1:33133 \
OTELCOL_GPU_METRICS_PORT=38888 \
  "$OTELCOL" --config "$root/config/agent.yaml" >"$DEMO_DIR/agent.log" 2>&1 &
pids+=($!)
wait_healthy agent 33133 "${pids[1]}"

cat <<TXT
demo: gateway (OTLP/gRPC+TLS on localhost:24317) and agent (8 simulated H100s) are running.
  gateway log:            $DEMO_DIR/gateway.log
  agent log:              $DEMO_DIR/agent.log
  gateway own metrics:    http://127.0.0.1:28888/metrics
  agent local OTLP:       grpc 127.0.0.1:34317, http 127.0.0.1:34318
What the gateway receives (debug exporter), every ${DEMO_INTERVAL}; Ctrl-C to stop:
TXT

started=$(date +%s)
tail -n +1 -F "$DEMO_DIR/gateway.log" 2>/dev/null |
  sed -nu -E 's/^([^\t]+)\t.*"resource metrics": ([0-9]+), "metrics": ([0-9]+), "data points": ([0-9]+).*/  \1  gateway received \2 resources, \3 metrics, \4 data points/p' &
tailer=$!
pids+=("$tailer")
while :; do
  for pid in "${pids[@]:0:2}"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "demo: a collector exited unexpectedly; see $DEMO_DIR" >&2; exit 1; fi
  done
  if [ "$DEMO_SECONDS" -gt 0 ] && [ $(($(date +%s) - started)) -ge "$DEMO_SECONDS" ]; then break; fi
  sleep 1
done
