#!/usr/bin/env bash
# Installs lmkd-rs on a userdebug/eng device or emulator over adb, replacing
# the stock /system/bin/lmkd and /system/etc/init/lmkd.rc, then restarts the
# service and checks that it runs.
#
#   cross/deploy.sh [--reboot] [TARGET]
#   cross/deploy.sh --restore
#
# TARGET is a cross/build.sh target; by default the one matching the
# device's ABI (ro.product.cpu.abi). The stock files are saved once to
# /data/local/tmp/lmkd-rs/stock/ so --restore can put them back.
#
# init reads rc files only at boot: when lmkd.rc changed, the new triggers
# take effect after a reboot (--reboot does it for you).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=adb-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/adb-common.sh"

reboot=0 restore=0 target=
for arg in "$@"; do
    case $arg in
        --reboot) reboot=1 ;;
        --restore) restore=1 ;;
        -h | --help)
            awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        -*) die "unknown option $arg (see --help)" ;;
        *)
            [[ -z $target ]] || die "only one TARGET please"
            target=$arg
            ;;
    esac
done

need_device
need_root

# /system is read-only and, on verified-boot builds, protected by dm-verity.
remount() {
    local out
    if ! out=$(adb remount 2>&1) || grep -qiE 'fail|error|not permitted|reboot' <<<"$out"; then
        echo "$out" >&2
        die "adb remount failed. Once per device run: adb disable-verity && adb reboot && adb root && adb remount (some builds ask for a second reboot), then run this script again"
    fi
}

# Copies a host file to a /system path through a temporary name and a
# rename: writing over the running binary in place fails with ETXTBSY, a
# rename leaves the running process its old inode.
install_file() {
    local src=$1 dst=$2 mode=$3
    adb push "$src" "$dst.lmkd-rs-new" >/dev/null
    adb shell "chown root:shell '$dst.lmkd-rs-new' && chmod $mode '$dst.lmkd-rs-new' && mv -f '$dst.lmkd-rs-new' '$dst' && restorecon '$dst'" ||
        die "could not install $dst"
}

restart_and_verify() {
    note "restarting the lmkd service"
    adb shell stop lmkd
    adb shell start lmkd
    local pid=''
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pid=$(adb shell pidof lmkd | tr -d '\r' || true)
        [[ -n $pid ]] && break
        sleep 1
    done
    if [[ -z $pid ]]; then
        adb logcat -d -s lmkd lowmemorykiller init | tail -n 30 >&2 || true
        die "lmkd is not running 10 s after 'start lmkd' (log above; SELinux denials: adb logcat -d | grep 'avc.*lmkd')"
    fi
    # A crash loop shows up as a changing pid; a critical service that keeps
    # crashing would soon reboot the device.
    sleep 3
    local again
    again=$(adb shell pidof lmkd | tr -d '\r' || true)
    [[ $again == "$pid" ]] || die "lmkd restarted (pid $pid, now '${again:-none}'): it is crashing; see adb logcat -s lmkd"
    note "lmkd runs as pid $pid: $(adb shell readlink "/proc/$pid/exe" | tr -d '\r')"
    note "recent log (adb logcat -s lmkd lowmemorykiller):"
    adb logcat -d -s lmkd lowmemorykiller | tail -n 20 || true
}

if [[ $restore -eq 1 ]]; then
    adb shell "[ -f $device_dir/stock/lmkd ]" || die "no saved stock lmkd in $device_dir/stock on this device"
    remount
    adb shell "cp $device_dir/stock/lmkd /system/bin/lmkd.lmkd-rs-new && mv -f /system/bin/lmkd.lmkd-rs-new /system/bin/lmkd && restorecon /system/bin/lmkd"
    adb shell "cp $device_dir/stock/lmkd.rc /system/etc/init/lmkd.rc && restorecon /system/etc/init/lmkd.rc"
    note "stock lmkd restored; rebooting so init reads the stock lmkd.rc"
    adb reboot
    exit 0
fi

[[ -n $target ]] || target=$(device_target)
bin=$(built_binary "$target" lmkd)
rc=$repo/init/lmkd.rc
[[ -f $rc ]] || die "$rc missing"

# Refuse a binary the device cannot execute (an arm64 build on an x86_64
# emulator would only fail later, as a crash-looping critical service).
abilist=$(adb shell getprop ro.product.cpu.abilist | tr -d '\r')
case $(triple_of "$target") in
    aarch64-*) want=arm64-v8a ;;
    x86_64-*) want=x86_64 ;;
    armv7-*) want=armeabi-v7a ;;
esac
[[ ,$abilist, == *",$want,"* ]] || die "device ABIs are '$abilist'; a $target build needs $want"

note "installing $bin and $rc"
remount
adb shell "mkdir -p $device_dir/stock && { [ -f $device_dir/stock/lmkd ] || { cp /system/bin/lmkd $device_dir/stock/lmkd && cp /system/etc/init/lmkd.rc $device_dir/stock/lmkd.rc; }; }" ||
    die "could not save the stock lmkd to $device_dir/stock"

rc_changed=1
if [[ $(adb shell cat /system/etc/init/lmkd.rc 2>/dev/null | tr -d '\r') == "$(cat "$rc")" ]]; then
    rc_changed=0
fi
install_file "$bin" /system/bin/lmkd 0755
install_file "$rc" /system/etc/init/lmkd.rc 0644

if [[ $reboot -eq 1 ]]; then
    note "rebooting so init reads the new lmkd.rc"
    adb reboot
    adb wait-for-device
    until [[ $(adb shell getprop sys.boot_completed | tr -d '\r') == 1 ]]; do sleep 2; done
    need_root
    pid=$(adb shell pidof lmkd | tr -d '\r' || true)
    [[ -n $pid ]] || die "lmkd is not running after reboot; see adb logcat -s lmkd init"
    note "lmkd runs as pid $pid"
    adb logcat -d -s lmkd lowmemorykiller | tail -n 20 || true
    exit 0
fi

restart_and_verify
if [[ $rc_changed -eq 1 ]]; then
    note "lmkd.rc changed: init keeps the old service definition and triggers until a reboot (cross/deploy.sh --reboot, or adb reboot)"
fi
