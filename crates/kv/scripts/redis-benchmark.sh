#!/usr/bin/env bash
# redis-benchmark against a local 3-node raft-kv cluster (file persistence,
# mutual TLS between nodes), and in the same run against redis-server as the
# baseline (durable: appendonly with appendfsync always; and in memory only)
# when redis-server is installed. Prints requests/s and p50/p99 for SET and
# GET at 1 and 50 clients, without and with pipelining.
#
#   cargo build --release -p raft-kv && crates/kv/scripts/redis-benchmark.sh [requests]
set -euo pipefail
cd "$(dirname "$0")/../../.."
N=${1:-20000}
BIN=${RAFT_KV:-target/release/raft-kv}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # name port
  local name=$1 port=$2
  for c in 1 50; do
    for p in 1 16; do
      redis-benchmark -h 127.0.0.1 -p "$port" -t set,get -n "$N" -c "$c" -P "$p" --csv 2>/dev/null \
        | awk -F, -v n="$name" -v c="$c" -v p="$p" 'NR>1 { gsub(/"/,""); printf "%-22s %-4s c=%-3s P=%-3s %12.0f req/s  p50 %7.3f ms  p99 %7.3f ms\n", n, $1, c, p, $2, $5, $7 }'
    done
  done
}

# raft-kv: 3 nodes, with a throwaway CA for the TLS between them.
"$BIN" cert create-ca --certs-dir "$WORK/ca" >/dev/null
for i in 1 2 3; do
  "$BIN" cert create-node --certs-dir "$WORK/n$i-certs" --ca-cert "$WORK/ca/ca.crt" --ca-key "$WORK/ca/ca.key" \
    --id "n$i" --host 127.0.0.1 >/dev/null
done
C=(); P=()
for i in 1 2 3; do C+=("$(free_port)"); P+=("$(free_port)"); done
MEMBERS="n1=127.0.0.1:${P[0]},n2=127.0.0.1:${P[1]},n3=127.0.0.1:${P[2]}"
for i in 0 1 2; do
  "$BIN" serve --id "n$((i+1))" --members "$MEMBERS" --peer-addr "127.0.0.1:${P[$i]}" \
    --client-addr "127.0.0.1:${C[$i]}" --data-dir "$WORK/n$((i+1))" --log-level warn \
    --certs-dir "$WORK/n$((i+1))-certs" \
    >"$WORK/n$((i+1)).out" 2>"$WORK/n$((i+1)).log" &
  PIDS+=($!)
done
LEADER=""
for _ in $(seq 100); do
  for i in 0 1 2; do
    if redis-cli -p "${C[$i]}" info raft 2>/dev/null | grep -q "raft_role:leader"; then LEADER=${C[$i]}; fi
  done
  [ -n "$LEADER" ] && break
  sleep 0.1
done
[ -n "$LEADER" ] || { echo "no leader; logs in $WORK" >&2; cat "$WORK"/n*.log >&2; exit 1; }
run "raft-kv (3 nodes)" "$LEADER"

if command -v redis-server >/dev/null; then
  for mode in always no; do
    port=$(free_port)
    if [ "$mode" = always ]; then args=(--appendonly yes --appendfsync always); name="redis (fsync always)"
    else args=(--appendonly no --save ""); name="redis (no persistence)"; fi
    mkdir -p "$WORK/redis-$mode"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis-$mode" "${args[@]}" >/dev/null &
    PIDS+=($!)
    for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    run "$name" "$port"
  done
fi
