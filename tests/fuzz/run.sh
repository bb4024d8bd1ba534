#!/bin/sh
# Run every fuzz target (or those named) for RUNS inputs each, one at a
# time, seeded from the /proc fixtures. Needs nightly and cargo-fuzz; says
# so and exits 0 where they are missing (tests/fuzz_stable.rs runs the same
# bodies on stable in every `cargo test`).
#   tests/fuzz/run.sh [TARGET...]      RUNS=10000000 MAX_TIME=0 (0 = no cap)
# SANITIZER=none drops AddressSanitizer (cargo fuzz's default): the targets
# are safe Rust, and without it the string-heavy config targets run ~5x
# faster, which is what makes 10 M inputs fit in minutes.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top" || exit 1
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "SKIP fuzzing: no nightly toolchain (rustup toolchain install nightly)"; exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "SKIP fuzzing: cargo-fuzz missing (cargo install cargo-fuzz)"; exit 0
fi
runs=${RUNS:-10000000}
max=${MAX_TIME:-0}
san=${SANITIZER:-address}
targets=${*:-"proc_stat proc_psi proto_decode proc_meminfo proc_vmstat proc_zoneinfo policy props config_toml"}
fx=tests/fixtures/proc
status=0
for t in $targets; do
    corpus=tests/fuzz/corpus/$t
    mkdir -p "$corpus"
    case $t in
        proc_meminfo) n=0; for f in $fx/*/meminfo; do n=$((n+1)); cp "$f" "$corpus/seed$n"; done ;;
        proc_vmstat) n=0; for f in $fx/*/vmstat; do n=$((n+1)); cp "$f" "$corpus/seed$n"; done ;;
        proc_zoneinfo) n=0; for f in $fx/*/zoneinfo; do n=$((n+1)); cp "$f" "$corpus/seed$n"; done ;;
        proc_psi) n=0; for f in $fx/*/pressure_memory; do n=$((n+1)); cp "$f" "$corpus/seed$n"; done ;;
        config_toml) cp init/*.toml "$corpus/" 2>/dev/null ;;
    esac
    echo "== $t: $runs runs"
    cargo +nightly fuzz run -s "$san" --fuzz-dir tests/fuzz "$t" "$corpus" -- \
        -runs="$runs" -max_total_time="$max" -print_final_stats=1 2>&1 |
        grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::average_exec_per_sec|Done|==[0-9]+==|thread .* panicked|SUMMARY)' 
    rc=$?
    [ -n "$(ls tests/fuzz/artifacts/$t 2>/dev/null)" ] && { echo "!! $t: crash artifacts in tests/fuzz/artifacts/$t"; status=1; }
done
exit $status
