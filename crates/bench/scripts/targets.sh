#!/usr/bin/env bash
# The write path's speed targets, measured in one run against their
# baselines, with a verdict per target:
#
#   raft-bench        raft-node / openraft writes/s, in memory, medians of
#                     --passes runs, at 1, 64, 256 and 4096 clients: >= 2x
#   redis-benchmark   raft-kv / redis-server (appendfsync always): SET at 1
#                     client >= 0.7x, at 50 >= 0.6x, at 50 x 16 pipelined
#                     >= 1.0x; GET at 50 >= 0.8x
#   side-by-side      kv-load (one closed-loop generator) against raft-kv,
#                     etcd and redis-server: writes at 1 client >= 0.7x redis,
#                     at 64 and 256 >= 0.6x redis; reads at 64 >= 0.8x redis;
#                     writes >= 4x etcd at 1 client and >= 5x at 256 with a
#                     lower p99
#   leader CPU        CPU per write on the leader at 64 clients (switches.sh)
#                     against the baseline build: <= 0.5x
#   raft-sim          user CPU of `raft-sim --seeds 300 --threads 1` against
#                     the baseline build (alternating, medians): <= 1.0x
#                     (seeds/s unchanged or better, within 5%)
#   raft-core bench   `cargo bench -p raft-core`, criterion's comparison
#                     with the baseline build's run (printed, not judged:
#                     criterion says which changed beyond its noise)
#
#   crates/bench/scripts/targets.sh [--baseline COMMIT] [--passes N] [--seconds S] [--skip LIST]
#
# --baseline: the build before the write path was reshaped (default
# 9751518); it is checked out in a temporary worktree and built into
# $BASELINE_TARGET_DIR (default target/baseline). --skip: comma-separated
# parts to leave out (raft-bench, redis-benchmark, side-by-side, cpu, sim,
# core-bench). Every part's own output is kept in the report directory
# (printed at the end) and the verdicts are printed last. Run it on a quiet
# machine: every figure is a ratio measured in the same run, but the load
# average of other work still moves them (it is printed before and after).
set -euo pipefail
cd "$(dirname "$0")/../../.."

BASELINE=9751518 PASSES=3 SECONDS_=5 SKIP=""
while [ $# -gt 0 ]; do
  case $1 in
    --baseline) BASELINE=$2; shift 2 ;;
    --passes) PASSES=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --skip) SKIP=",$2,"; shift 2 ;;
    *) echo "usage: $0 [--baseline COMMIT] [--passes N] [--seconds S] [--skip raft-bench,redis-benchmark,side-by-side,cpu,sim,core-bench]" >&2; exit 2 ;;
  esac
done
skipped() { [[ "$SKIP" == *",$1,"* ]]; }
say() { echo "targets: $*" >&2; }

TARGET_DIR=$(realpath -m "${CARGO_TARGET_DIR:-target}")
BASE_DIR=$(realpath -m "${BASELINE_TARGET_DIR:-target/baseline}")
OUT=$(mktemp -d /tmp/raft-targets.XXXXXX)
WORKTREE="$OUT/baseline-src"
cleanup() { git worktree remove --force "$WORKTREE" 2>/dev/null || true; }
trap cleanup EXIT

say "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/load"
say "building this tree and the baseline $BASELINE"
CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p raft-kv -p raft-bench -p raft-sim >&2
git worktree add --detach "$WORKTREE" "$BASELINE" >/dev/null 2>&1
(cd "$WORKTREE" && CARGO_TARGET_DIR="$BASE_DIR" cargo build --release -p raft-kv -p raft-sim >&2)
NEW_KV=$TARGET_DIR/release/raft-kv
NEW_SIM=$TARGET_DIR/release/raft-sim
OLD_KV=$BASE_DIR/release/raft-kv
OLD_SIM=$BASE_DIR/release/raft-sim

if ! skipped raft-bench; then
  say "raft-bench, $PASSES runs"
  "$TARGET_DIR/release/raft-bench" --clients 1,64,256,4096 --seconds "$SECONDS_" --runs "$PASSES" \
    | tee "$OUT/raft-bench.txt" >&2
fi
if ! skipped redis-benchmark; then
  say "redis-benchmark"
  RAFT_KV=$NEW_KV crates/kv/scripts/redis-benchmark.sh | tee "$OUT/redis-benchmark.txt" >&2
fi
if ! skipped side-by-side; then
  say "side-by-side, $PASSES passes"
  KV_LOAD=$TARGET_DIR/release/kv-load RAFT_KV=$NEW_KV \
    crates/bench/scripts/side-by-side.sh "$PASSES" --seconds "$SECONDS_" | tee "$OUT/side-by-side.txt" >&2
fi
if ! skipped cpu; then
  say "leader CPU per write at 64 clients, baseline then this tree"
  KV_LOAD=$TARGET_DIR/release/kv-load crates/bench/scripts/switches.sh --passes "$PASSES" \
    --seconds "$SECONDS_" --clients 64 --ops write "before=$OLD_KV" "now=$NEW_KV" | tee "$OUT/switches.txt" >&2
fi
if ! skipped sim; then
  say "raft-sim user CPU, alternating, $PASSES each"
  : >"$OUT/sim.txt"
  for _ in $(seq "$PASSES"); do
    for v in before now; do
      bin=$OLD_SIM; [ $v = now ] && bin=$NEW_SIM
      # user CPU seconds of the run, from bash's time in POSIX format
      t=$( { TIMEFORMAT=%U; time "$bin" --seeds 300 --threads 1 >/dev/null; } 2>&1 | tail -n 1)
      echo "$v $t" | tee -a "$OUT/sim.txt" >&2
    done
  done
fi
if ! skipped core-bench; then
  say "cargo bench -p raft-core: the baseline's run saved, then this tree's compared with it"
  (cd "$WORKTREE" && CARGO_TARGET_DIR="$TARGET_DIR" cargo bench -p raft-core --bench core -- --save-baseline targets-before >"$OUT/core-bench-before.txt" 2>&1) || true
  CARGO_TARGET_DIR="$TARGET_DIR" cargo bench -p raft-core --bench core -- --baseline targets-before 2>&1 | tee "$OUT/core-bench.txt" >&2 || true
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/load"

python3 - "$OUT" "$BASELINE" <<'EOF'
import os, re, statistics, sys
out, baseline = sys.argv[1], sys.argv[2]
rows = []  # (target, measured, verdict)

def verdict(value, goal, higher=True):
    if value is None:
        return "-"
    return "met" if (value >= goal if higher else value <= goal) else "MISSED"

def read(name):
    p = os.path.join(out, name)
    return open(p).read() if os.path.exists(p) else None

t = read("raft-bench.txt")
if t:
    for line in t.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 3 and cells[0].isdigit() and cells[3].endswith("x"):
            r = float(cells[3][:-1])
            rows.append((f"raft-bench {cells[0]} clients: raft-node / openraft >= 2x", f"{r:.2f}x", verdict(r, 2.0)))

t = read("redis-benchmark.txt")
if t:
    rates = {}
    for line in t.splitlines():
        m = re.match(r"(.+?)\s+(SET|GET)\s+c=(\d+)\s+P=(\d+)\s+(\d+) req/s", line)
        if m:
            rates[(m.group(1).strip(), m.group(2), int(m.group(3)), int(m.group(4)))] = float(m.group(5))
    for op, c, p, goal in [("SET", 1, 1, 0.7), ("SET", 50, 1, 0.6), ("SET", 50, 16, 1.0), ("GET", 50, 1, 0.8)]:
        kv, redis = rates.get(("raft-kv (3 nodes)", op, c, p)), rates.get(("redis (fsync always)", op, c, p))
        r = kv / redis if kv and redis else None
        rows.append((f"redis-benchmark {op} c={c} P={p}: raft-kv / redis fsync always >= {goal}x",
                     f"{r:.2f}x ({kv:,.0f} / {redis:,.0f})" if r else "-", verdict(r, goal)))

t = read("side-by-side.txt")
if t:
    cells_of = {}
    for line in t.splitlines():
        if "server CPU" in line:
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0] in ("write", "read") and cells[1].isdigit():
            cells_of[(cells[0], int(cells[1]))] = cells
    def rate(cell):
        m = re.match(r"([\d,]+)/s \(([\d.]+) / ([\d.]+) ms\)", cell)
        return (float(m.group(1).replace(",", "")), float(m.group(3))) if m else (None, None)
    for op, c, goal in [("write", 1, 0.7), ("write", 64, 0.6), ("write", 256, 0.6), ("read", 64, 0.8)]:
        cells = cells_of.get((op, c))
        if cells:
            (kv, _), (redis, _) = rate(cells[2]), rate(cells[4])
            r = kv / redis if kv and redis else None
            rows.append((f"kv-load {op} {c} clients: raft-kv / redis >= {goal}x", f"{r:.2f}x" if r else "-", verdict(r, goal)))
    for c, goal in [(1, 4.0), (256, 5.0)]:
        cells = cells_of.get(("write", c))
        if cells:
            (kv, kv99), (etcd, etcd99) = rate(cells[2]), rate(cells[3])
            r = kv / etcd if kv and etcd else None
            ok = verdict(r, goal)
            if c == 256 and ok == "met" and not (kv99 < etcd99):
                ok = "MISSED"
            rows.append((f"kv-load write {c} clients: raft-kv / etcd >= {goal}x" + (" with a lower p99" if c == 256 else ""),
                         f"{r:.2f}x, p99 {kv99} vs {etcd99} ms" if r else "-", ok))

t = read("switches.txt")
if t:
    # the leader's CPU per write: its runtime threads plus its WAL writer
    # (columns us_Lrt and us_Lwal of the table), before and now
    cpu = {}
    for line in t.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 20 and cells[0] == "write" and cells[2] in ("before", "now"):
            cpu[cells[2]] = sum(float(c.split()[0]) for c in cells[15:17])
    if "before" in cpu and "now" in cpu:
        r = cpu["now"] / cpu["before"]
        rows.append(("leader CPU per write, 64 clients: now / before <= 0.5x",
                     f"{r:.2f}x ({cpu['now']:.1f} / {cpu['before']:.1f} us)", verdict(r, 0.5, higher=False)))

t = read("sim.txt")
if t:
    runs = {"before": [], "now": []}
    for line in t.splitlines():
        v, s = line.split()
        runs[v].append(float(s))
    if runs["before"] and runs["now"]:
        b, n = statistics.median(runs["before"]), statistics.median(runs["now"])
        rows.append(("raft-sim user CPU (300 seeds): now / before <= 1.05x", f"{n / b:.2f}x ({n:.2f} s / {b:.2f} s)", verdict(n / b, 1.05, higher=False)))

t = read("core-bench.txt")
if t:
    worse = len(re.findall(r"Performance has regressed", t))
    better = len(re.findall(r"Performance has improved", t))
    same = len(re.findall(r"No change in performance|Change within noise", t))
    rows.append(("cargo bench -p raft-core against the baseline: none regressed",
                 f"{better} improved, {same} unchanged, {worse} regressed", "met" if worse == 0 and (better + same) > 0 else ("MISSED" if worse else "-")))

print()
print(f"Targets of the write path against {baseline} (reports in {out}):")
print(open(os.path.join(out, "load")).read().strip())
print()
print("| target | measured | verdict |")
print("|---|---|---|")
for target, measured, v in rows:
    print(f"| {target} | {measured} | {v} |")
EOF
