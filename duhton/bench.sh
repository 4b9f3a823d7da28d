#!/usr/bin/env bash
# Duhton on the STM: single-thread overhead (STM build against GIL build of the same
# interpreter) and 1 -> 2 thread scaling (STM build), in one run on this machine.
#
#   duhton/bench.sh            # REPEAT=7 runs of each configuration, best of them
#   REPEAT=15 duhton/bench.sh
#
# Best-of-N, because the machine is shared: other work only ever adds time.
#
# Builds the release binary twice: STM mode into target/, GIL mode (feature
# stm-runtime/gil) into target/gil/. Runs are interleaved (STM, GIL, STM, GIL, ...) so that
# changes in machine load hit both sides alike. For the scaling figure, two calibrations
# run in the same rounds: two independent 1-thread processes of the CPU-heavy demo at once
# (the speed-up the machine gives this very workload, with nothing shared), and a plain
# Rust loop on 1 and 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-7}
DEMOS=duhton/demos

echo "building the STM and GIL release binaries..." >&2
cargo build --release -q -p duhton
CARGO_TARGET_DIR=target/gil cargo build --release -q -p duhton --features stm-runtime/gil
STM_BIN=target/release/duhton
GIL_BIN=target/gil/release/duhton

# "wall cpu" seconds of one run of "$@" (cpu = user + system time of the process; output
# discarded; a failure stops the script).
measure() {
    local f
    f=$(mktemp)
    /usr/bin/time -f "%e %U %S" -o "$f" "$@" >/dev/null
    awk '{printf "%s %.3f", $1, $2 + $3}' "$f"
    rm -f "$f"
}

best() {
    sort -g | head -1 | awk '{printf "%.3f", $1}'
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

declare -A W C
run() {
    local key=$1 m
    shift
    m=$(measure "$@")
    W[$key]+="${m% *} "
    C[$key]+="${m#* } "
}
for r in $(seq "$REPEAT"); do
    echo "round $r/$REPEAT" >&2
    for demo in square_roots trees micro_transactions; do
        run "$demo-stm" "$STM_BIN" --num-threads 1 "$DEMOS/$demo.duh"
        run "$demo-gil" "$GIL_BIN" --num-threads 1 "$DEMOS/$demo.duh"
    done
    run sqrt-stm-2 "$STM_BIN" --num-threads 2 "$DEMOS/square_roots.duh"
    run pair bash -c "$STM_BIN --num-threads 1 $DEMOS/square_roots.duh >/dev/null &
        $STM_BIN --num-threads 1 $DEMOS/square_roots.duh >/dev/null & wait"
    run spin-1 "$CAL_DIR/spin" 1
    run spin-2 "$CAL_DIR/spin" 2
done

w() { tr ' ' '\n' <<<"${W[$1]}" | grep . | best; }
c() { tr ' ' '\n' <<<"${C[$1]}" | grep . | best; }

echo
echo "Duhton on the STM, $(nproc) CPUs, best of $REPEAT runs, load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "single-thread overhead (STM build / GIL build, --num-threads 1), wall and CPU seconds"
echo "(the issue's figures are the first two lines; micro_transactions shows the cost per transaction):"
for demo in square_roots trees micro_transactions; do
    printf "  %-24s wall: STM %6s GIL %6s ratio %s   cpu: STM %6s GIL %6s ratio %s\n" "$demo.duh" \
        "$(w $demo-stm)" "$(w $demo-gil)" "$(ratio "$(w $demo-stm)" "$(w $demo-gil)")" \
        "$(c $demo-stm)" "$(c $demo-gil)" "$(ratio "$(c $demo-stm)" "$(c $demo-gil)")"
done
echo
echo "scaling, wall seconds (STM build, square_roots.duh):"
printf "  1 thread %6s   2 threads %6s   speed-up %s\n" \
    "$(w square_roots-stm)" "$(w sqrt-stm-2)" "$(ratio "$(w square_roots-stm)" "$(w sqrt-stm-2)")"
printf "  CPU seconds: 1 thread %6s   2 threads %6s   (2-thread work / 1-thread work: %s)\n" \
    "$(c square_roots-stm)" "$(c sqrt-stm-2)" "$(ratio "$(c sqrt-stm-2)" "$(c square_roots-stm)")"
echo "calibration 1, wall seconds: two independent 1-thread processes of the same demo at once"
echo "(nothing shared at all: the speed-up this machine gives this very workload now):"
printf "  1 process %6s   2 processes %6s   speed-up %s\n" \
    "$(w square_roots-stm)" "$(w pair)" "$(echo "2 * $(w square_roots-stm) / $(w pair)" | bc -l | awk '{printf "%.3f", $1}')"
echo "calibration 2, wall seconds (a plain Rust loop, no STM):"
printf "  1 thread %6s   2 threads %6s   speed-up %s\n" \
    "$(w spin-1)" "$(w spin-2)" "$(ratio "$(w spin-1)" "$(w spin-2)")"
