#!/usr/bin/env bash
# Our Duhton side by side with the original Duhton on stmgc-c8.
#
#   duhton/compare-c8.sh /path/to/pypy_stmgc          # a checkout of the public mirror
#   REPEAT=5 DEMOS="nqueens trees" duhton/compare-c8.sh /path/to/pypy_stmgc
#
# The checkout must hold `duhton-c8/` and `c8/` (hg-mirrors/pypy_stmgc, branch default).
# Nothing of it is copied into this repository: the original is built from the checkout
# into a temporary directory, and its demos are run from `duhton-c8/demo/` where they are.
#
# For each demo (all of `duhton-c8/demo/*.duh`, or those named in DEMOS), in REPEAT rounds
# (default 3), interleaved so that changes in machine load hit every configuration alike:
# the original at 1 and 2 threads, ours (STM build) at 1 and 2 threads, ours (GIL build)
# at 1 and 2 threads. It prints the median wall time of each, the ratios, and whether every
# run printed what the original printed (lines that show times are compared with their
# numbers masked). A run that exceeds TIMEOUT seconds (default 300) or fails is shown as
# such; a demo the original does not complete has no targets.
#
# Environment: REPEAT, DEMOS, TIMEOUT, CARGO_TARGET_DIR (where our binaries are built;
# default target/), CC (default gcc).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1/duhton-c8" ] || [ ! -d "$1/c8" ]; then
    echo "usage: $0 PYPY_STMGC_CHECKOUT   (a checkout with duhton-c8/ and c8/)" >&2
    exit 2
fi
CHECKOUT=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
REPEAT=${REPEAT:-3}
TIMEOUT=${TIMEOUT:-300}
CC=${CC:-gcc}
TARGET=${CARGO_TARGET_DIR:-target}
DEMO_DIR="$CHECKOUT/duhton-c8/demo"
if [ -z "${DEMOS:-}" ]; then
    DEMOS=$(cd "$DEMO_DIR" && ls ./*.duh | sed 's|^\./||; s|\.duh$||')
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

echo "building the original (duhton-c8 on c8)..." >&2
(cd "$CHECKOUT/duhton-c8" &&
    $CC -fcommon -pthread -O2 -DNDEBUG ./*.c ../c8/stmgc.c -o "$WORK/duhton-c8" -lrt)
echo "building ours (STM and GIL release builds)..." >&2
CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p duhton
cp "$TARGET/release/duhton" "$WORK/duhton-stm"
CARGO_TARGET_DIR="$TARGET/gil" cargo build --release -q -p duhton --features stm-runtime/gil
cp "$TARGET/gil/release/duhton" "$WORK/duhton-gil"

CONFIGS="c8-1 c8-2 stm-1 stm-2 gil-1 gil-2"
bin_of() {
    case $1 in
    c8-*) echo "$WORK/duhton-c8" ;;
    stm-*) echo "$WORK/duhton-stm" ;;
    gil-*) echo "$WORK/duhton-gil" ;;
    esac
}

# Output with the numbers of lines that show times masked, in sorted order (the order in
# which parallel transactions print is the schedule's).
normalize() {
    sed -E '/[Tt][Ii][Mm][Ee]|setup-transactions/ s/-?[0-9]+/N/g' "$1" | LC_ALL=C sort
}

# One run: "<seconds>" or "timeout" or "failed(<status>)"; output kept in $WORK, and the
# run's CPU time (user + system, seconds) in $WORK/<demo>.<cfg>.<round>.cpu.
run_one() {
    local demo=$1 cfg=$2 round=$3 bin threads rc times
    bin=$(bin_of "$cfg")
    threads=${cfg##*-}
    set +e
    times=$( { TIMEFORMAT='%R %U %S'; time (cd "$DEMO_DIR" && timeout "$TIMEOUT" "$bin" \
        --num-threads "$threads" "$demo.duh" >"$WORK/$demo.$cfg.$round.out" \
        2>"$WORK/$demo.$cfg.$round.err"); } 2>&1)
    rc=$?
    set -e
    echo "$times" | awk '{printf "%.3f", $2 + $3}' >"$WORK/$demo.$cfg.$round.cpu"
    if [ $rc -eq 124 ]; then
        echo timeout
    elif [ $rc -ne 0 ]; then
        echo "failed($rc)"
    else
        echo "$times" | awk '{printf "%.3f", $1}'
    fi
}

# The median CPU time of the completed runs of a configuration ("-" when none completed).
median_cpu() {
    local demo=$1 cfg=$2 r st cpus=()
    for r in $(seq "$REPEAT"); do
        # shellcheck disable=SC2086
        st=$(echo ${T[$demo.$cfg]} | cut -d' ' -f"$r")
        if [[ $st == [0-9]* ]]; then cpus+=("$(cat "$WORK/$demo.$cfg.$r.cpu")"); fi
    done
    if [ ${#cpus[@]} -eq 0 ]; then
        echo "-"
        return
    fi
    median "${cpus[@]}"
}

# How much of the time two threads ran at once: CPU time over (wall time x 2), percent.
overlap() {
    case "$1$2" in
    *[a-z-]*) echo "-" ;;
    *) awk -v c="$1" -v w="$2" 'BEGIN { if (w + 0 == 0) print "-"; else printf "%.0f%%", 100 * c / (2 * w) }' ;;
    esac
}

median() {
    # The median of the completed runs among the arguments; the first failure when none
    # completed.
    local nums=() x
    for x in "$@"; do
        case $x in [0-9]*) nums+=("$x") ;; esac
    done
    if [ ${#nums[@]} -eq 0 ]; then
        echo "$1"
        return
    fi
    printf '%s\n' "${nums[@]}" | sort -g |
        awk '{a[NR]=$1} END {printf "%.3f", (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

# How many of the runs among the arguments did not complete.
failures() {
    local n=0 x
    for x in "$@"; do
        case $x in [0-9]*) ;; *) n=$((n + 1)) ;; esac
    done
    echo $n
}

ratio() {
    case "$1$2" in
    *[a-z]*) echo "-" ;;
    *) awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else printf "%.2f", a / b }' ;;
    esac
}

declare -A T
for demo in $DEMOS; do
    for r in $(seq "$REPEAT"); do
        echo "$demo: round $r/$REPEAT" >&2
        for cfg in $CONFIGS; do
            T[$demo.$cfg]+="$(run_one "$demo" "$cfg" "$r") "
        done
    done
done

echo
echo "Duhton side by side with the original (duhton-c8 on stmgc-c8), $(nproc) CPUs,"
echo "median wall seconds of $REPEAT interleaved rounds; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '%-24s %8s %8s %8s %8s %8s %8s | %7s %7s %7s %7s %7s | %6s %6s %7s %7s | %s\n' \
    demo c8-1 c8-2 ours-1 ours-2 gil-1 gil-2 \
    'c8/us2' 'c8 1/2' 'us 1/2' 'stm/gil' 'c8/us1' \
    'c8 ov' 'us ov' 'c8 w2/1' 'us w2/1' output
for demo in $DEMOS; do
    declare -A M=()
    for cfg in $CONFIGS; do
        # shellcheck disable=SC2086
        M[$cfg]=$(median ${T[$demo.$cfg]})
    done
    # Same output as the original's first completed run, for every completed run of ours.
    ref=""
    for r in $(seq "$REPEAT"); do
        for t in 1 2; do
            f="$WORK/$demo.c8-$t.$r.out"
            # shellcheck disable=SC2086
            st=$(echo ${T[$demo.c8-$t]} | cut -d' ' -f"$r")
            if [ -z "$ref" ] && [[ $st == [0-9]* ]]; then ref=$f; fi
        done
    done
    verdict=same
    notes=""
    for cfg in $CONFIGS; do
        # shellcheck disable=SC2086
        nf=$(failures ${T[$demo.$cfg]})
        if [ "$nf" -gt 0 ]; then
            # shellcheck disable=SC2086
            notes+="; $cfg: $nf of $REPEAT runs did not complete ($(echo ${T[$demo.$cfg]} | tr ' ' '\n' | grep -v '^[0-9]' | sort -u | tr '\n' ' ' | sed 's/ $//'))"
        fi
    done
    if [ -z "$ref" ]; then
        verdict="the original never completed"
        grep -h -m1 -iE 'fault|error|assert' "$WORK/$demo".c8-*.err 2>/dev/null | head -1 |
            sed 's/^/  (/; s/$/)/' | tr -d '\n' >"$WORK/why" || true
        verdict+=$(cat "$WORK/why")
    else
        differ=""
        for cfg in stm-1 stm-2 gil-1 gil-2; do
            for r in $(seq "$REPEAT"); do
                f="$WORK/$demo.$cfg.$r.out"
                if [ -e "$f" ] && ! cmp -s <(normalize "$ref") <(normalize "$f"); then
                    differ+=" $cfg"
                fi
            done
        done
        if [ -n "$differ" ]; then
            # A demo whose output depends on the schedule: the original's own runs differ.
            own=""
            for r in $(seq "$REPEAT"); do
                for t in 1 2; do
                    f="$WORK/$demo.c8-$t.$r.out"
                    # shellcheck disable=SC2086
                    st=$(echo ${T[$demo.c8-$t]} | cut -d' ' -f"$r")
                    if [[ $st == [0-9]* ]] && ! cmp -s <(normalize "$ref") <(normalize "$f"); then
                        own=yes
                    fi
                done
            done
            if [ -n "$own" ]; then
                verdict="varies with the schedule, as the original's own runs do"
            else
                verdict="DIFFERENT ($(echo "$differ" | tr ' ' '\n' | sort -u | tr '\n' ' '))"
            fi
        fi
    fi
    declare -A C=()
    for cfg in c8-1 c8-2 stm-1 stm-2; do
        C[$cfg]=$(median_cpu "$demo" "$cfg")
    done
    printf '%-24s %8s %8s %8s %8s %8s %8s | %7s %7s %7s %7s %7s | %6s %6s %7s %7s | %s\n' \
        "$demo" "${M[c8-1]}" "${M[c8-2]}" "${M[stm-1]}" "${M[stm-2]}" "${M[gil-1]}" "${M[gil-2]}" \
        "$(ratio "${M[c8-2]}" "${M[stm-2]}")" \
        "$(ratio "${M[c8-1]}" "${M[c8-2]}")" \
        "$(ratio "${M[stm-1]}" "${M[stm-2]}")" \
        "$(ratio "${M[stm-1]}" "${M[gil-1]}")" \
        "$(ratio "${M[c8-1]}" "${M[stm-1]}")" \
        "$(overlap "${C[c8-2]}" "${M[c8-2]}")" \
        "$(overlap "${C[stm-2]}" "${M[stm-2]}")" \
        "$(ratio "${C[c8-2]}" "${C[c8-1]}")" \
        "$(ratio "${C[stm-2]}" "${C[stm-1]}")" \
        "$verdict$notes"
done
echo
echo "c8/us2: the original's time at 2 threads over ours (>= 1: ours at least as fast);"
echo "c8 1/2, us 1/2: each one's 1 -> 2 thread speed-up; stm/gil: our single-thread STM"
echo "overhead over our GIL build; c8/us1: the original's time at 1 thread over ours."
echo "c8 ov, us ov: the 2-thread runs' CPU time over (wall time x 2): under 100%, the threads"
echo "(or the demo) did not keep both CPUs busy; w2/1: CPU time at 2 threads over CPU time at 1"
echo "(the work that running in parallel added: aborts, waiting that spins, cache misses)."
