#!/usr/bin/env bash
# Notification latency per provider (p50/p99 against the seed's 150 ms SLA)
# with the primary SMS provider healthy and degraded, and the time from the
# primary failing (503) or stalling to traffic moving to the backup, and
# back when it recovers.
#
#   bash benches/notify.sh [extra foldline-notify-latency flags]
#
# Builds release binaries and runs `foldline-notify-latency`: it starts the
# test suite's Apache Kafka (from the jars scripts/test fetched:
# FOLDLINE_KAFKA_LIB, else ~/.cache/foldline/kafka-<version>/lib), a front
# process (registry, gateway, notify-projector) and a notify-processor with
# the SMS chain primary,backup on two fake provider servers, and drives
# open-loop phases (healthy, degraded, failing, recovered, stalled). The JSON
# and Markdown reports land in benches/results/ (*-notify-latency.*); the
# Markdown is printed too. `--help` lists the flags (rate, phase length,
# degraded delay, provider timeout, breaker settings).
set -euo pipefail
cd "$(dirname "$0")/.."

# FOLDLINE_BENCH_PROFILE=debug measures the debug binaries (a quick check
# that the bench works; the report says which build ran).
profile="${FOLDLINE_BENCH_PROFILE:-release}"
case "$profile" in
  release) cargo build --release --locked -p foldline -p foldline-benches \
    --bin foldline --bin foldline-notify-latency; bin="${CARGO_TARGET_DIR:-target}/release" ;;
  debug) cargo build --locked -p foldline -p foldline-benches \
    --bin foldline --bin foldline-notify-latency; bin="${CARGO_TARGET_DIR:-target}/debug" ;;
  *) echo "FOLDLINE_BENCH_PROFILE must be release or debug" >&2; exit 2 ;;
esac

"$bin/foldline-notify-latency" --foldline "$bin/foldline" --build "$profile" \
  --stamp "$(date -u +%Y%m%dT%H%M%SZ)" "$@"
