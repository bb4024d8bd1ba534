#!/usr/bin/env bash
# Runs one scenario under several killers, RUNS times each, alternating
# (run 1 of every killer, then run 2, ...) so drift on a shared host hits
# them alike. Prints per-killer medians and ranges (also saved as
# tests/vm/out/<scenario><conf>-compare.md), leaves one plot.svg per run and
# one picture with every run (tests/vm/out/<scenario><conf>-compare.svg).
#
#   tests/vm/compare.sh SCENARIO [KILLER...]
#
# KILLERs default to lmkd-rs, aosp, earlyoom and none; aosp is optional (it
# needs AOSP_LMKD, see run.sh) and is left out with a note when absent.
# lmkd-rs@VARIANT runs lmkd-rs with tests/vm/variants/VARIANT.toml.
# RUNS (default 3) runs per killer. Other environment is passed to run.sh
# (RAM or MEM, LOW_RAM, ZRAM_MB, VM_TIMEOUT, ...); <conf> names a
# non-default memory configuration, e.g. "-1024m-lowram0".
# STRACE defaults to 0 here (run.sh: 1). strace stops a killer at each of
# its syscalls; in the TCG guest that took the core thread's CPU from
# 100 to 750 ms (lmkd-rs) and from 90 to 440 (lmkd) in a camera run with
# no kill, and moved each killer's stall by its own syscall count, so a
# comparison runs them untraced, as on a phone. STRACE=1 adds the
# daemon's mmap-family count (the VM ladder test checks it).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 SCENARIO [lmkd-rs[@VARIANT]|aosp|earlyoom|none ...]" >&2; exit 64; }
SCEN=$1
shift
KILLERS=("$@")
[ ${#KILLERS[@]} -gt 0 ] || KILLERS=(lmkd-rs aosp earlyoom none)
RUNS=${RUNS:-3}
export STRACE=${STRACE:-0}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: RUNS=$RUNS is not a positive number" >&2; exit 64; }
NAME=$(basename "$SCEN" .toml)
CONF=""
if [ -n "${RAM:-}${MEM:-}${LOW_RAM:-}" ]; then
    ram=${RAM:-${MEM:-512}}
    CONF="-${ram%[Mm]}m-lowram${LOW_RAM:-auto}"
fi
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if [[ " ${KILLERS[*]} " == *" lmkd-rs"[\ @]* ]]; then "$HERE/build.sh"; else "$HERE/build.sh" lmkd-workload; fi
fi
OUTS=()
for r in $(seq 1 "$RUNS"); do
    for k in "${KILLERS[@]}"; do
        d=$HERE/out/$NAME-$k-${CONF#-}${CONF:+-}r$r
        rm -rf "$d"
        rc=0
        SKIP_BUILD=1 RUN_TAG="${CONF#-}${CONF:+-}r$r" "$HERE/run.sh" "$SCEN" "$k" || rc=$?
        echo "compare.sh: $NAME$CONF under $k, run $r/$RUNS: exit $rc" >&2
        [ -f "$d/result.json" ] && OUTS+=("$d")
    done
done
[ ${#OUTS[@]} -gt 0 ] || { echo "compare.sh: no run produced a result" >&2; exit 4; }
python3 "$HERE/report.py" compare --svg "$HERE/out/$NAME$CONF-compare.svg" "${OUTS[@]}" |
    tee "$HERE/out/$NAME$CONF-compare.md"
for d in "${OUTS[@]}"; do
    [ -f "$d/plot.svg" ] && echo "picture: $d/plot.svg"
done
echo "picture: $HERE/out/$NAME$CONF-compare.svg"
