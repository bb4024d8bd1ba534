#!/usr/bin/env bash
# Runs lmkctl on the attached device or emulator, pushing it first when the
# device's copy is missing or differs from the local build.
#
#   cross/lmkctl.sh [--target TARGET] LMKCTL-ARGS...
#
# e.g. cross/lmkctl.sh status
#      cross/lmkctl.sh kills --follow
#      cross/lmkctl.sh --json stats
#      cross/lmkctl.sh config set thrashing_limit=50    (needs adb root)
#
# TARGET is a cross/build.sh target (default: the device's ABI); build it
# first with cross/build.sh TARGET. lmkctl runs as the shell user, which may
# read everything; changes need root (the script runs `adb root` for
# `config set` and `reload`). Exit codes are lmkctl's (see lmkctl --help).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=adb-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/adb-common.sh"

target=
if [[ ${1:-} == --target ]]; then
    [[ $# -ge 2 ]] || die "--target needs a value"
    target=$2
    shift 2
fi
help_if_asked "${1:-}"
need_device
[[ -n $target ]] || target=$(device_target)
[[ " $* " == *" set "* || " $* " == *" reload "* ]] && need_root

# Push when the device copy differs (by checksum).
lmkctl_on_device "$target"
# Arguments go through a device shell: quote each one.
args=()
for a in "$@"; do
    args+=("'${a//\'/\'\\\'\'}'")
done
# -t: a terminal, so ^C ends `kills --follow` on the device too.
tty=()
[[ -t 1 ]] && tty=(-t)
exec adb shell "${tty[@]}" "$device_dir/lmkctl ${args[*]}"
