#!/usr/bin/env bash
# Runs one lmkd-workload scenario on a device or emulator against the lmkd
# behind /dev/socket/lmkd, and pulls the results back.
#
#   cross/run-scenario-adb.sh SCENARIO [TARGET]
#
# SCENARIO is a name from tests/vm/scenarios/ (with or without .toml) or a
# path to a scenario file. TARGET is a cross/build.sh target; by default the
# one matching the device's ABI. Results land in
# ${RESULTS_DIR:-results/adb}/<scenario>-<time>.json, with the lmkd log of
# the run next to it.
#
# The workload connects to lmkd's socket (0660 system:system), so adbd must
# run as root. The workload's apps really allocate memory: the device will
# kill things, possibly including your foreground app.
#
# Exit status is the workload's: 0 pass, 1 criteria failed, 2 error, 3 deadline.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=adb-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/adb-common.sh"

help_if_asked "${1:-}"
[[ $# -le 2 ]] || die "usage: cross/run-scenario-adb.sh SCENARIO [TARGET]"

scenario=$1
if [[ ! -f $scenario ]]; then
    scenario=$repo/tests/vm/scenarios/${1%.toml}.toml
    if [[ ! -f $scenario ]]; then
        avail=$(find "$repo/tests/vm/scenarios" -maxdepth 1 -name '*.toml' -printf '%f ' 2>/dev/null || true)
        die "no scenario '$1' (looked for $scenario); available: ${avail:-none}"
    fi
fi
name=$(basename "$scenario" .toml)

need_device
target=${2:-}
[[ -n $target ]] || target=$(device_target)
workload=$(built_binary "$target" lmkd-workload)
need_root
adb shell pidof lmkd >/dev/null || die "lmkd is not running on the device (adb shell start lmkd, or cross/deploy.sh)"

remote_sc=$device_dir/scenarios/$name.toml
remote_out=$device_dir/results/$name.json
adb shell "mkdir -p $device_dir/scenarios $device_dir/results && rm -f $remote_out"
adb push "$workload" "$device_dir/lmkd-workload" >/dev/null
adb shell chmod 0755 "$device_dir/lmkd-workload"
adb push "$scenario" "$remote_sc" >/dev/null

args=(--socket /dev/socket/lmkd --scenario "$remote_sc" --out "$remote_out" --label "lmkd-rs-adb")
# Scenarios that read files through the page cache name a data_file; a
# host path such as /dev/vda means nothing on the device, so give them a
# file under /data, as large as the furthest file_offset_mb + file_mb of
# any app (LMKD_DATA_MB overrides), created once and reused.
if grep -q '^[[:space:]]*data_file[[:space:]]*=' "$scenario"; then
    data=$device_dir/data.bin
    need=$(awk -F'=' '
        function flush() { if (size + off > max) max = size + off; size = 0; off = 0 }
        /^[[:space:]]*\[/ { flush() }
        $1 ~ /^[[:space:]]*file_mb[[:space:]]*$/ { size = $2 + 0 }
        $1 ~ /^[[:space:]]*file_offset_mb[[:space:]]*$/ { off = $2 + 0 }
        END { flush(); print max + 0 }' "$scenario")
    mb=${LMKD_DATA_MB:-$need}
    [[ $mb =~ ^[0-9]+$ ]] || die "LMKD_DATA_MB must be a number of MiB"
    have=$(adb shell "stat -c %s $data 2>/dev/null || echo 0" | tr -d '\r')
    if [[ $have -lt $((mb << 20)) ]]; then
        note "creating a ${mb} MiB data file $data (once)"
        adb shell "dd if=/dev/zero of=$data bs=1048576 count=$mb 2>/dev/null" || die "could not create $data"
    fi
    args+=(--data-file "$data")
fi

stamp=$(date +%Y%m%d-%H%M%S)
out_dir=${RESULTS_DIR:-$repo/results/adb}
mkdir -p "$out_dir"
adb logcat -c || true
note "running $name on $(adb shell getprop ro.product.model | tr -d '\r') ($target)"
set +e
adb shell "$device_dir/lmkd-workload" "${args[@]}"
status=$?
set -e

adb pull "$remote_out" "$out_dir/$name-$stamp.json" >/dev/null 2>&1 ||
    note "no result file was written ($remote_out)"
adb logcat -d -s lmkd lowmemorykiller >"$out_dir/$name-$stamp.log" || true
kills=$(grep -c "Kill '" "$out_dir/$name-$stamp.log" || true)
note "results: $out_dir/$name-$stamp.json, log: $out_dir/$name-$stamp.log ($kills kill lines)"
case $status in
    0) note "PASS" ;;
    1) note "FAIL: the scenario's criteria were not met" ;;
    3) note "FAIL: the run exceeded its deadline" ;;
    *) note "ERROR: lmkd-workload exited with $status" ;;
esac
exit "$status"
