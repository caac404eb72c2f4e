# Sourced by the bench scripts: starts the test suite's Apache Kafka
# (`foldline-kafka`, from the jars scripts/test fetched) and sets `servers`
# to its bootstrap address. Needs `bin` (the release binaries) and `work`
# (a scratch dir the caller removes). The broker lives as long as the
# calling shell holds its stdin open (fd 3).
start_broker() {
  mkfifo "$work/broker-in"
  "$bin/foldline-kafka" <"$work/broker-in" >"$work/broker.out" 2>&1 &
  exec 3>"$work/broker-in"
  for _ in $(seq 1 600); do
    grep -q '^bootstrap.servers=' "$work/broker.out" 2>/dev/null && break
    sleep 0.2
  done
  servers=$(sed -n 's/^bootstrap.servers=//p' "$work/broker.out")
  [ -n "$servers" ] || { cat "$work/broker.out"; echo "the broker did not start" >&2; exit 1; }
  echo "kafka at $servers"
}
