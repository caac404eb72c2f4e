#!/usr/bin/env bash
# Settled commands/s on Apache Kafka, idempotent vs transactional mode
# (kafka.transactions = off | on), same broker, same run, same flags.
#
#   bash benches/transactions.sh [extra foldline-load flags]
#
# Builds release binaries, starts one Apache Kafka (the test suite's, from
# the jars scripts/test fetched: `foldline-kafka`), then per mode runs
# `foldline run registry gateway orders` on its own topic prefix and drives
# it with `foldline-load --concurrency 64 --duration 30s --warmup 5s`. The
# load reports land in benches/results/; a summary with the ratio is
# printed and written beside them.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p foldline -p foldline-benches -p foldline-testcontainers \
  --bin foldline --bin foldline-load --bin foldline-kafka
bin="${CARGO_TARGET_DIR:-target}/release"

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# 2. Apache Kafka.
source benches/broker.sh
start_broker

# `foldline run gateway` seals personal data under a key it must be given;
# a throwaway one serves a bench (nothing outlives the run).
kek=$(python3 -c 'import secrets; print(secrets.token_hex(32))')

summary=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# FOLDLINE_BENCH_MODES="on off" runs them the other way round (drift check).
for mode in ${FOLDLINE_BENCH_MODES:-off on}; do
  gateway_port=$((18080 + RANDOM % 1000))
  registry_port=$((19080 + RANDOM % 1000))
  FOLDLINE__KAFKA__BOOTSTRAP_SERVERS="$servers" \
  FOLDLINE__KAFKA__TOPIC_PREFIX="bench-$mode-$RANDOM-" \
  FOLDLINE__KAFKA__TRANSACTIONS="$mode" \
  FOLDLINE__PROCESSOR__INSTANCE_ID="bench" \
  FOLDLINE__GATEWAY__LISTEN="127.0.0.1:$gateway_port" \
  FOLDLINE__REGISTRY_SERVER__LISTEN="127.0.0.1:$registry_port" \
  FOLDLINE__REGISTRY__URL="http://127.0.0.1:$registry_port" \
  FOLDLINE__STORE__PATH="$work/store-$mode" \
  FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY="$kek" \
  RUST_LOG=warn \
    "$bin/foldline" run registry gateway orders >"$work/foldline-$mode.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 600); do
    curl -fsS "http://127.0.0.1:$gateway_port/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  before=$(ls benches/results | wc -l)
  "$bin/foldline-load" --url "http://127.0.0.1:$gateway_port" \
    --concurrency 64 --duration 30s --warmup 5s "$@" | tee "$work/load-$mode.out"
  report=$(ls -t benches/results/*.md | head -1)
  settled=$(sed -n 's/^settled commands\/s: //p' "$report")
  summary+=("$mode $settled $(basename "$report")")
  kill -TERM "$pid"; wait "$pid" || true
  grep -i "transactional mode\|idempotent mode" "$work/foldline-$mode.log" || true
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
idem=$(printf '%s\n' "${summary[@]}" | sed -n 's/^off \([^ ]*\) .*/\1/p')
tx=$(printf '%s\n' "${summary[@]}" | sed -n 's/^on \([^ ]*\) .*/\1/p')
ratio=$(python3 -c "print(f'{$tx / $idem:.2f}')")
out="benches/results/$(date -u +%Y%m%dT%H%M%SZ)-transactions.md"
{
  echo "# Transactional vs idempotent mode on Apache Kafka"
  echo
  echo "One Apache Kafka 4.4 node (testcontainers' broker), \`foldline run registry gateway orders\`"
  echo "(release build) per mode on its own topic prefix, \`foldline-load --concurrency 64 --duration 30s --warmup 5s $*\`."
  echo
  echo "| kafka.transactions | settled commands/s | report |"
  echo "|---|---:|---|"
  for line in "${summary[@]}"; do
    set -- $line
    echo "| $1 | $2 | $3 |"
  done
  echo
  echo "transactional ÷ idempotent = $ratio"
  echo
  echo "git commit: $(git rev-parse HEAD); machine: $(nproc) cores; load average (1, 5, 15 min) before: $load_before, after: $load_after"
} | tee "$out"
