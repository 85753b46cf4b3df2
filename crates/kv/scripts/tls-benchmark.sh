#!/usr/bin/env bash
# What TLS costs raft-kv, measured side by side in one run with
# redis-benchmark (SET and GET, 1 and 50 clients, without and with 16
# pipelined requests):
#
#  1. clients: one 3-node cluster (mutual TLS between its nodes), its
#     leader's plaintext port against its TLS port (--tls-port, client
#     certificates required); and, when redis-server is installed, the same
#     for redis-server (--tls-port) as a reference;
#  2. peers: a 3-node cluster with mutual TLS between its nodes against one
#     started with --insecure, both measured on the leader's plaintext port.
#
# Each comparison alternates its two sides PASSES times (default 3) and
# prints the median requests/s of each side and the ratio (TLS / plain),
# and the server's CPU time per request on each side (the leader's, or
# redis-server's): on a machine this small the benchmark's own TLS work
# competes for the same cores, so requests/s alone overstates what TLS
# costs the server.
#
#   cargo build --release -p raft-kv && crates/kv/scripts/tls-benchmark.sh [requests] [passes]
set -euo pipefail
cd "$(dirname "$0")/../../.."
N=${1:-10000}
PASSES=${2:-3}
BIN=${RAFT_KV:-target/release/raft-kv}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The CA, three node certificates and a client certificate.
"$BIN" cert create-ca --certs-dir "$WORK/ca" >/dev/null
for i in 1 2 3; do
  "$BIN" cert create-node --certs-dir "$WORK/n$i-certs" --ca-cert "$WORK/ca/ca.crt" --ca-key "$WORK/ca/ca.key" \
    --id "n$i" --cluster bench --host 127.0.0.1 >/dev/null
done
"$BIN" cert create-client --certs-dir "$WORK/ca" --name bench >/dev/null
CLIENT_TLS=(--tls --cacert "$WORK/ca/ca.crt" --cert "$WORK/ca/client.bench.crt" --key "$WORK/ca/client.bench.key")

# Starts a 3-node cluster; $1: "tls" or "insecure"; sets LEADER (client
# port), LEADER_TLS (its TLS port), LEADER_PID and CLUSTER_PIDS.
start_cluster() {
  local mode=$1 C=() P=() T=()
  for i in 1 2 3; do C+=("$(free_port)"); P+=("$(free_port)"); T+=("$(free_port)"); done
  local members="n1=127.0.0.1:${P[0]},n2=127.0.0.1:${P[1]},n3=127.0.0.1:${P[2]}"
  CLUSTER_PIDS=()
  for i in 0 1 2; do
    local n=$((i+1)) security
    if [ "$mode" = tls ]; then security=(--certs-dir "$WORK/n$n-certs" --tls-port "${T[$i]}")
    else security=(--insecure); fi
    rm -rf "$WORK/data-n$n"
    "$BIN" serve --id "n$n" --cluster bench --members "$members" --peer-addr "127.0.0.1:${P[$i]}" \
      --client-addr "127.0.0.1:${C[$i]}" --data-dir "$WORK/data-n$n" --log-level error "${security[@]}" \
      >/dev/null 2>"$WORK/n$n.log" &
    CLUSTER_PIDS+=($!); PIDS+=($!)
  done
  LEADER=""; LEADER_TLS=""
  for _ in $(seq 100); do
    for i in 0 1 2; do
      if redis-cli -p "${C[$i]}" info raft 2>/dev/null | grep -q "raft_role:leader"; then
        LEADER=${C[$i]}; LEADER_TLS=${T[$i]}; LEADER_PID=${CLUSTER_PIDS[$i]}
      fi
    done
    [ -n "$LEADER" ] && break
    sleep 0.1
  done
  [ -n "$LEADER" ] || { echo "no leader; logs in $WORK" >&2; cat "$WORK"/n*.log >&2; exit 1; }
}

stop_cluster() {
  for p in "${CLUSTER_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${CLUSTER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

# CPU time (user + system, in clock ticks) of process $1 so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# One pass over every cell: "<name> <test> <c> <P> <rps>" lines, and a
# "cpu <name> <ticks> <requests>" line with the server's ($SERVER_PID) CPU
# time over the pass. A pipelined cell sends 16 times as many requests (as
# many round trips), so that the TLS handshakes of its connections stay a
# small part of the run.
measure() { # name port [redis-benchmark flags...]
  local name=$1 port=$2; shift 2
  local before; before=$(cpu_ticks "$SERVER_PID")
  for c in 1 50; do
    for p in 1 16; do
      redis-benchmark -h 127.0.0.1 -p "$port" "$@" -t set,get -n $((N * p)) -c "$c" -P "$p" --csv 2>/dev/null \
        | awk -F, -v n="$name" -v c="$c" -v p="$p" 'NR>1 { gsub(/"/,""); print n, $1, c, p, $2 }'
    done
  done
  echo "cpu $name $(( $(cpu_ticks "$SERVER_PID") - before )) $(( 2 * 2 * (N + 16 * N) ))"
}

# Medians per cell of two sides, and their ratio.
report() { # title plain-name tls-name file
  echo
  echo "$1"
  printf '%-4s %-4s %-4s %14s %14s %8s\n' test c P "$2" "$3" ratio
  python3 - "$2" "$3" "$4" <<'EOF'
import os, sys, statistics, collections
plain, tls, path = sys.argv[1:4]
cells = collections.defaultdict(list)
cpu = collections.defaultdict(lambda: [0, 0])
for line in open(path):
    if line.startswith("cpu "):
        _, name, ticks, requests = line.split()
        cpu[name][0] += int(ticks)
        cpu[name][1] += int(requests)
        continue
    name, test, c, p, rps = line.rsplit(None, 4)
    cells[(test, int(c), int(p), name)].append(float(rps))
keys = sorted({k[:3] for k in cells}, key=lambda k: (k[0] != "SET", k[1], k[2]))
for test, c, p in keys:
    a = statistics.median(cells[(test, c, p, plain)])
    b = statistics.median(cells[(test, c, p, tls)])
    print(f"{test:<4} {c:<4} {p:<4} {a:14,.0f} {b:14,.0f} {b / a:7.2f}x")
hz = os.sysconf("SC_CLK_TCK")
us = {n: 1e6 * t / hz / r for n, (t, r) in cpu.items() if r}
if plain in us and tls in us:
    print(f"server CPU per request, all cells: {us[plain]:.1f} us plain, {us[tls]:.1f} us with TLS ({us[tls] / us[plain]:.2f}x)")
EOF
}

echo "tls-benchmark: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, redis-benchmark -n $N (x16 pipelined), medians of $PASSES passes"

# 1. Clients: plaintext port against TLS port, on one cluster.
start_cluster tls
SERVER_PID=$LEADER_PID
for pass in $(seq "$PASSES"); do
  measure "raft-kv_plain" "$LEADER" >>"$WORK/clients"
  measure "raft-kv_tls" "$LEADER_TLS" "${CLIENT_TLS[@]}" >>"$WORK/clients"
done
stop_cluster
report "Clients (3-node raft-kv, mutual TLS between nodes): requests/s on the plaintext port and on --tls-port" raft-kv_plain raft-kv_tls "$WORK/clients"

if command -v redis-server >/dev/null; then
  port=$(free_port); tport=$(free_port)
  mkdir -p "$WORK/redis"
  redis-server --port "$port" --tls-port "$tport" --bind 127.0.0.1 --dir "$WORK/redis" \
    --appendonly yes --appendfsync always \
    --tls-cert-file "$WORK/n1-certs/node.crt" --tls-key-file "$WORK/n1-certs/node.key" \
    --tls-ca-cert-file "$WORK/ca/ca.crt" >/dev/null &
  PIDS+=($!); SERVER_PID=$!
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  for pass in $(seq "$PASSES"); do
    measure "redis_plain" "$port" >>"$WORK/redis-clients"
    measure "redis_tls" "$tport" "${CLIENT_TLS[@]}" >>"$WORK/redis-clients"
  done
  report "Reference: redis-server (appendfsync always) on its plaintext port and on its --tls-port" redis_plain redis_tls "$WORK/redis-clients"
fi

# 2. Peers: mutual TLS between nodes against --insecure, alternating.
for pass in $(seq "$PASSES"); do
  start_cluster tls
  SERVER_PID=$LEADER_PID
  measure "peers_tls" "$LEADER" >>"$WORK/peers"
  stop_cluster
  start_cluster insecure
  SERVER_PID=$LEADER_PID
  measure "peers_plain" "$LEADER" >>"$WORK/peers"
  stop_cluster
done
report "Peers (plaintext client port): 3 nodes with --insecure and with mutual TLS between nodes" peers_plain peers_tls "$WORK/peers"
