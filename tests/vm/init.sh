#!/bin/sh
# /init of the bench VM (busybox sh, PID 1). Sets up memory like a small
# Android device (zram swap, overcommit), starts one killer, records memory
# and PSI while the workload driver runs a scenario, then prints every result
# file between markers on the serial console and powers off.
# Parameters come from /etc/vm.env, written by tests/vm/run.sh.

/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /sys/fs/cgroup /run /tmp /out
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
# Keep kernel chatter (OOM reports) off the console: it would interleave
# with the result blocks. It is still collected from dmesg at the end.
echo 1 > /proc/sys/kernel/printk

. /etc/vm.env

log() {
    echo "vm: $*"
    echo "$(cut -d' ' -f1 /proc/uptime) $*" >> /out/guest.log
}

finish() {
    sync
    for f in /out/*; do
        case "$f" in
        *.lmkrec)
            # Binary, and needed whole: base64, decoded by run.sh.
            echo "===BEGIN $(basename "$f").b64==="
            base64 "$f"
            echo "===END $(basename "$f").b64==="
            ;;
        *)
            echo "===BEGIN $(basename "$f")==="
            tail -c 300000 "$f"
            echo "===END $(basename "$f")==="
            ;;
        esac
    done
    echo "===VM DONE==="
    poweroff -f
}

log "kernel $(uname -r), $(grep MemTotal /proc/meminfo | tr -s ' '), killer $KILLER, scenario $SCENARIO"

while read -r m; do
    insmod "/lib/modules/$m" || log "insmod $m failed"
done < /lib/modules/order

echo 1 > /proc/sys/vm/overcommit_memory
# As init/lmkd.rc sets it on a device, for every killer: compaction leaves
# locked pages in place, so a kill path touching one never waits for a move.
echo 0 > /proc/sys/vm/compact_unevictable_allowed || log "compact_unevictable_allowed not settable"

if [ -e /sys/block/zram0 ]; then
    echo lz4 > /sys/block/zram0/comp_algorithm 2>/dev/null || log "zram: lz4 refused, using $(cat /sys/block/zram0/comp_algorithm)"
    echo "${ZRAM_MB}M" > /sys/block/zram0/disksize
    mkswap /dev/zram0 > /dev/null && swapon /dev/zram0 || log "zram swap failed"
else
    log "no zram device: running without swap"
fi
log "swap: $(grep SwapTotal /proc/meminfo | tr -s ' ')"

grep -E '^oom_kill ' /proc/vmstat > /out/vmstat.before
cat /proc/pressure/memory > /out/psi.before

KPID=""
SOCKET_ARG=""
# Simulated system properties (ro.config.low_ram, sys.boot_completed), as
# on a device: lmkd-rs reads the file named by LMKD_PROPS_FILE, the AOSP
# build the one named by LMKD_PROPS.
if [ -f /etc/lmkd.props ]; then
    export LMKD_PROPS_FILE=/etc/lmkd.props LMKD_PROPS=/etc/lmkd.props
fi
wait_socket() {
    i=0
    while [ ! -S /run/lmkd.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -S /run/lmkd.sock ] || log "$KILLER did not create its socket"
}
case "$KILLER" in
lmkd-rs)
    CONFIG_ARG=""
    [ -f /etc/lmkd.toml ] && CONFIG_ARG="--config /etc/lmkd.toml"
    # shellcheck disable=SC2086
    /usr/bin/lmkd --socket /run/lmkd.sock $CONFIG_ARG 2> /out/daemon.log &
    KPID=$!
    SOCKET_ARG="--socket /run/lmkd.sock"
    wait_socket
    ;;
aosp)
    # AOSP lmkd: the launcher binds the control socket as init would and
    # execs lmkd, so $! is lmkd itself. The driver talks to it exactly as
    # to lmkd-rs.
    /usr/bin/lmkd_launch /run/lmkd.sock /opt/aosp/lmkd 2> /out/daemon.log &
    KPID=$!
    SOCKET_ARG="--socket /run/lmkd.sock"
    wait_socket
    ;;
earlyoom)
    # Debian's defaults (act below 10% free RAM and 10% free swap), with
    # a report every second so the log shows what it saw.
    /usr/bin/earlyoom -r 1 > /out/daemon.log 2>&1 &
    KPID=$!
    ;;
none) ;;
esac
[ -n "$KPID" ] && log "killer pid $KPID"

WATCH_ARG=""
[ -n "$KPID" ] && WATCH_ARG="--watch-pid $KPID"
# shellcheck disable=SC2086
/usr/bin/lmkd-workload sample --out /out/samples.csv --interval-ms "$SAMPLE_MS" $WATCH_ARG &
SPID=$!

STPID=""
if [ -n "$KPID" ] && [ -x /usr/bin/strace ]; then
    # Attach after start-up: the goal is no memory-map calls while working.
    sleep 1
    strace -f -p "$KPID" -e trace=mmap,munmap,brk,mremap -o /out/strace.raw 2> /out/strace.err &
    STPID=$!
    sleep 0.5
fi

# Record the /proc files the daemon reads once memory first runs low: real
# guest fixtures for the parser tests (tests/fixtures/proc/vm).
(
    while :; do
        free=$(awk '/^MemFree:/ { print $2 }' /proc/meminfo)
        if [ "${free:-0}" -lt 20000 ]; then
            for f in meminfo vmstat zoneinfo; do cat "/proc/$f" > "/out/proc-$f"; done
            cat /proc/pressure/memory > /out/proc-pressure_memory
            break
        fi
        sleep 0.2
    done
) &
SNAPPID=$!

# The seed's question: does the killer itself fault or enter direct
# reclaim while it works? Per thread: minflt+majflt from the task stat
# files before and after the scenario, and every direct-reclaim entry by
# one of its threads (a tracefs instance filtered to their ids, with the
# kernel stack, which names the syscall that allocated), and the address of
# every fault of theirs.
thread_stats() {
    for t in /proc/"$KPID"/task/*; do
        s=$(cat "$t/stat" 2>/dev/null) && echo "$s"
    done
}
# tracefs, mounted once for whichever trace asks first.
TRACEFS=/sys/kernel/tracing
tracefs() {
    grep -q " $TRACEFS tracefs " /proc/mounts && return
    mkdir -p $TRACEFS
    mount -t tracefs nodev $TRACEFS 2>/dev/null
}
TRACE=""
if [ -n "$KPID" ]; then
    # Threads the killer starts on its own take a moment.
    sleep 0.5
    tracefs
    if [ -d $TRACEFS/instances ] && mkdir $TRACEFS/instances/killer 2>/dev/null; then
        TRACE=$TRACEFS/instances/killer
        filter=""
        for t in /proc/"$KPID"/task/*; do
            filter="${filter:+$filter || }common_pid == ${t##*/}"
        done
        ev=$TRACE/events/vmscan/mm_vmscan_direct_reclaim_begin
        echo 1024 > "$TRACE/buffer_size_kb"
        echo "$filter" > "$ev/filter" || log "tracefs: filter refused: $filter"
        echo 1 > "$TRACE/options/stacktrace"
        echo 1 > "$ev/enable"
        # Where each of its page faults was: the address and the faulting
        # instruction (report.py maps both to the daemon's mappings), so a
        # fault on the kill path names the code that took it.
        for fe in page_fault_user page_fault_kernel; do
            fev=$TRACE/events/exceptions/$fe
            if [ -d "$fev" ]; then
                echo "$filter" > "$fev/filter" && echo 1 > "$fev/enable"
            else
                log "tracefs: no exceptions/$fe event (fault addresses not recorded)"
            fi
        done
        echo 1 > "$TRACE/tracing_on"
    else
        log "tracefs: no instance (direct reclaims of the killer not counted)"
    fi
    thread_stats > /out/killer-threads.before
fi

# Opt-in (run.sh STALL_TRACE=1): every task's entry to and exit from memory
# stall, from the function tracer, so report.py can say whose stall PSI
# counted (kswapd, kcompactd, the killer, the apps). Off by default: it
# costs every stall a trace event.
STALLT=""
if [ -f /etc/stall-trace ]; then
    tracefs
    T=$TRACEFS
    echo 16384 > $T/buffer_size_kb
    if echo 'psi_memstall_enter psi_memstall_leave' > $T/set_ftrace_filter && echo function > $T/current_tracer; then
        STALLT=$T
    else
        log "stall trace: no function tracer for psi_memstall_enter/leave"
    fi
fi

RPID=""
FDS_BEFORE_RECORDER=$( [ -n "$KPID" ] && ls "/proc/$KPID/fd" 2>/dev/null | wc -l)
if [ "$KILLER" = lmkd-rs ] && [ -x /usr/bin/lmkctl ]; then
    # Every policy evaluation of the run, for `lmkctl replay`.
    /usr/bin/lmkctl --socket /run/lmkd.sock.ctl record /out/lmkd.lmkrec > /out/record.txt 2>&1 &
    RPID=$!
fi

# The killer's descriptors and resident memory before and after the
# scenario, both times with no driver connected: a soak's verdict
# (report.py) wants them unchanged.
daemon_footprint() {
    ls -l "/proc/$KPID/fd" > "/out/daemon.fd.$1" 2>/dev/null
    grep -E '^(VmRSS|VmLck|VmHWM|RssAnon|RssFile|RssShmem)' "/proc/$KPID/status" > "/out/daemon.status.$1" 2>/dev/null
}
nfds() { ls "/proc/$KPID/fd" 2>/dev/null | wc -l; }
if [ -n "$KPID" ]; then
    if [ -n "$RPID" ]; then
        # The recorder's control connection (three descriptors in the
        # daemon) stays open until after the "after" listing: wait for it
        # so both listings hold it.
        n0=$FDS_BEFORE_RECORDER
        i=0
        while [ "$(nfds)" -le "$n0" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    daemon_footprint before
fi

CYCLES_ARG=""
[ -n "${CYCLES:-}" ] && CYCLES_ARG="--cycles $CYCLES"
log "driver start"
# shellcheck disable=SC2086
/usr/bin/lmkd-workload $SOCKET_ARG --scenario /etc/scenario.toml --out /out/result.json \
    --label "${LABEL:-$KILLER}" --data-file /dev/vda $CYCLES_ARG > /out/driver.txt 2>&1
echo "$?" > /out/driver.rc
log "driver exit $(cat /out/driver.rc)"
if [ -n "$KPID" ]; then
    # Give the killer a moment to see the driver's connections close.
    sleep 1
    daemon_footprint after
fi

if [ -n "$STALLT" ]; then
    echo 0 > $STALLT/tracing_on
    cat $STALLT/trace > /out/stall.trace
fi

if [ -n "$RPID" ]; then
    kill -INT "$RPID" 2>/dev/null
    wait "$RPID" 2>/dev/null
fi

if [ -n "$KPID" ]; then
    thread_stats > /out/killer-threads.after
    if [ -n "$TRACE" ]; then
        echo 0 > "$TRACE/tracing_on"
        cat "$TRACE/trace" > /out/killer-reclaim.trace
    fi
    cat "/proc/$KPID/smaps_rollup" > /out/daemon.smaps_rollup 2>/dev/null
    cat "/proc/$KPID/smaps" > /out/daemon.smaps 2>/dev/null
fi

if [ -n "$STPID" ]; then
    kill -INT "$STPID" 2>/dev/null
    wait "$STPID" 2>/dev/null
    # Count syscall lines only (not signals, exits or attach notes).
    grep -cE '^[0-9]+ +(mmap|munmap|brk|mremap)\(' /out/strace.raw > /out/strace.count || true
    head -c 20000 /out/strace.raw > /out/strace.head
    rm -f /out/strace.raw
fi
kill -TERM "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
kill "$SNAPPID" 2>/dev/null

if [ -n "$KPID" ]; then
    if kill -0 "$KPID" 2>/dev/null; then
        echo alive > /out/daemon.state
        grep -E '^(VmRSS|VmLck|VmHWM)' "/proc/$KPID/status" > /out/daemon.status
        kill -TERM "$KPID"
    else
        echo dead > /out/daemon.state
    fi
fi
grep -E '^oom_kill ' /proc/vmstat > /out/vmstat.after
cat /proc/pressure/memory > /out/psi.after
dmesg > /out/dmesg.txt
finish
