#!/usr/bin/env bash
# Duhton on the STM: single-thread overhead (STM build against GIL build of the same
# interpreter) and 1 -> 2 thread scaling (STM build), in one run on this machine.
#
#   duhton/bench.sh            # REPEAT=5 runs of each configuration, median wall time
#   REPEAT=9 duhton/bench.sh
#
# Builds the release binary twice: STM mode into target/, GIL mode (feature
# stm-runtime/gil) into target/gil/. Runs are interleaved (STM, GIL, STM, GIL, ...) so that
# changes in machine load hit both sides alike. A plain Rust loop on 1 and 2 threads is
# timed too: it is the best speed-up this machine gives right now, whatever the STM does.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-5}
DEMOS=duhton/demos

echo "building the STM and GIL release binaries..." >&2
cargo build --release -q -p duhton
CARGO_TARGET_DIR=target/gil cargo build --release -q -p duhton --features stm-runtime/gil
STM_BIN=target/release/duhton
GIL_BIN=target/gil/release/duhton

# Wall-clock seconds of one run of "$@" (output discarded; a failure stops the script).
wall() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc -l
}

median() {
    sort -g | awk '{a[NR]=$1} END {m=int((NR+1)/2); printf "%.3f", a[m]}'
}

ratio() {
    echo "$1 / $2" | bc -l | awk '{printf "%.3f", $1}'
}

# Calibration: a plain Rust loop split over 1 and 2 threads.
CAL_DIR=$(mktemp -d)
trap 'rm -rf "$CAL_DIR"' EXIT
cat >"$CAL_DIR/spin.rs" <<'EOF'
fn work(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    x
}
fn main() {
    let threads: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let n = 2_000_000_000 / threads;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(move || work(n))).collect();
        for h in hs {
            std::hint::black_box(h.join().unwrap());
        }
    });
}
EOF
rustc -O -o "$CAL_DIR/spin" "$CAL_DIR/spin.rs"

declare -A T
for r in $(seq "$REPEAT"); do
    echo "round $r/$REPEAT" >&2
    for demo in square_roots trees; do
        T[$demo-stm]+="$(wall "$STM_BIN" --num-threads 1 "$DEMOS/$demo.duh") "
        T[$demo-gil]+="$(wall "$GIL_BIN" --num-threads 1 "$DEMOS/$demo.duh") "
    done
    T[sqrt-stm-2]+="$(wall "$STM_BIN" --num-threads 2 "$DEMOS/square_roots.duh") "
    T[spin-1]+="$(wall "$CAL_DIR/spin" 1) "
    T[spin-2]+="$(wall "$CAL_DIR/spin" 2) "
done

med() { tr ' ' '\n' <<<"${T[$1]}" | grep . | median; }

sq_stm=$(med square_roots-stm)
sq_gil=$(med square_roots-gil)
tr_stm=$(med trees-stm)
tr_gil=$(med trees-gil)
sq_2=$(med sqrt-stm-2)
sp_1=$(med spin-1)
sp_2=$(med spin-2)

echo
echo "Duhton on the STM, $(nproc) CPUs, median of $REPEAT runs (wall seconds), load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "single-thread overhead (STM build / GIL build, --num-threads 1):"
printf "  %-28s STM %7s s   GIL %7s s   ratio %s\n" "square_roots.duh (CPU-heavy)" "$sq_stm" "$sq_gil" "$(ratio "$sq_stm" "$sq_gil")"
printf "  %-28s STM %7s s   GIL %7s s   ratio %s\n" "trees.duh (build and walk)" "$tr_stm" "$tr_gil" "$(ratio "$tr_stm" "$tr_gil")"
echo
echo "scaling (STM build, square_roots.duh):"
printf "  1 thread %7s s   2 threads %7s s   speed-up %s\n" "$sq_stm" "$sq_2" "$(ratio "$sq_stm" "$sq_2")"
echo "calibration (plain Rust loop, no STM: the most this machine gives now):"
printf "  1 thread %7s s   2 threads %7s s   speed-up %s\n" "$sp_1" "$sp_2" "$(ratio "$sp_1" "$sp_2")"
