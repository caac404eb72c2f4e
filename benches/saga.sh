#!/usr/bin/env bash
# The order saga's throughput (orders/s the saga ended: confirmed or
# rejected) and place → confirmation latency, on the embedded default and
# on Apache Kafka, same flags, one after the other.
#
#   bash benches/saga.sh [extra foldline-load flags]
#
# Builds release binaries; runs `foldline` (the embedded default: mock
# cluster, every role, the provider simulator) and drives it with
# `foldline-load --scenario saga`; then starts one Apache Kafka (the test
# suite's broker, from the jars scripts/test fetched: `foldline-kafka`) and
# runs every role of the saga in one `foldline run` process against it
# (embedded store), with a provider simulator beside it, and drives that the
# same way. The load reports land in benches/results/; a summary is printed
# and written beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

# FOLDLINE_BENCH_PROFILE=debug measures the debug binaries (only when a
# release build does not fit; the summary says which profile ran).
profile="${FOLDLINE_BENCH_PROFILE:-release}"
case "$profile" in
  release) cargo build --release --locked -p foldline -p foldline-benches -p foldline-testcontainers \
    --bin foldline --bin foldline-load --bin foldline-kafka; bin="${CARGO_TARGET_DIR:-target}/release" ;;
  debug) cargo build --locked -p foldline -p foldline-benches -p foldline-testcontainers \
    --bin foldline --bin foldline-load --bin foldline-kafka; bin="${CARGO_TARGET_DIR:-target}/debug" ;;
  *) echo "FOLDLINE_BENCH_PROFILE must be release or debug" >&2; exit 2 ;;
esac
flags=(--scenario saga --concurrency "${FOLDLINE_BENCH_CONCURRENCY:-32}"
  --duration "${FOLDLINE_BENCH_DURATION:-30s}" --warmup "${FOLDLINE_BENCH_WARMUP:-5s}" "$@")

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

wait_ready() { # $1: url
  for _ in $(seq 1 600); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 never became ready" >&2
  return 1
}

# The report foldline-load wrote last, and its figures.
figures() { # $1: label
  local report
  report=$(ls -t benches/results/*-saga-*.md | head -1)
  local ended confirm_p50 confirm_p99
  ended=$(sed -n 's/^orders the saga ended (confirmed or rejected)\/s: \([0-9.]*\);.*/\1/p' "$report")
  confirm_p50=$(awk -F'|' '$2 ~ /^ confirm / {gsub(/ /,"",$5); print $5}' "$report")
  confirm_p99=$(awk -F'|' '$2 ~ /^ confirm / {gsub(/ /,"",$7); print $7}' "$report")
  summary+=("| $1 | $ended | $confirm_p50 | $confirm_p99 | $(basename "$report") |")
}

summary=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. The embedded default, as `cargo run` starts it (its own ports).
gateway_port=$((18080 + RANDOM % 1000))
sim_port=$((20080 + RANDOM % 1000))
FOLDLINE__GATEWAY__LISTEN="127.0.0.1:$gateway_port" \
FOLDLINE__REGISTRY_SERVER__LISTEN="127.0.0.1:$((19080 + RANDOM % 1000))" \
FOLDLINE__PAYMENTS__SIMULATOR__LISTEN="127.0.0.1:$sim_port" \
FOLDLINE__PAYMENTS__PROVIDER__URL="http://127.0.0.1:$sim_port" \
RUST_LOG=warn "$bin/foldline" >"$work/embedded.log" 2>&1 &
embedded=$!
wait_ready "http://127.0.0.1:$gateway_port/readyz"
"$bin/foldline-load" --url "http://127.0.0.1:$gateway_port" "${flags[@]}" | tee "$work/load-embedded.out"
figures "embedded default (\`foldline\`: mock cluster, in-memory store)"
kill -TERM "$embedded"; wait "$embedded" || true

# 2. Apache Kafka.
source benches/broker.sh
start_broker
kek=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
gateway_port=$((18080 + RANDOM % 1000))
registry_port=$((19080 + RANDOM % 1000))
sim_port=$((20080 + RANDOM % 1000))
prefix="bench-saga-$RANDOM-"
FOLDLINE__KAFKA__BOOTSTRAP_SERVERS="$servers" \
FOLDLINE__KAFKA__TOPIC_PREFIX="$prefix" \
FOLDLINE__PROCESSOR__INSTANCE_ID="bench" \
FOLDLINE__GATEWAY__LISTEN="127.0.0.1:$gateway_port" \
FOLDLINE__REGISTRY_SERVER__LISTEN="127.0.0.1:$registry_port" \
FOLDLINE__REGISTRY__URL="http://127.0.0.1:$registry_port" \
FOLDLINE__PAYMENTS__SIMULATOR__LISTEN="127.0.0.1:$sim_port" \
FOLDLINE__PAYMENTS__PROVIDER__URL="http://127.0.0.1:$sim_port" \
FOLDLINE__STORE__PATH="$work/store-kafka" \
FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY="$kek" \
RUST_LOG=warn \
  "$bin/foldline" run registry gateway provider-simulator users orders payments \
  >"$work/kafka-roles.log" 2>&1 &
roles=$!
wait_ready "http://127.0.0.1:$gateway_port/readyz"
"$bin/foldline-load" --url "http://127.0.0.1:$gateway_port" "${flags[@]}" \
  --bootstrap-servers "$servers" --commands-topic "${prefix}orders.commands" \
  --events-topic "${prefix}orders.events" \
  | tee "$work/load-kafka.out"
figures "Apache Kafka 4.4 (one node), \`foldline run registry gateway provider-simulator users orders payments\`, embedded store"
kill -TERM "$roles"; wait "$roles" || true

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
out="benches/results/$(date -u +%Y%m%dT%H%M%SZ)-saga-summary.md"
{
  echo "# The order saga: orders ended per second, place → confirmation latency"
  echo
  echo "\`foldline-load ${flags[*]}\` ($profile build): each operation registers nothing (customers are"
  echo "registered before the run), places an order with \`Prefer: wait\`, then reads it back every"
  echo "poll interval until the saga confirmed or rejected it; latency is from the place request to"
  echo "the first read showing the end (up to one poll interval late). The provider simulator runs"
  echo "with its defaults (no latency, no errors, the always-approved test card)."
  echo
  echo "| deployment | orders ended/s | confirm p50 ms | confirm p99 ms | report |"
  echo "|---|---:|---:|---:|---|"
  printf '%s\n' "${summary[@]}"
  echo
  echo "git commit: $(git rev-parse HEAD); machine: $(nproc) cores, shared with other builds and tests;"
  echo "load average (1, 5, 15 min) before: $load_before, after: $load_after"
} | tee "$out"
