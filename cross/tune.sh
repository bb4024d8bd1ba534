#!/usr/bin/env bash
# Changes one lmkd tunable on a running device and makes lmkd apply it.
#
#   cross/tune.sh NAME VALUE      e.g. cross/tune.sh psi_partial_stall_ms 120
#   cross/tune.sh --list          the names lmkd reads
#
# Sets persist.device_config.lmkd_native.NAME (the highest-priority source,
# kept across reboots), then lmkd.reinit=1. Each of those makes init run
# `lmkd --reinit`, which asks the daemon to re-read its configuration; a
# value the daemon refuses leaves the old configuration in force and is
# named in the log shown at the end.
#
# Before and after, lmkctl (pushed to the device by cross/lmkctl.sh's
# helper; build it with cross/build.sh) shows the value the running daemon
# uses and where it came from, so "did it apply?" is answered by the
# daemon itself rather than by the property. LMKD_TARGET overrides the
# build target (default: the device's ABI).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=adb-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/adb-common.sh"

# The tunable names are those init/lmkd.rc has a trigger for, so this script
# and the rc file cannot disagree (tests/rc_file.rs ties both to the config).
names=$(sed -n 's/^on property:persist\.device_config\.lmkd_native\.\([a-z_]*\)=\*$/\1/p' "$repo/init/lmkd.rc")
[[ -n $names ]] || die "no persist.device_config.lmkd_native.* triggers found in $repo/init/lmkd.rc"

case ${1:-} in
    --list)
        echo "$names"
        exit 0
        ;;
esac
help_if_asked "${1:-}"
[[ $# -eq 2 ]] || die "usage: cross/tune.sh NAME VALUE (or --list)"
name=$1 value=$2
grep -qx -- "$name" <<<"$names" || die "'$name' is not an lmkd tunable; known names: $(echo "$names" | tr '\n' ' ')"
# Values go through `adb shell`, i.e. a device shell: keep them to plain words.
[[ $value =~ ^[A-Za-z0-9_.+-]+$ ]] || die "value '$value' must be a number, true/false or a plain word"

prop=persist.device_config.lmkd_native.$name
need_device
lmkctl_on_device "${LMKD_TARGET:-$(device_target)}"
# The value in force according to the daemon (KEY VALUE SOURCE).
in_force() {
    adb shell "$device_dir/lmkctl config get $name" | tr -d '\r' | tail -n +2 ||
        echo "(lmkctl could not ask the daemon: is lmkd-rs deployed? cross/deploy.sh)"
}
note "before: $(in_force)"
before=$(adb shell getprop "$prop" | tr -d '\r')
if ! adb shell setprop "$prop" "$value" || [[ $(adb shell getprop "$prop" | tr -d '\r') != "$value" ]]; then
    # The shell user may not be allowed to set device_config properties.
    need_root
    adb shell setprop "$prop" "$value"
    [[ $(adb shell getprop "$prop" | tr -d '\r') == "$value" ]] || die "could not set $prop (SELinux? see adb logcat -d | grep avc)"
fi
# The property trigger above already fires when the value changes; this one
# also covers setting the same value again, after a reinit that failed.
adb shell setprop lmkd.reinit 1
sleep 1
note "$prop: '${before}' -> '$(adb shell getprop "$prop" | tr -d '\r')'"
note "after:  $(in_force)"
note "recent lmkd log:"
adb logcat -d -s lmkd lowmemorykiller | tail -n 8 || true
