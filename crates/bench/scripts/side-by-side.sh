#!/usr/bin/env bash
# raft-kv, etcd and redis-server side by side, on this machine, in one run:
# a 3-node raft-kv cluster (file persistence, mutual TLS between nodes), a
# 3-node etcd cluster and redis-server with appendfsync always, all on
# 127.0.0.1, measured by the same closed-loop generator (kv-load): writes
# and linearizable reads of 100-byte values at 1, 64 and 256 clients
# (one connection each), against each system's leader. Every pass runs
# every cell once, the systems taking turns in a different order each
# pass; the table shows the median pass per cell (ops/s with the p50 / p99
# latency of that pass), ratios of medians, and the CPU time of all of a
# system's server processes per 10,000 operations (user + system, from
# /proc/<pid>/stat, over the measured window).
#
#   cargo build --release -p raft-kv -p raft-bench && crates/bench/scripts/side-by-side.sh [passes] [options]
#
# options: --seconds S (per cell, default 5)  --warmup S (default 1)
#          --clients 1,64,256  --readme (write the table into README.md)
# binaries: $RAFT_KV and $KV_LOAD, else ${CARGO_TARGET_DIR:-target}/release/.
# etcd-server, redis-server, redis-tools and curl are installed with apt-get
# if missing. Everything started here is stopped and removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../../.."

PASSES=3 CELL_SECONDS=5 WARMUP=1 CLIENTS="1 64 256" README=0
while [ $# -gt 0 ]; do
  case $1 in
    --seconds) CELL_SECONDS=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --clients) CLIENTS=${2//,/ }; shift 2 ;;
    --readme) README=1; shift ;;
    [1-9]*) PASSES=$1; shift ;;
    *) echo "usage: $0 [passes] [--seconds S] [--warmup S] [--clients 1,64,256] [--readme]" >&2; exit 2 ;;
  esac
done
KEYSPACE=10000
TARGET_DIR=${CARGO_TARGET_DIR:-target}
RAFT_KV=${RAFT_KV:-$TARGET_DIR/release/raft-kv}
KV_LOAD=${KV_LOAD:-$TARGET_DIR/release/kv-load}
for bin in "$RAFT_KV" "$KV_LOAD"; do
  [ -x "$bin" ] || { echo "side-by-side: $bin not found; build it with: cargo build --release -p raft-kv -p raft-bench" >&2; exit 1; }
done

say() { echo "side-by-side: $*" >&2; }

# What is missing, from Debian's packages.
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v curl >/dev/null || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Whether every process in $@ is still running.
check_alive() {
  local p
  for p in "$@"; do kill -0 "$p" 2>/dev/null || return 1; done
}

# Stops the script because $1 did not come up, with the tail of its logs.
fail() {
  local what=$1; shift
  say "$what"
  local f
  for f in "$@"; do echo "==> $f <==" >&2; tail -n 40 "$f" >&2 || true; done
  exit 1
}

# raft-kv: 3 nodes with a throwaway CA for the TLS between them.
start_raft_kv() {
  "$RAFT_KV" cert create-ca --certs-dir "$WORK/ca" >/dev/null
  local i C=() P=()
  for i in 1 2 3; do
    "$RAFT_KV" cert create-node --certs-dir "$WORK/n$i-certs" --ca-cert "$WORK/ca/ca.crt" --ca-key "$WORK/ca/ca.key" \
      --id "n$i" --host 127.0.0.1 >/dev/null
    C+=("$(free_port)"); P+=("$(free_port)")
  done
  local members="n1=127.0.0.1:${P[0]},n2=127.0.0.1:${P[1]},n3=127.0.0.1:${P[2]}"
  RAFT_KV_PIDS=()
  for i in 0 1 2; do
    "$RAFT_KV" serve --id "n$((i+1))" --members "$members" --peer-addr "127.0.0.1:${P[$i]}" \
      --client-addr "127.0.0.1:${C[$i]}" --data-dir "$WORK/n$((i+1))" --log-level warn \
      --certs-dir "$WORK/n$((i+1))-certs" \
      >"$WORK/raft-kv-n$((i+1)).log" 2>&1 &
    PIDS+=($!); RAFT_KV_PIDS+=($!)
  done
  RAFT_KV_ADDR=""
  for _ in $(seq 200); do
    for i in 0 1 2; do
      if redis-cli -p "${C[$i]}" info raft 2>/dev/null | grep -q "raft_role:leader"; then RAFT_KV_ADDR=127.0.0.1:${C[$i]}; fi
    done
    [ -n "$RAFT_KV_ADDR" ] && return
    check_alive "${RAFT_KV_PIDS[@]}" || fail "a raft-kv node exited while starting" "$WORK"/raft-kv-n*.log
    sleep 0.1
  done
  fail "raft-kv elected no leader within 20 s" "$WORK"/raft-kv-n*.log
}

# etcd: 3 members, data in $WORK.
start_etcd() {
  local i C=() P=() cluster=""
  for i in 1 2 3; do
    C+=("$(free_port)"); P+=("$(free_port)")
    cluster+="${cluster:+,}e$i=http://127.0.0.1:${P[$((i-1))]}"
  done
  ETCD_PIDS=()
  for i in 0 1 2; do
    etcd --name "e$((i+1))" --data-dir "$WORK/e$((i+1))" \
      --listen-client-urls "http://127.0.0.1:${C[$i]}" --advertise-client-urls "http://127.0.0.1:${C[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${P[$i]}" --initial-advertise-peer-urls "http://127.0.0.1:${P[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token side-by-side \
      --logger zap --log-level warn \
      >"$WORK/etcd-e$((i+1)).log" 2>&1 &
    PIDS+=($!); ETCD_PIDS+=($!)
  done
  ETCD_ADDR=""
  for _ in $(seq 300); do
    for i in 0 1 2; do
      # The member whose id is the leader's id in its own status.
      local status
      status=$(curl -sf -m 1 -X POST "http://127.0.0.1:${C[$i]}/v3/maintenance/status" -d '{}' 2>/dev/null) || continue
      local me leader
      me=$(grep -o '"member_id":"[0-9]*"' <<<"$status" | grep -o '[0-9][0-9]*') || continue
      leader=$(grep -o '"leader":"[0-9]*"' <<<"$status" | grep -o '[0-9][0-9]*') || continue
      if [ "$me" = "$leader" ]; then ETCD_ADDR=127.0.0.1:${C[$i]}; fi
    done
    [ -n "$ETCD_ADDR" ] && return
    check_alive "${ETCD_PIDS[@]}" || fail "an etcd member exited while starting" "$WORK"/etcd-e*.log
    sleep 0.1
  done
  fail "etcd elected no leader within 30 s" "$WORK"/etcd-e*.log
}

# redis-server: durable like raft-kv (fsync before every answer), one copy.
start_redis() {
  local port
  port=$(free_port)
  mkdir -p "$WORK/redis"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$WORK/redis" --save "" \
    --appendonly yes --appendfsync always >"$WORK/redis.log" 2>&1 &
  PIDS+=($!); REDIS_PIDS=($!)
  for _ in $(seq 100); do
    if [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ]; then REDIS_ADDR=127.0.0.1:$port; return; fi
    check_alive "${REDIS_PIDS[@]}" || fail "redis-server exited while starting" "$WORK/redis.log"
    sleep 0.1
  done
  fail "redis-server did not answer PING within 10 s" "$WORK/redis.log"
}

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
start_raft_kv
start_etcd
start_redis
say "raft-kv leader $RAFT_KV_ADDR, etcd leader $ETCD_ADDR, redis $REDIS_ADDR; logs in $WORK"

# load SYSTEM OP [kv-load options]: kv-load against SYSTEM's leader; on
# failure, stops with kv-load's message and the system's logs.
load() {
  local system=$1 op=$2; shift 2
  local addr protocol=resp pids logs=()
  case $system in
    raft-kv)
      addr=$RAFT_KV_ADDR pids=${RAFT_KV_PIDS[*]}
      logs=("$WORK"/raft-kv-n*.log) ;;
    etcd)
      addr=$ETCD_ADDR protocol=etcd pids=${ETCD_PIDS[*]}
      logs=("$WORK"/etcd-e*.log) ;;
    redis)
      addr=$REDIS_ADDR pids=${REDIS_PIDS[*]}
      logs=("$WORK/redis.log") ;;
  esac
  if ! "$KV_LOAD" --addr "$addr" --protocol "$protocol" --op "$op" --keyspace "$KEYSPACE" \
      --pids "${pids// /,}" "$@" 2>"$WORK/kv-load.err"; then
    cat "$WORK/kv-load.err" >&2
    fail "kv-load failed against $system ($addr, --op $op $*)" "${logs[@]}"
  fi
  cat "$WORK/kv-load.err" >&2
}

SYSTEMS=(raft-kv etcd redis)
for system in "${SYSTEMS[@]}"; do
  filled=$(load "$system" fill --clients 64)
  say "$system: every key written once ($filled)"
done

RESULTS=$WORK/results
for pass in $(seq "$PASSES"); do
  for op in write read; do
    for clients in $CLIENTS; do
      for k in 0 1 2; do
        system=${SYSTEMS[$(( (pass + k) % 3 ))]}
        line=$(load "$system" "$op" --clients "$clients" --seconds "$CELL_SECONDS" --warmup "$WARMUP")
        echo "system=$system op=$op clients=$clients pass=$pass $line" >>"$RESULTS"
        say "pass $pass/$PASSES $(printf '%-7s %-5s %3s clients' "$system" "$op" "$clients"): $line"
      done
    done
  done
done

cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
etcd_version=$(etcd --version | sed -n 's/^etcd Version: //p')
redis_version=$(redis-server --version | grep -o 'v=[^ ]*' | cut -d= -f2)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- crates Cargo.toml Cargo.lock 2>/dev/null || commit+=" with uncommitted changes"
load_after=$(cut -d' ' -f1 /proc/loadavg)
{
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) CPUs (${cpu_model:-unknown CPU}), Linux $(uname -r),"
  echo "load average $LOAD_BEFORE before the run and $load_after at its end;"
  echo "raft-kv at commit $commit, etcd $etcd_version, redis-server $redis_version;"
  echo "the median of $PASSES pass(es) per cell, ${CELL_SECONDS} s each after ${WARMUP} s of warm-up; ops/s (p50 / p99 latency):"
  echo
  "$KV_LOAD" table "$RESULTS"
} >"$WORK/table.md"
cat "$WORK/table.md"

if [ "$README" = 1 ]; then
  if ! grep -q '^<!-- side-by-side:begin -->$' README.md || ! grep -q '^<!-- side-by-side:end -->$' README.md; then
    say "README.md has no <!-- side-by-side:begin --> / <!-- side-by-side:end --> lines"
    exit 1
  fi
  awk -v table="$WORK/table.md" '
    $0 == "<!-- side-by-side:begin -->" { print; print ""; while ((getline l < table) > 0) print l; print ""; skip = 1; next }
    $0 == "<!-- side-by-side:end -->" { skip = 0 }
    !skip' README.md >"$WORK/README.md"
  cp "$WORK/README.md" README.md
  say "README.md updated"
fi
