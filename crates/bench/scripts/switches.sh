#!/usr/bin/env bash
# What one operation costs a 3-node raft-kv cluster (file persistence,
# mutual TLS between nodes, all on 127.0.0.1) run as real processes:
# context switches, system calls and CPU time per operation, per thread
# class (the runtime's threads, the WAL writer thread `raft-wal`, the
# rest), on the leader and on a follower (the mean of the two), with the
# throughput kv-load measured. Several variants (a binary and its `serve`
# options) are compared in one run: every pass starts each variant's
# cluster in turn, in a different order each pass, and runs every cell
# (op x clients) on it; the figures are the median of the passes, with
# each variant's ratio to the first.
#
#   crates/bench/scripts/switches.sh [options] [NAME=BINARY[:SERVE OPTIONS]]...
#
# options: --passes N (default 3)  --seconds S (per cell, default 5)
#          --warmup S (default 1)  --clients 1,64  --ops write[,read]
# Without a variant: main=$RAFT_KV (else ${CARGO_TARGET_DIR:-target}/release/raft-kv).
# Example: main=/tmp/raft-kv.main new=target/release/raft-kv \
#          one=target/release/raft-kv:--runtime=current-thread
# Context switches are the voluntary plus involuntary ones of
# /proc/<pid>/task/<tid>/status, CPU time is /proc/<pid>/task/<tid>/schedstat,
# both read before and after the measured window; system calls are counted
# by `perf stat -e raw_syscalls:sys_enter --per-thread` over the window
# (shown as `-` when perf cannot count them). Needs python3 and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/../../.."

PASSES=3 SECONDS_=5 WARMUP=1 CLIENTS="1 64" OPS="write" VARIANTS=()
while [ $# -gt 0 ]; do
  case $1 in
    --passes) PASSES=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --clients) CLIENTS=${2//,/ }; shift 2 ;;
    --ops) OPS=${2//,/ }; shift 2 ;;
    *=*) VARIANTS+=("$1"); shift ;;
    *) echo "usage: $0 [--passes N] [--seconds S] [--warmup S] [--clients 1,64] [--ops write,read] [NAME=BINARY[:SERVE OPTIONS]]..." >&2; exit 2 ;;
  esac
done
TARGET_DIR=${CARGO_TARGET_DIR:-target}
KV_LOAD=${KV_LOAD:-$TARGET_DIR/release/kv-load}
[ ${#VARIANTS[@]} -gt 0 ] || VARIANTS=("main=${RAFT_KV:-$TARGET_DIR/release/raft-kv}")
for bin in "$KV_LOAD" $(for v in "${VARIANTS[@]}"; do b=${v#*=}; echo "${b%%:*}"; done); do
  [ -x "$bin" ] || { echo "switches: $bin not found; build it with: cargo build --release -p raft-kv -p raft-bench" >&2; exit 1; }
done
KEYSPACE=10000

say() { echo "switches: $*" >&2; }

WORK=$(mktemp -d)
PIDS=()
stop_cluster() {
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
  PIDS=()
}
trap 'stop_cluster; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_cluster BINARY [SERVE OPTIONS]: sets LEADER_ADDR, LEADER_PID and
# FOLLOWER_PIDS.
start_cluster() {
  local bin=$1; shift
  local dir=$WORK/cluster
  rm -rf "$dir"; mkdir -p "$dir"
  "$bin" cert create-ca --certs-dir "$dir/ca" >/dev/null
  local i C=() P=()
  for i in 1 2 3; do
    "$bin" cert create-node --certs-dir "$dir/n$i-certs" --ca-cert "$dir/ca/ca.crt" --ca-key "$dir/ca/ca.key" \
      --id "n$i" --host 127.0.0.1 >/dev/null
    C+=("$(free_port)"); P+=("$(free_port)")
  done
  local members="n1=127.0.0.1:${P[0]},n2=127.0.0.1:${P[1]},n3=127.0.0.1:${P[2]}"
  local node_pids=()
  for i in 0 1 2; do
    "$bin" serve --id "n$((i+1))" --members "$members" --peer-addr "127.0.0.1:${P[$i]}" \
      --client-addr "127.0.0.1:${C[$i]}" --data-dir "$dir/n$((i+1))" --log-level warn \
      --certs-dir "$dir/n$((i+1))-certs" "$@" >"$dir/n$((i+1)).log" 2>&1 &
    PIDS+=($!); node_pids+=($!)
  done
  for _ in $(seq 200); do
    for i in 0 1 2; do
      if redis-cli -p "${C[$i]}" info raft 2>/dev/null | grep -q "raft_role:leader"; then
        LEADER_ADDR=127.0.0.1:${C[$i]} LEADER_PID=${node_pids[$i]}
        FOLLOWER_PIDS=$(for j in 0 1 2; do [ "$j" = "$i" ] || echo "${node_pids[$j]}"; done | paste -sd,)
        return
      fi
    done
    for i in 0 1 2; do
      kill -0 "${node_pids[$i]}" 2>/dev/null || { tail -n 40 "$dir"/n*.log >&2; say "a node exited while starting"; exit 1; }
    done
    sleep 0.1
  done
  tail -n 40 "$dir"/n*.log >&2
  say "no leader elected within 20 s"
  exit 1
}

# Per-thread counters of the processes in $1 (comma-separated), one line
# per thread: pid tid comm switches cpu_ns.
snapshot() {
  python3 - "$1" <<'EOF'
import os, sys
for pid in sys.argv[1].split(","):
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            comm = open(f"{base}/comm").read().strip().replace(" ", "_")
            status = dict(l.split(":", 1) for l in open(f"{base}/status") if ":" in l)
            switches = int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])
            cpu = int(open(f"{base}/schedstat").read().split()[0])
        except (OSError, KeyError, ValueError):
            continue
        print(pid, tid, comm, switches, cpu)
EOF
}

# One cell: kv-load against the leader while the counters are read around
# the measured window. Appends one line to $RESULTS.
cell() {
  local variant=$1 pass=$2 op=$3 clients=$4
  local all="$LEADER_PID,$FOLLOWER_PIDS"
  "$KV_LOAD" --addr "$LEADER_ADDR" --protocol resp --op "$op" --keyspace "$KEYSPACE" --clients "$clients" \
    --seconds "$SECONDS_" --warmup "$WARMUP" >"$WORK/load.out" 2>"$WORK/load.err" &
  local load=$!
  sleep "$WARMUP"
  snapshot "$all" >"$WORK/before"
  perf stat --per-thread -x, -e raw_syscalls:sys_enter -p "$all" -- sleep "$SECONDS_" 2>"$WORK/perf" >/dev/null || true
  snapshot "$all" >"$WORK/after"
  if ! wait "$load"; then
    cat "$WORK/load.err" >&2
    say "kv-load failed ($variant, $op, $clients clients)"
    exit 1
  fi
  python3 - "$WORK" "$LEADER_PID" "$variant" "$pass" "$op" "$clients" "$SECONDS_" >>"$RESULTS" <<'EOF'
import sys
work, leader, variant, npass, op, clients, seconds = sys.argv[1:]
load = dict(kv.split("=", 1) for kv in open(f"{work}/load.out").read().split())
ops = float(load["ops_per_sec"]) * float(seconds)
def read(name):
    rows = {}
    for line in open(f"{work}/{name}"):
        pid, tid, comm, sw, cpu = line.split()
        rows[tid] = (pid, comm, int(sw), int(cpu))
    return rows
before, after = read("before"), read("after")
syscalls = {}
for line in open(f"{work}/perf"):
    parts = line.strip().split(",")
    if len(parts) > 3 and parts[3].startswith("raw_syscalls") and parts[1].isdigit():
        syscalls[parts[0].rsplit("-", 1)[-1]] = int(parts[1])
perf_ok = bool(syscalls)
def klass(comm):
    return "wal" if comm == "raft-wal" else "rt" if comm.startswith("tokio-rt") or comm.startswith("raft-kv") else "other"
sums = {}
for tid, (pid, comm, sw, cpu) in after.items():
    b = before.get(tid, (pid, comm, 0, 0))
    role = "L" if pid == leader else "F"
    key = f"{role}-{klass(comm)}"
    s = sums.setdefault(key, [0, 0, 0])
    s[0] += sw - b[2]
    s[1] += syscalls.get(tid, 0)
    s[2] += cpu - b[3]
fields = [f"variant={variant}", f"pass={npass}", f"op={op}", f"clients={clients}",
          f"ops_per_sec={load['ops_per_sec']}", f"p50_ms={load['p50_ms']}"]
for role, nodes in (("L", 1), ("F", 2)):
    for k in ("rt", "wal", "other"):
        sw, sc, cpu = sums.get(f"{role}-{k}", [0, 0, 0])
        fields.append(f"cs_{role}{k}={sw / nodes / ops:.2f}")
        fields.append(f"sys_{role}{k}={sc / nodes / ops:.2f}" if perf_ok else f"sys_{role}{k}=-")
        fields.append(f"us_{role}{k}={cpu / nodes / ops / 1000:.1f}")
tot = [sum(v[i] for v in sums.values()) for i in range(3)]
fields.append(f"cs_all={tot[0] / ops:.2f}")
fields.append(f"sys_all={tot[1] / ops:.2f}" if perf_ok else "sys_all=-")
fields.append(f"us_all={tot[2] / ops / 1000:.1f}")
print(" ".join(fields))
EOF
  say "pass $pass/$PASSES $variant $op $clients clients: $(cat "$WORK/load.out")"
}

LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
RESULTS=$WORK/results
n=${#VARIANTS[@]}
for pass in $(seq "$PASSES"); do
  for k in $(seq 0 $((n - 1))); do
    v=${VARIANTS[$(( (pass + k) % n ))]}
    name=${v%%=*} spec=${v#*=}
    bin=${spec%%:*} opts=""
    [ "$spec" = "$bin" ] || opts=${spec#*:}
    # shellcheck disable=SC2086 # the options split on spaces
    start_cluster "$bin" $opts
    say "pass $pass/$PASSES $name: leader $LEADER_ADDR (pid $LEADER_PID), followers $FOLLOWER_PIDS"
    if [[ " $OPS " == *" read "* ]]; then
      "$KV_LOAD" --addr "$LEADER_ADDR" --protocol resp --op fill --keyspace "$KEYSPACE" --clients 64 >/dev/null
    fi
    for op in $OPS; do
      for clients in $CLIENTS; do
        cell "$name" "$pass" "$op" "$clients"
      done
    done
    stop_cluster
  done
done

echo "$(nproc) CPUs, load average $LOAD_BEFORE before and $(cut -d' ' -f1 /proc/loadavg) after; median of $PASSES pass(es), ${SECONDS_} s per cell."
echo "Per operation: cs = context switches, sys = system calls, us = CPU microseconds; L = leader, F = one follower (mean of two);"
echo "rt = the runtime's threads, wal = the WAL writer thread; all = the whole cluster. (xN.NN: ratio to the first variant.)"
python3 - "$RESULTS" "${VARIANTS[@]%%=*}" <<'EOF'
import statistics, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1])]
names = sys.argv[2:]
cols = ["ops_per_sec", "p50_ms", "cs_Lrt", "cs_Lwal", "cs_Frt", "cs_Fwal", "cs_all",
        "sys_Lrt", "sys_Lwal", "sys_Frt", "sys_Fwal", "sys_all", "us_Lrt", "us_Lwal", "us_Frt", "us_Fwal", "us_all"]
def med(op, c, name, col):
    vals = [r[col] for r in rows if r["op"] == op and r["clients"] == c and r["variant"] == name]
    if not vals or "-" in vals:
        return None
    return statistics.median(float(v) for v in vals)
print("| op | clients | variant | " + " | ".join(cols) + " |")
print("|" + "---|" * (len(cols) + 3))
cells = []
for r in rows:
    if (r["op"], r["clients"]) not in cells:
        cells.append((r["op"], r["clients"]))
for op, c in cells:
    for name in names:
        out = []
        for col in cols:
            v = med(op, c, name, col)
            base = med(op, c, names[0], col)
            if v is None:
                out.append("-")
                continue
            text = f"{v:.0f}" if col == "ops_per_sec" else f"{v:.2f}" if col.startswith(("cs", "sys", "p50")) else f"{v:.1f}"
            if name != names[0] and base:
                text += f" (x{v / base:.2f})"
            out.append(text)
        print(f"| {op} | {c} | {name} | " + " | ".join(out) + " |")
EOF
