#!/usr/bin/env bash
# Runs one scenario in a small qemu VM under one killer.
#
#   tests/vm/run.sh SCENARIO KILLER   KILLER = lmkd-rs[@VARIANT] | aosp | earlyoom | none
#
# lmkd-rs@VARIANT runs lmkd-rs with tests/vm/variants/VARIANT.toml as its
# config and labels its results so: one compare run can set a policy choice
# against the default and lmkd side by side.
# SCENARIO is a name from tests/vm/scenarios/ or a path to a scenario file.
# Results go to tests/vm/out/<scenario>-<killer>[-<RUN_TAG>]/.
# `aosp` runs an AOSP lmkd built for Linux: AOSP_LMKD=PATH (a static x86_64
# binary) started through its socket launcher (AOSP_LMKD_LAUNCH, default:
# lmkd_launch beside it). Optional: a reference instrument, not needed by
# anything else in the repo.
# Environment: RAM (MiB, default 512; MEM=1024M is the same), ZRAM_MB (256), DISK_MB (1536),
# VM_TIMEOUT (s; the scenario's duration + 120, at least 300), CYCLES (soak scenarios: pressure cycles), SAMPLE_MS (200), STRACE (1: count the daemon's mmap calls), STALL_TRACE (0; 1: trace every task's memory stall), RECORD (1: lmkctl records lmkd-rs's evaluations), KERNEL (/boot/vmlinuz-*), LMKD_CONFIG
# (a TOML for lmkd; default tests/vm/scenarios/<scenario>.lmkd.toml if present),
# SKIP_BUILD=1 (reuse binaries from the last build), CARGO_TARGET_DIR.
# Exit status: the driver's (0 pass, 1 criteria failed, 2 error/daemon died,
# 3 driver deadline), 4 when the VM produced no result, 64 on bad usage.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

usage() {
    echo "usage: $0 SCENARIO lmkd-rs[@VARIANT]|aosp|earlyoom|none" >&2
    exit 64
}
[ $# -eq 2 ] || usage
SCEN_ARG=$1
KILLER=$2
# KIND is what runs; KILLER (with any @VARIANT) names the results.
KIND=${KILLER%%@*}
case "$KILLER" in lmkd-rs | lmkd-rs@* | aosp | earlyoom | none) ;; *) usage ;; esac
if [ "$KIND" != "$KILLER" ]; then
    VARIANT=${KILLER#*@}
    LMKD_CONFIG=$HERE/variants/$VARIANT.toml
    [ -f "$LMKD_CONFIG" ] || { echo "run.sh: no variant '$VARIANT' ($LMKD_CONFIG missing; see tests/vm/variants/)" >&2; exit 64; }
fi

if [ -f "$SCEN_ARG" ]; then
    SCEN_FILE=$(cd "$(dirname "$SCEN_ARG")" && pwd)/$(basename "$SCEN_ARG")
else
    SCEN_FILE=$HERE/scenarios/$SCEN_ARG.toml
fi
[ -f "$SCEN_FILE" ] || { echo "run.sh: no scenario $SCEN_ARG ($SCEN_FILE)" >&2; exit 64; }
SCEN=$(basename "$SCEN_FILE" .toml)

MEM=${MEM:-}
RAM=${RAM:-${MEM:+${MEM%[Mm]}}}
RAM=${RAM:-512}
ZRAM_MB=${ZRAM_MB:-256}
DISK_MB=${DISK_MB:-1536}
# CYCLES=N runs a soak scenario for N pressure cycles (the driver's
# --cycles; its time budget grows to match).
CYCLES=${CYCLES:-}
# Default VM timeout: the scenario's duration (scaled by CYCLES) plus boot
# and hand-over time, at least 300 s.
scen_num() { awk -F= -v k="$1" '$1 ~ "^"k" *$" { gsub(/[ _]/, "", $2); print $2 + 0; exit }' "$SCEN_FILE"; }
DUR_S=$(($(scen_num duration_ms) / 1000))
if [ -n "$CYCLES" ]; then
    END_DEATHS=$(scen_num end_after_deaths)
    DUR_S=$((DUR_S * CYCLES / (${END_DEATHS:-0} > 0 ? END_DEATHS : 1)))
fi
VM_TIMEOUT=${VM_TIMEOUT:-$((DUR_S + 120 > 300 ? DUR_S + 120 : 300))}
SAMPLE_MS=${SAMPLE_MS:-200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target-vm}
BIN=$CARGO_TARGET_DIR/vm-bin

need() {
    command -v "$1" > /dev/null || { echo "run.sh: $1 not found (apt-get install -y $2)" >&2; exit 4; }
}
need qemu-system-x86_64 qemu-system-x86
need cpio cpio
[ -x /bin/busybox ] || { echo "run.sh: /bin/busybox not found (apt-get install -y busybox-static)" >&2; exit 4; }

KERNEL=${KERNEL:-$(ls /boot/vmlinuz-* 2> /dev/null | sort -V | tail -n 1 || true)}
[ -n "$KERNEL" ] && [ -r "$KERNEL" ] || { echo "run.sh: no readable kernel in /boot (apt-get install -y linux-image-amd64)" >&2; exit 4; }
KVER=${KERNEL##*/vmlinuz-}
MODDIR=/lib/modules/$KVER

OUT=$ROOT/tests/vm/out/$SCEN-$KILLER${RUN_TAG:+-$RUN_TAG}
WORK=$(mktemp -d /tmp/lmkd-vm.XXXXXX)
QEMU_PID=""
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2> /dev/null; then
        kill "$QEMU_PID" 2> /dev/null || true
        wait "$QEMU_PID" 2> /dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- binaries -------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    if [ "$KIND" = lmkd-rs ]; then "$HERE/build.sh" lmkd-workload lmkd lmkctl; else "$HERE/build.sh" lmkd-workload; fi
fi
[ -x "$BIN/lmkd-workload" ] || { echo "run.sh: $BIN/lmkd-workload missing" >&2; exit 4; }
[ "$KIND" != lmkd-rs ] || [ -x "$BIN/lmkd" ] || { echo "run.sh: $BIN/lmkd missing" >&2; exit 4; }
if [ "$KIND" = aosp ]; then
    # The reference peer: an AOSP lmkd built for Linux, when one is at hand.
    # Default: peers/lmkd.static in a "shared" directory beside the checkout
    # (for a git worktree, beside the main checkout).
    DEFAULT_AOSP=""
    MAIN_ROOT=$(cd "$ROOT" && cd "$(git rev-parse --git-common-dir 2> /dev/null || echo .git)/.." 2> /dev/null && pwd || echo "$ROOT")
    for c in "$ROOT/../shared/peers/lmkd.static" "$MAIN_ROOT/../shared/peers/lmkd.static"; do
        if [ -e "$c" ]; then DEFAULT_AOSP=$c; break; fi
    done
    AOSP_LMKD=${AOSP_LMKD:-$DEFAULT_AOSP}
    [ -n "$AOSP_LMKD" ] && [ -x "$AOSP_LMKD" ] || {
        if [ -n "$AOSP_LMKD" ]; then
            echo "run.sh: killer aosp: AOSP_LMKD=$AOSP_LMKD is not an executable file" >&2
        else
            echo "run.sh: killer aosp needs an AOSP lmkd built for Linux (static x86_64): set AOSP_LMKD=PATH" >&2
        fi
        exit 4
    }
    AOSP_LMKD_LAUNCH=${AOSP_LMKD_LAUNCH:-$(dirname "$AOSP_LMKD")/lmkd_launch}
    [ -x "$AOSP_LMKD_LAUNCH" ] || {
        echo "run.sh: killer aosp needs the socket launcher: set AOSP_LMKD_LAUNCH=PATH ($AOSP_LMKD_LAUNCH not found)" >&2
        exit 4
    }
fi

# --- initramfs ------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"/{bin,sbin,usr/bin,etc,lib/modules,proc,sys,dev,run,tmp,out}
cp /bin/busybox "$R/bin/busybox"
ln -s busybox "$R/bin/sh"
install -m 755 "$HERE/init.sh" "$R/init"
cp "$BIN/lmkd-workload" "$R/usr/bin/"
[ "$KIND" = lmkd-rs ] && cp "$BIN/lmkd" "$R/usr/bin/"
# lmkctl records lmkd-rs's evaluations into out/lmkd.lmkrec (for replays).
# RECORD=0 leaves it out: the daemon then runs as on a phone, with no
# control client (its footprint without the recorder's JSON stream).
[ "$KIND" = lmkd-rs ] && [ "${RECORD:-1}" != 0 ] && [ -x "$BIN/lmkctl" ] && cp "$BIN/lmkctl" "$R/usr/bin/"
if [ "$KIND" = aosp ]; then
    mkdir -p "$R/opt/aosp"
    cp "$AOSP_LMKD" "$R/opt/aosp/lmkd"
    cp "$AOSP_LMKD_LAUNCH" "$R/usr/bin/lmkd_launch"
fi
cp "$SCEN_FILE" "$R/etc/scenario.toml"
# STALL_TRACE=1: whose memory stall PSI counted (init.sh, report.py).
[ "${STALL_TRACE:-0}" = 1 ] && touch "$R/etc/stall-trace"
LMKD_CONFIG=${LMKD_CONFIG:-$HERE/scenarios/$SCEN.lmkd.toml}
if [ "$KIND" = lmkd-rs ] && [ -f "$LMKD_CONFIG" ]; then
    cp "$LMKD_CONFIG" "$R/etc/lmkd.toml"
fi
# Android marks devices with 1 GiB of RAM or less as low-RAM
# (ro.config.low_ram), which selects lmkd's low-RAM defaults; the guest is
# such a device. LOW_RAM=0 or 1 overrides. Both daemons get the same file;
# boot is complete (AOSP lmkd defers some set-up until it is).
LOW_RAM=${LOW_RAM:-$([ "$RAM" -le 1024 ] && echo 1 || echo 0)}
echo "sys.boot_completed=1" > "$R/etc/lmkd.props"
if [ "$LOW_RAM" = 1 ]; then
    echo "ro.config.low_ram=true" >> "$R/etc/lmkd.props"
fi
# Low RAM turns per-app memcg on, and with it lmkd's launcher rule (adj
# 600-699 ranks as 200). The guest has no /dev/memcg/apps and the scenarios
# put ordinary apps at 600, so both daemons run without it: kills in adj
# order then means what the scenarios say. PER_APP_MEMCG=1 keeps it.
if [ "${PER_APP_MEMCG:-0}" != 1 ]; then
    echo "ro.config.per_app_memcg=false" >> "$R/etc/lmkd.props"
fi

# Copies a dynamically linked program with the libraries ldd names.
copy_with_libs() {
    local prog=$1 lib
    cp "$prog" "$R/usr/bin/"
    for lib in $(ldd "$prog" | grep -oE '/[^ ]+' || true); do
        mkdir -p "$R$(dirname "$lib")"
        cp -L "$lib" "$R$lib"
    done
}
if [ "$KIND" = earlyoom ]; then
    command -v earlyoom > /dev/null || { echo "run.sh: earlyoom not found (apt-get install -y earlyoom)" >&2; exit 4; }
    copy_with_libs "$(command -v earlyoom)"
fi
# strace stops the daemon at every syscall it makes (ptrace), which slows
# its reactions a little: STRACE=0 leaves it out for timing-only runs.
if [ "${STRACE:-1}" = 1 ] && [ "$KIND" != none ] && command -v strace > /dev/null; then
    copy_with_libs "$(command -v strace)"
fi

# Kernel modules with their dependencies, deps first; compressed ones are
# unpacked here because busybox insmod may not read every format.
declare -A SEEN=()
: > "$R/lib/modules/order"
add_module() {
    local name=$1 line rel deps d base
    line=$(grep -E "(^|/)${name}\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" | head -n 1 || true)
    if [ -z "$line" ]; then
        # Built into the kernel or absent: nothing to load.
        return 0
    fi
    rel=${line%%:*}
    [ -n "${SEEN[$rel]:-}" ] && return 0
    SEEN[$rel]=1
    deps=${line#*:}
    for d in $deps; do
        base=$(basename "$d")
        add_module "${base%%.ko*}"
    done
    base=$(basename "$rel")
    base=${base%%.ko*}.ko
    case "$rel" in
    *.ko.xz) xz -dc "$MODDIR/$rel" > "$R/lib/modules/$base" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$rel" > "$R/lib/modules/$base" ;;
    *.ko.gz) gzip -dc "$MODDIR/$rel" > "$R/lib/modules/$base" ;;
    *) cp "$MODDIR/$rel" "$R/lib/modules/$base" ;;
    esac
    echo "$base" >> "$R/lib/modules/order"
}
for m in zsmalloc lz4_compress lz4 zram virtio_ring virtio virtio_pci virtio_blk; do
    add_module "$m"
done

cat > "$R/etc/vm.env" << ENV
KILLER=$KIND
LABEL=$KILLER
SCENARIO=$SCEN
ZRAM_MB=$ZRAM_MB
SAMPLE_MS=$SAMPLE_MS
LOW_RAM=$LOW_RAM
CYCLES=$CYCLES
ENV

(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"
# A sparse data disk: file-backed working sets map it (reads of holes cost
# no host disk space, but fill the guest's page cache like real data).
truncate -s "${DISK_MB}M" "$WORK/data.img"

# --- boot -----------------------------------------------------------------
rm -rf "$OUT"
mkdir -p "$OUT"
echo "run.sh: booting $KVER, ${RAM} MiB RAM (low-RAM $LOW_RAM), zram ${ZRAM_MB} MiB: $SCEN under $KILLER (timeout ${VM_TIMEOUT}s)" >&2
start=$(date +%s)
timeout "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "$RAM" -smp 2 \
    -kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 zswap.enabled=0 rdinit=/init" \
    -drive "file=$WORK/data.img,format=raw,if=virtio,readonly=on" \
    -display none -monitor none -serial "file:$OUT/console.log" -nic none -no-reboot &
QEMU_PID=$!
qrc=0
wait "$QEMU_PID" || qrc=$?
QEMU_PID=""
echo "run.sh: VM finished in $(($(date +%s) - start)) s (qemu status $qrc)" >&2

# --- results --------------------------------------------------------------
tr -d '\r' < "$OUT/console.log" | awk -v dir="$OUT" '
    /^===BEGIN .*===$/ { name = $2; sub(/===$/, "", name); f = dir "/" name; printf "" > f; next }
    /^===END .*===$/ { close(f); f = ""; next }
    f != "" { print >> f }
'
for b in "$OUT"/*.lmkrec.b64; do
    [ -f "$b" ] || continue
    base64 -d "$b" > "${b%.b64}" && rm -f "$b" || echo "run.sh: $b does not decode" >&2
done
if [ ! -f "$OUT/result.json" ]; then
    echo "run.sh: no result from the VM (see $OUT/console.log)" >&2
    tail -n 20 "$OUT/console.log" >&2 || true
    exit 4
fi
cat "$OUT/driver.txt" || true
rrc=0
python3 "$HERE/report.py" summarize "$OUT" || rrc=$?
drc=$(cat "$OUT/driver.rc" 2> /dev/null || echo 4)
# report.py exits 1 when a check it owns (a soak's steady daemon) failed.
if [ "$rrc" = 1 ] && [ "$drc" = 0 ]; then drc=1; fi
[ "$rrc" = 0 ] || [ "$rrc" = 1 ] || echo "run.sh: report.py failed" >&2
exit "$drc"
