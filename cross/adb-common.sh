# Shared helpers for the adb scripts in cross/ (sourced, not run).
# shellcheck shell=bash

cross_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$cross_dir")
# Where lmkd-rs keeps its files on the device; /data/local/tmp is writable
# by the shell user on every build type. (Used by the sourcing scripts.)
# shellcheck disable=SC2034
device_dir=/data/local/tmp/lmkd-rs

die() {
    echo "${0##*/}: $*" >&2
    exit 1
}

note() {
    echo "${0##*/}: $*"
}

# The running script's header comment is its help: `-h`/`--help` prints it
# and exits 0, no argument at all prints it and exits 2.
help_if_asked() {
    case ${1-} in
        -h | --help | '')
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            [[ -n ${1-} ]] && exit 0
            exit 2
            ;;
    esac
}

# Checks that adb exists and exactly one device is ready; honours
# ANDROID_SERIAL the way adb itself does.
need_device() {
    command -v adb >/dev/null ||
        die "adb not found in PATH: install Android SDK platform-tools (Debian: apt-get install adb)"
    local lines ready
    lines=$(adb devices | tail -n +2 | grep -v '^[[:space:]]*$' || true)
    if [[ -n ${ANDROID_SERIAL:-} ]]; then
        lines=$(printf '%s\n' "$lines" | awk -v s="$ANDROID_SERIAL" '$1 == s')
        [[ -n $lines ]] || die "ANDROID_SERIAL=$ANDROID_SERIAL is not among 'adb devices'"
    fi
    ready=$(printf '%s\n' "$lines" | awk '$2 == "device"' | wc -l)
    if [[ $ready -eq 0 ]]; then
        if printf '%s\n' "$lines" | grep -q unauthorized; then
            die "device is unauthorized: accept the USB debugging prompt on the device"
        fi
        die "no device or emulator ready ('adb devices' lists none in state 'device'); start an emulator or plug in a device with USB debugging on"
    fi
    if [[ $ready -gt 1 ]]; then
        die "$ready devices attached; choose one with ANDROID_SERIAL=<serial> (see 'adb devices')"
    fi
}

# adbd must run as root to write /system and to reach /dev/socket/lmkd
# (0660 system:system). Only userdebug and eng builds allow it.
need_root() {
    if [[ $(adb shell id -u | tr -d '\r') != 0 ]]; then
        note "restarting adbd as root"
        adb root >/dev/null 2>&1 || true
        adb wait-for-device
        # adbd restarts asynchronously; give it a moment before asking again.
        for _ in 1 2 3 4 5; do
            [[ $(adb shell id -u 2>/dev/null | tr -d '\r') == 0 ]] && return 0
            sleep 1
        done
        die "adb root did not give a root shell: this needs a userdebug or eng build (or an emulator image without Google Play)"
    fi
}

# The cross/build.sh target that fits the device's primary ABI.
device_target() {
    local abi
    abi=$(adb shell getprop ro.product.cpu.abi | tr -d '\r')
    case $abi in
        arm64-v8a) echo aarch64-linux-android ;;
        x86_64) echo x86_64-linux-android ;;
        armeabi-v7a) echo armv7-linux-androideabi ;;
        *) die "device ABI '$abi' has no lmkd-rs target; pass TARGET explicitly" ;;
    esac
}

# The Rust triple (and so the target/<triple>/release directory) of a
# cross/build.sh target name.
triple_of() {
    case $1 in
        aarch64-linux-android | x86_64-linux-android | armv7-linux-androideabi) echo "$1" ;;
        musl-aarch64) echo aarch64-unknown-linux-musl ;;
        musl-x86_64) echo x86_64-unknown-linux-musl ;;
        *) die "unknown target '$1' (one of: aarch64-linux-android x86_64-linux-android armv7-linux-androideabi musl-aarch64 musl-x86_64)" ;;
    esac
}

# Path of a built binary, or a clear error naming the build command.
built_binary() {
    local target=$1 name=$2 path
    path=${CARGO_TARGET_DIR:-$repo/target}/$(triple_of "$target")/release/$name
    [[ -x $path ]] || die "$path not found; build it first with: cross/build.sh $target"
    echo "$path"
}

# Makes sure $device_dir/lmkctl is the local build for TARGET.
lmkctl_on_device() {
    local bin local_sum remote_sum
    bin=$(built_binary "$1" lmkctl)
    local_sum=$(sha256sum "$bin" | cut -d' ' -f1)
    remote_sum=$(adb shell "sha256sum $device_dir/lmkctl 2>/dev/null" | tr -d '\r' | cut -d' ' -f1 || true)
    if [[ $local_sum != "$remote_sum" ]]; then
        adb shell mkdir -p "$device_dir"
        adb push "$bin" "$device_dir/lmkctl" >/dev/null || die "could not push lmkctl to $device_dir"
        adb shell chmod 0755 "$device_dir/lmkctl"
    fi
}
