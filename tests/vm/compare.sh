#!/usr/bin/env bash
# Runs one scenario under lmkd-rs, earlyoom and no killer, one VM after the
# other, then prints a side-by-side table (also saved as
# tests/vm/out/<scenario>-compare.md) and leaves one plot.svg per run.
#
#   tests/vm/compare.sh SCENARIO [KILLER...]
#
# Environment is passed through to run.sh (RAM, ZRAM_MB, VM_TIMEOUT, ...).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 SCENARIO [lmkd-rs|earlyoom|none ...]" >&2; exit 64; }
SCEN=$1
shift
KILLERS=("$@")
[ ${#KILLERS[@]} -gt 0 ] || KILLERS=(lmkd-rs earlyoom none)
NAME=$(basename "$SCEN" .toml)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if [[ " ${KILLERS[*]} " == *" lmkd-rs "* ]]; then "$HERE/build.sh"; else "$HERE/build.sh" lmkd-workload; fi
fi
OUTS=()
for k in "${KILLERS[@]}"; do
    rc=0
    SKIP_BUILD=1 "$HERE/run.sh" "$SCEN" "$k" || rc=$?
    echo "compare.sh: $NAME under $k: exit $rc" >&2
    OUTS+=("$HERE/out/$NAME-$k")
done
python3 "$HERE/report.py" compare "${OUTS[@]}" | tee "$HERE/out/$NAME-compare.md"
for d in "${OUTS[@]}"; do
    [ -f "$d/plot.svg" ] && echo "picture: $d/plot.svg"
done
