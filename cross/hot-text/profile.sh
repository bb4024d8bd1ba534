#!/usr/bin/env bash
# cross/hot-text/profile.sh: which functions of the lmkd binary run on its kill path,
# and which other functions its other threads run after start-up.
#
# What it does, end to end:
#  1. builds an unstripped static musl lmkd with line tables (and
#     lmkd-workload, the ActivityManager stand-in that runs the apps);
#  2. makes real memory pressure: a cgroup v1 memory group (under our own
#     group) with a 256 MiB limit, its cgroup2 twin for memory.pressure, and
#     zram swap; lmkd-workload runs a scenario in that group (apps at adj
#     950, 900 x2, 700, 500, 200 x2, 100 that grow until killed, a small
#     foreground app at 0 that must survive);
#  3. runs lmkd under `valgrind --tool=callgrind --separate-threads=yes`
#     (valgrind 3.24 from Debian 13, unpacked under /tmp, its syscall table
#     patched to pass pidfd_send_signal and process_mrelease through: see
#     below), watching the group's memory.pressure, so it kills with
#     pidfd_send_signal + process_mrelease (8 kills, adj 950..100, in the
#     committed run); then stops the core thread alone inside a handler
#     (ptrace, as tests/server.rs does) so that the watchdog kills twice.
#     From outside, on the control socket: `lmkctl record` for the whole
#     run; after the kills a SIGHUP (the loader reloads the configuration),
#     `lmkctl status` and `lmkctl kills`, each followed by a dump of every
#     thread (valgrind reuses a finished thread's number).
#     Every thread's start-up is cut off by
#     `--dump-after=lmkd::daemon::no_hook` (each thread calls that hook once
#     as it starts, the core first thing in Daemon::run; such a dump writes
#     and zeroes that thread's counters only), the shutdown by a
#     `callgrind_control --dump` (every thread) before SIGTERM;
#  4. from the dumps after start-up (`dump steady*`) of the threads lmkd
#     (core), lmkd-reaper and lmkd-watchdog, writes (next to this script
#     unless OUT is set):
#       hot-functions.txt            demangled names without ::h<hash> or
#                                    [crate hash], sorted, one a line
#       hot-functions-by-thread.txt  thread<TAB>function<TAB>self Ir
#       hot-symbols.txt              the same functions as linker (mangled)
#                                    symbols, aliases included, for lld's
#                                    --symbol-ordering-file
#     and prints the count, their size in the binary and the 20 biggest.
#     Functions that only sit on a thread's stack (thread_start, musl's
#     start and clone) run no instruction after start-up and are left out.
#  5. from the dumps after start-up of lmkd-report, lmkd-control, its
#     connection threads (lmkd-control-c: record, status, kills) and
#     lmkd-loader, the functions not in the first list (the code that
#     faults back in once residency.rs has dropped what is outside
#     .text.kill_path):
#       after-start-functions.txt    linker section patterns: mangled
#                                    names with the 17h<hash>E replaced
#                                    by `*`, v0 (_R) and C names whole;
#                                    most threads first, then most calls
#       after-start-by-thread.txt    thread<TAB>function<TAB>self Ir
#
# Prerequisites: root; cgroup v1 memory controller with our own group;
# cgroup2 at /sys/fs/cgroup/unified with memory.pressure; PSI; zram0 free;
# mkswap/swapon/swapoff; apt-get and dpkg (for valgrind 3.24) or
# VALGRIND_ROOT; callgrind_control (the system's 3.19 one works); the
# x86_64-unknown-linux-musl target and rust-lld (lmkd, lmkctl); python3;
# binutils (nm, c++filt, readelf, size). Takes the tests' machine-wide lock
# /tmp/lmkd-tests-machine-wide.lock for the whole run.
#
# Takes about 3 minutes with the binaries built (the pressure run ~90 s,
# the watchdog phase ~15 s), plus ~1 minute of build from scratch and a
# 15 MB download the first time.
#
# Env: OUT (output dir, default: this script's dir), WORK (scratch dir,
# default: a fresh /tmp/lmkd-hotprof.XXXX, kept for inspection),
# KEEP_BUILD=1 skips cargo when the binaries exist, ANALYZE=WORKDIR only
# redoes step 4 on an earlier run's files, VALGRIND_ROOT an unpacked
# valgrind >= 3.22 to use (its pidfd_send_signal and process_mrelease
# must pass; the patch is applied only to the copy this script unpacks).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE}
WORK=${WORK:-$(mktemp -d /tmp/lmkd-hotprof.XXXX)}
mkdir -p "$WORK"
TGT=/tmp/tgt-prof
BIN=$TGT/x86_64-unknown-linux-musl/release/lmkd
WL=$TGT/release/lmkd-workload
CTL=$TGT/x86_64-unknown-linux-musl/release/lmkctl
LIMIT_MIB=256
ZRAM_MIB=1024

log() { echo "profile.sh: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root"
# ANALYZE=DIR: only step 4, on the callgrind files of an earlier run's WORK.
if [ -n "${ANALYZE:-}" ]; then WORK=$ANALYZE; fi
if [ -z "${ANALYZE:-}" ]; then

# ---- 1. build -------------------------------------------------------------
if [ "${KEEP_BUILD:-0}" != 1 ] || [ ! -x "$BIN" ] || [ ! -x "$WL" ] || [ ! -x "$CTL" ]; then
    (cd "$HERE" &&
        CARGO_TARGET_DIR=$TGT CARGO_PROFILE_RELEASE_STRIP=none CARGO_PROFILE_RELEASE_DEBUG=1 \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
        CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --target x86_64-unknown-linux-musl --bin lmkd --bin lmkctl &&
        CARGO_TARGET_DIR=$TGT cargo build --release --bin lmkd-workload)
fi

# ---- valgrind with the pidfd syscalls -----------------------------------------
# Valgrind 3.19 (Debian 12) does not know pidfd_open (434): it answers
# ENOSYS and lmkd takes its no-pidfd path (kill(2), no process_mrelease).
# 3.24 (Debian 13) handles pidfd_open, pidfd_send_signal and
# process_mrelease; unless VALGRIND_ROOT is given or the system valgrind is
# new enough, Debian 13's package is downloaded with apt (a private list
# and cache, nothing installed) and unpacked under /tmp.
# Even 3.24 has no wrapper for pidfd_send_signal (424) nor process_mrelease
# (448). Both only take numbers (a pidfd, a signal, flags; the siginfo
# pointer is NULL) and touch no client memory, so they get fsync's entry
# (74): a plain pass-through marked "may block". The table is found in the
# stripped tool binary by its shape: read (0) has a POST and write (1)
# none, 335..423 (no such syscalls on x86_64) are empty, pidfd_open (434)
# is handled, 424 and 448 not.
patch_syscalls() {
    python3 - "$1" <<'PY2'
import struct, subprocess, sys
path = sys.argv[1]
b = bytearray(open(path, "rb").read())
secs = {}
for l in subprocess.run(["readelf", "-SW", path], capture_output=True, text=True).stdout.splitlines():
    f = l.replace("[ ", "[").split()
    if len(f) > 6 and f[1] in (".text", ".data"):
        secs[f[1]] = (int(f[3], 16), int(f[4], 16), int(f[5], 16))
tva, _, tsz = secs[".text"]
intext = lambda x: tva <= x < tva + tsz
va, off, sz = secs[".data"]
hits = []
for start in range(0, sz - 16 * 450, 8):
    ent = lambda i: struct.unpack_from("<QQ", b, off + start + 16 * i)
    if not (intext(ent(0)[0]) and intext(ent(0)[1]) and intext(ent(1)[0]) and ent(1)[1] == 0):
        continue
    if any(ent(i) != (0, 0) for i in range(336, 424)):
        continue
    if ent(424) != (0, 0) or ent(448) != (0, 0) or not intext(ent(434)[0]) or not intext(ent(74)[0]) or ent(74)[1] != 0:
        continue
    hits.append(start)
if len(hits) != 1:
    sys.exit(f"{path}: syscall table not found unambiguously ({len(hits)} candidates)")
o = off + hits[0]
for n in (424, 448):
    b[o + 16 * n: o + 16 * n + 16] = b[o + 16 * 74: o + 16 * 74 + 16]
open(path, "wb").write(b)
print(f"patched syscall table at {va + hits[0]:#x}: 424, 448 -> fsync's wrapper", file=sys.stderr)
PY2
}
vg_new_enough() { "$@" --version 2>/dev/null | awk -F'[-.]' '{exit !($2 > 3 || ($2 == 3 && $3 >= 22))}'; }
if [ -z "${VALGRIND_ROOT:-}" ] && vg_new_enough valgrind; then
    VALGRIND=valgrind CALLGRIND_CONTROL=callgrind_control
else
    VALGRIND_ROOT=${VALGRIND_ROOT:-/tmp/lmkd-valgrind-trixie}
    if [ ! -x "$VALGRIND_ROOT/usr/bin/valgrind" ]; then
        log "fetching Debian 13's valgrind into $VALGRIND_ROOT"
        A=$VALGRIND_ROOT.apt
        mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$A/sources.list"
        O=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o Debug::NoLocking=1)
        apt-get "${O[@]}" update >/dev/null
        (cd "$A" && apt-get "${O[@]}" download valgrind >/dev/null 2>&1)
        dpkg -x "$A"/valgrind_*.deb "$VALGRIND_ROOT"
        patch_syscalls "$VALGRIND_ROOT/usr/libexec/valgrind/callgrind-amd64-linux"
    fi
    export VALGRIND_LIB=$VALGRIND_ROOT/usr/libexec/valgrind
    VALGRIND=$VALGRIND_ROOT/usr/bin/valgrind
    # Debian 13's vgdb wants a newer glibc; the system's callgrind_control
    # (and its vgdb) talk to 3.24 as well.
    CALLGRIND_CONTROL=$(command -v callgrind_control || echo "$VALGRIND_ROOT/usr/bin/callgrind_control")
    vg_new_enough "$VALGRIND" || die "$VALGRIND is older than 3.22"
fi
log "using $("$VALGRIND" --version)"

# ---- 2. the pressure ground -----------------------------------------------
exec 9>>/tmp/lmkd-tests-machine-wide.lock
log "waiting for /tmp/lmkd-tests-machine-wide.lock"
flock 9

own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
V1=/sys/fs/cgroup/memory${own%/}/lmkd-hotprof-$$
V2=/sys/fs/cgroup/unified/lmkd-hotprof-$$
ZRAM=/sys/block/zram0
[ -e /sys/fs/cgroup/memory${own%/}/memory.limit_in_bytes ] || die "no cgroup v1 memory group of our own"
[ -e /sys/fs/cgroup/unified/memory.pressure ] || die "no cgroup2 memory.pressure"
[ -e $ZRAM ] || die "no zram0"
grep -q /dev/zram0 /proc/swaps && die "/dev/zram0 is already swap; not touching it"

VG_PID= WL_PID= REC_PID= ZRAM_ON=
cleanup() {
    set +e
    [ -n "$WL_PID" ] && kill -KILL "$WL_PID" 2>/dev/null
    [ -n "$REC_PID" ] && kill -KILL "$REC_PID" 2>/dev/null
    for g in "$V1" "$V2"; do
        [ -d "$g" ] || continue
        for p in $(cat "$g/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    [ -n "$VG_PID" ] && kill -KILL "$VG_PID" 2>/dev/null && wait "$VG_PID" 2>/dev/null
    for g in "$V1" "$V2"; do
        for _ in $(seq 100); do [ -d "$g" ] || break; rmdir "$g" 2>/dev/null || sleep 0.1; done
        [ -d "$g" ] && log "WARNING: could not remove $g"
    done
    if [ -n "$ZRAM_ON" ]; then
        grep -q /dev/zram0 /proc/swaps && swapoff /dev/zram0
        echo 1 >$ZRAM/reset || log "WARNING: could not reset zram0"
    fi
}
trap cleanup EXIT

mkdir "$V1" "$V2"
echo $((LIMIT_MIB << 20)) >"$V1/memory.limit_in_bytes"
echo 100 >"$V1/memory.swappiness" 2>/dev/null || true

[ "$(cat $ZRAM/disksize)" = 0 ] || echo 1 >$ZRAM/reset
ZRAM_ON=1
for a in lz4 lzo-rle lzo; do
    if grep -qw -- "\[\?$a\]\?" $ZRAM/comp_algorithm; then echo $a >$ZRAM/comp_algorithm; break; fi
done
echo $((ZRAM_MIB << 20)) >$ZRAM/disksize
mkswap /dev/zram0 >/dev/null
swapon /dev/zram0

# Apps that grow 12.5 MiB/s each until killed (together they overrun the
# limit and zram in seconds); the daemon sees only the group's PSI, so it
# kills for complete stalls ("not responding", min adj 0) from the top of
# the adj ladder down, through the heaviest-task walk at adj <= 200.
cat >"$WORK/scenario.toml" <<'EOF'
name = "hotprof"
description = "apps at adj 950..100 grow until killed; foreground at 0 stays"
duration_ms = 120000
end_after_deaths = 8
grace_ms = 2000
fill_percent = 50

[[app]]
name = "fg"
anon_kb_per_tick = 1024
tick_ms = 10
anon_max_mb = 24
adj = [{ at_ms = 0, adj = 0 }]

EOF
# The apps that grow until killed, least important first: name adj count.
for app in "cached950 950 1" "cached900 900 2" "prev700 700 1" "svc500 500 1" \
    "perc200 200 2" "vis100 100 1"; do
    read -r name adj count <<<"$app"
    printf '\n[[app]]\nname = "%s"\ncount = %s\nanon_kb_per_tick = 1024\ntick_ms = 80\nadj = [{ at_ms = 0, adj = %s }]\n' \
        "$name" "$count" "$adj"
done >>"$WORK/scenario.toml"

cat >"$WORK/lmkd.toml" <<EOF
socket_path = "$WORK/lmkd.sock"
psi_path = "$V2/memory.pressure"
psi_partial_stall_ms = 70
psi_complete_stall_ms = 150
EOF

# ---- 3. the daemon under callgrind ------------------------------------------
# Mangled names (--demangle=no) match the symbol table exactly.
"$VALGRIND" --tool=callgrind --separate-threads=yes --demangle=no \
    --dump-instr=no --compress-strings=no --compress-pos=no \
    --dump-after='_ZN4lmkd6daemon7no_hook*' \
    --callgrind-out-file="$WORK/callgrind.out.%p" \
    "$BIN" --config "$WORK/lmkd.toml" --control "$WORK/lmkd.ctl" \
    </dev/null >/dev/null 2>"$WORK/lmkd.log" &
VG_PID=$!
for _ in $(seq 600); do
    grep -q "running" "$WORK/lmkd.log" && break
    kill -0 $VG_PID 2>/dev/null || die "daemon died: $(cat "$WORK/lmkd.log")"
    sleep 0.1
done
grep -q "running" "$WORK/lmkd.log" || die "daemon did not start: $(cat "$WORK/lmkd.log")"
sleep 1
# Thread names, in creation order (callgrind numbers threads the same way).
for t in $(ls /proc/$VG_PID/task | sort -n); do
    echo "$t $(cat /proc/$VG_PID/task/$t/comm)"
done >"$WORK/threads.txt"
log "daemon $VG_PID threads: $(awk '{print $2}' "$WORK/threads.txt" | tr '\n' ' ')"

# The control plane from outside, as an operator would use it: a
# recording of every evaluation for the whole run (its own connection
# thread, lmkd-control-c, and the core publishing into the record ring).
"$CTL" --socket "$WORK/lmkd.ctl" record "$WORK/lmkd.rec" >"$WORK/record.out" 2>&1 &
REC_PID=$!

log "running the scenario (kills expected)"
sh -c 'echo $$ >"$1/cgroup.procs"; echo $$ >"$2/cgroup.procs"; shift 2; exec "$@"' sh "$V1" "$V2" \
    "$WL" --socket "$WORK/lmkd.sock" --scenario "$WORK/scenario.toml" --out "$WORK/result.json" \
    >"$WORK/workload.out" 2>&1 &
WL_PID=$!
wait $WL_PID && wl_rc=0 || wl_rc=$?
WL_PID=
log "lmkd-workload exit status $wl_rc (0 pass, 1 criteria failed)"

# The watchdog's kill path runs only while the core is stuck inside a
# handler for a whole watchdog period (2 s). As tests/server.rs does, the
# core thread alone is ptrace-stopped at the entry of the recvmsg that
# reads a client packet (a stream of PROCPRIO from an app whose adj keeps
# moving), for 5 s; the watchdog kills apps at adj >= 0 meanwhile, and the
# core takes those kills in once it runs again. Under valgrind the thread
# releases the big lock before a blocking syscall, so the others run on.
{
    echo 'name = "hotprof-watchdog"'
    echo 'duration_ms = 14000'
    echo 'grace_ms = 1000'
    for a in 900 700 500; do
        printf '[[app]]\nname = "wd%s"\nanon_kb_per_tick = 1024\ntick_ms = 10\nanon_max_mb = 8\nadj = [{ at_ms = 0, adj = %s }]\n' $a $a
    done
    printf '[[app]]\nname = "mover"\nanon_kb_per_tick = 1024\ntick_ms = 10\nanon_max_mb = 4\nadj = ['
    for i in $(seq 0 60); do printf '{ at_ms = %d, adj = %d }, ' $((i * 200)) $((100 + i % 2)); done
    printf ']\n'
} >"$WORK/watchdog.toml"
log "stopping the core in a handler so that the watchdog kills"
"$WL" --socket "$WORK/lmkd.sock" --scenario "$WORK/watchdog.toml" >"$WORK/watchdog.out" 2>&1 &
WL_PID=$!
sleep 3
python3 - "$VG_PID" <<'PY2' || log "WARNING: could not stop the core (watchdog path not run)"
import ctypes, os, sys, time
tid = int(sys.argv[1])  # the core is the main thread
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
SEIZE, INTERRUPT, SYSCALL, GETREGS, DETACH = 0x4206, 0x4207, 24, 12, 17
TRACESYSGOOD, WALL, SYS_recvmsg = 1, 0x40000000, 47
def pt(req, data=None, addr=None):
    r = libc.ptrace(req, tid, addr, data)
    if r == -1:
        sys.exit(f"ptrace {req}: {os.strerror(ctypes.get_errno())}")
def wait():
    _, st = os.waitpid(tid, WALL)
    return st
regs = (ctypes.c_ulonglong * 27)()  # struct user_regs_struct
pt(SEIZE, TRACESYSGOOD)
pt(INTERRUPT)
wait()
stuck = False
for _ in range(5000):
    pt(SYSCALL)
    st = wait()
    if not os.WIFSTOPPED(st) or os.WSTOPSIG(st) != (5 | 0x80):
        continue
    pt(GETREGS, ctypes.addressof(regs))
    rax, orig_rax = regs[10], regs[15]
    if orig_rax == SYS_recvmsg and rax == (2**64 - 38):  # entry: rax = -ENOSYS
        stuck = True
        break
if stuck:
    print("core stopped at recvmsg entry", file=sys.stderr)
    time.sleep(5)
pt(DETACH)
sys.exit(0 if stuck else 1)
PY2
wait $WL_PID && wl_rc=0 || wl_rc=$?
WL_PID=
log "watchdog phase: lmkd-workload exit status $wl_rc"
sleep 1
dump() {
    "$CALLGRIND_CONTROL" --dump="$1" $VG_PID >>"$WORK/dump.out" 2>&1 ||
        die "callgrind_control: $(cat "$WORK/dump.out")"
}
# After the kills: a reload (SIGHUP: the loader re-reads the
# configuration), then `lmkctl status` and `lmkctl kills` once each.
# Each one-shot command gets a connection thread that ends with it, and
# valgrind hands a finished thread's number to the next one: a dump of
# every thread after each (trigger "dump steady-*") keeps them apart.
kill -HUP $VG_PID
sleep 3
ctl_rc=0
"$CTL" --socket "$WORK/lmkd.ctl" status >"$WORK/status.out" 2>&1 || ctl_rc=$?
log "lmkctl status: exit status $ctl_rc"
sleep 1
dump steady-status
"$CTL" --socket "$WORK/lmkd.ctl" kills >"$WORK/kills.out" 2>&1 || ctl_rc=$?
log "lmkctl kills: exit status $ctl_rc"
sleep 1
dump steady-kills
kill -INT $REC_PID
wait $REC_PID && rec_rc=0 || rec_rc=$?
REC_PID=
log "lmkctl record: exit status $rec_rc: $(cat "$WORK/record.out")"
sleep 1
# Dump every thread now, before the shutdown runs on the core.
dump steady
sleep 2
kill -TERM $VG_PID
wait $VG_PID || true
VG_PID=

cat "$WORK/workload.out" "$WORK/watchdog.out" >&2
{ echo "--- lmkctl status"; cat "$WORK/status.out"; echo "--- lmkctl kills"; cat "$WORK/kills.out"
  echo "--- lmkctl record"; cat "$WORK/record.out"; } >&2
[ "$ctl_rc" = 0 ] && [ "$rec_rc" = 0 ] || die "an lmkctl command failed (see above)"
if grep -q "unhandled.*syscall" "$WORK/lmkd.log"; then
    grep "unhandled.*syscall" "$WORK/lmkd.log" | sort | uniq -c >&2
    die "valgrind refused the syscalls above: the daemon took a fallback path, so no list"
fi
grep -iE "kill|pidfd|mrelease|WARN|ERROR" "$WORK/lmkd.log" | grep -v "^==" >&2 || true

fi  # ANALYZE

# ---- 4. the function list ---------------------------------------------------
python3 - "$WORK" "$BIN" "$OUT" <<'PY'
import bisect, collections, glob, os, re, subprocess, sys

work, binary, out = sys.argv[1:4]
WANT = {"lmkd", "lmkd-reaper", "lmkd-watchdog"}

# Symbols of the binary: address, size (symbols without one, like musl's
# assembly memcpy, get the gap to the next symbol), mangled name.
syms = []
for line in subprocess.run(["nm", "-S", "-n", "--defined-only", binary],
                           capture_output=True, text=True, check=True).stdout.splitlines():
    f = line.split()
    if len(f) == 4:
        addr, size, kind, name = int(f[0], 16), int(f[1], 16), f[2], f[3]
    elif len(f) == 3:
        addr, size, kind, name = int(f[0], 16), None, f[1], f[2]
    else:
        continue
    if kind in "tTwWiI":
        syms.append([addr, size, name])
for i, s in enumerate(syms):
    if s[1] is None:
        nxt = next((t[0] for t in syms[i + 1:] if t[0] > s[0]), s[0])
        s[1] = nxt - s[0]
by_name = {s[2]: s for s in syms}
starts = sorted({s[0] for s in syms})
by_addr, aliases = {}, collections.defaultdict(list)
for s in syms:
    by_addr.setdefault(s[0], s)
    aliases[s[0]].append(s[2])

def demangle(names):
    r = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True,
                       text=True, check=True).stdout.splitlines()
    return {n: plain(d) for n, d in zip(names, r)}

def plain(d):
    """A demangled name without the legacy ::h<hash> and v0's [crate hash]."""
    return re.sub(r"\[[0-9a-f]{1,16}\]", "", re.sub(r"::h[0-9a-f]{16}$", "", d))

# Thread number -> name: creation order (threads.txt is sorted by tid),
# checked where a thread's own module shows in its dumps by name (thread
# bodies are inlined into their entry trampolines, so most do not).
names = [l.split(None, 1)[1].strip() for l in open(os.path.join(work, "threads.txt"))]
names[0] = "lmkd"  # valgrind's launcher renames the main thread's comm
MARK = {"lmkd-loader": "4lmkd6loader", "lmkd-report": "4lmkd6report",
        "lmkd-control-c": "4lmkd7control"}

def parse(path):
    """Self Ir per (object, function) of one callgrind part, and the calls
    made to each function (by callee name)."""
    cost, calls = collections.Counter(), collections.Counter()
    ob = fn = cfn = None
    after_call = False
    for line in open(path, errors="replace"):
        if line.startswith("ob="):
            ob = line[3:].strip()
        elif line.startswith("fn="):
            fn = line[3:].strip()
        elif line.startswith("cfn="):
            cfn = line[4:].strip()
        elif line.startswith("calls="):
            after_call = True
            if cfn is not None:
                calls[cfn] += int(line[6:].split()[0])
        elif line[:1].isdigit() or line[:1] in "+-*":
            if after_call:
                after_call = False  # inclusive cost of the call, not self
                continue
            f = line.split()
            if len(f) >= 2 and fn is not None:
                cost[(ob, fn)] += int(f[1])
    return cost, calls

def resolve(fn):
    """callgrind's function name -> the binary's symbol, or None."""
    fn = re.sub(r"'\d+$", "", fn)  # callgrind's recursion-depth suffix
    if not fn.startswith("0x"):
        return fn if fn in by_name else None
    # No symbol starts there (assembly without .size): the one it falls
    # in, by symbol start. Under object "???" the address is the run's,
    # not the file's: valgrind loads a PIE at 0x108000 on amd64.
    for a in (int(fn, 16), int(fn, 16) - 0x108000):
        i = bisect.bisect_right(starts, a) - 1
        s = by_addr.get(starts[i]) if i >= 0 else None
        if s is not None and a < s[0] + max(s[1], 1):
            return s[2]
    return None

# Parts: callgrind.out.PID.PART-THREAD. A part whose trigger is not one of
# our `dump steady*` is a thread's start-up (--dump-after the hook) and
# begins a new thread there: valgrind reuses a finished thread's number
# (the one-shot lmkctl connections), so one number can be several threads.
# The threads alive at start-up are named by creation order (threads.txt
# is sorted by tid); any later one is a control connection thread.
finals = collections.defaultdict(list)
for p in glob.glob(os.path.join(work, "callgrind.out.*")):
    m = re.search(r"callgrind\.out\.(\d+)\.(\d+)-(\d+)$", p)
    if m:
        finals[int(m.group(3))].append((int(m.group(2)), p))
instances = []
for tno, parts in sorted(finals.items()):
    parts.sort()
    last_part, last = parts[-1]
    if "Trigger: dump steady" not in open(last, errors="replace").read(2000):
        sys.exit(f"thread {tno}: the last part ({last}) is not callgrind_control's dump")
    base = names[tno - 1] if tno - 1 < len(names) else "lmkd-control-c"
    want_mark = MARK.get(base)
    if want_mark and not any(want_mark in open(p, errors="replace").read() for _, p in parts):
        sys.exit(f"thread {tno} taken for {base}, but its dumps show no {want_mark}")
    cur = None
    for partno, path in parts:
        steady = "Trigger: dump steady" in open(path, errors="replace").read(2000)
        if not steady or cur is None:
            cur = {"tno": tno, "start": partno, "base": base,
                   "cost": collections.Counter(), "calls": collections.Counter()}
            instances.append(cur)
        if steady:
            c, n = parse(path)
            cur["cost"].update(c)
            cur["calls"].update(n)
# The connection threads in the order the script connected.
conns = sorted((i for i in instances if i["base"] == "lmkd-control-c"), key=lambda i: i["start"])
roles = ["record", "status", "kills"] if len(conns) == 3 else [f"#{k + 1}" for k in range(len(conns))]
for i in instances:
    i["name"] = i["base"]
for i, r in zip(conns, roles):
    i["name"] = f"lmkd-control-c ({r})"

rows = []
unresolved = collections.Counter()
for inst in instances:
    name = inst["name"]
    for (ob, fn), ir in inst["cost"].items():
        if ir <= 0:
            continue
        # Code residency.rs dropped and that faulted back in shows as
        # object "???" (valgrind no longer ties those pages to the file);
        # the binary is static, so its names are still the binary's.
        mine = ob == "???" or (ob is not None and os.path.realpath(ob) == os.path.realpath(binary))
        s = resolve(fn) if mine else None
        if s is None:
            unresolved[(name, ob, fn)] += ir
            continue
        rows.append((inst, s, ir))

agg = collections.Counter()
for inst, fn, ir in rows:
    if inst["base"] in WANT:
        agg[(inst["name"], fn)] += ir
dem = demangle(sorted({fn for _, fn in agg}))
with open(os.path.join(out, "hot-functions-by-thread.txt"), "w") as f:
    f.write("# thread\tfunction\tself Ir (after start-up, callgrind; see profile.sh)\n")
    for (name, fn), ir in sorted(agg.items(), key=lambda kv: (kv[0][0], -kv[1], dem[kv[0][1]])):
        f.write(f"{name}\t{dem[fn]}\t{ir}\n")
# Every name of a hot address (musl's memcpy is also __memcpy_fwd).
mangled = sorted({a for _, fn in agg for a in aliases[by_name[fn][0]]} if all(fn in by_name for _, fn in agg)
                 else {fn for _, fn in agg})
dem = demangle(mangled)
with open(os.path.join(out, "hot-functions.txt"), "w") as f:
    f.write("".join(sorted({dem[m] + "\n" for m in mangled})))
with open(os.path.join(out, "hot-symbols.txt"), "w") as f:
    f.write("".join(m + "\n" for m in mangled))

# Sizes: by symbol (aliases at one address counted once).
seen, total, sized = set(), 0, []
for m in mangled:
    s = by_name.get(m)
    if s is None:
        print(f"  no symbol for {m}", file=sys.stderr)
        continue
    if s[0] in seen:
        continue
    seen.add(s[0])
    total += s[1]
    sized.append((s[1], dem[m]))
# The same sum by demangled name (hash stripped) against `nm -S -C`, as
# one would by hand: every symbol whose stripped name is in the list.
names_set = {dem[m] for m in mangled}
by_dem = 0
for line in subprocess.run(["nm", "-S", "--size-sort", "-C", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    f = line.split(None, 3)
    if len(f) == 4 and f[2] in "tTwW" and plain(f[3]) in names_set:
        by_dem += int(f[1], 16)
# All code: .text and the linker script's .text.* output sections.
text = sum(int(l.split()[1]) for l in subprocess.run(["size", "-A", binary], capture_output=True,
                                                     text=True, check=True).stdout.splitlines()
           if l.split()[:1] and (l.split()[0] == ".text" or l.split()[0].startswith(".text.")))
print("threads: " + ", ".join(f"{i['tno']}={i['name']}" for i in instances))
for t in sorted(WANT):
    print(f"  {t}: {len({fn for n, fn in agg if n == t})} functions, {sum(ir for (n, _), ir in agg.items() if n == t)} Ir")
print(f"hot functions: {len(names_set)} names, {len(mangled)} symbols, {total} bytes "
      f"({total / text * 100:.1f}% of .text {text}); by demangled name via nm -S -C: {by_dem} bytes")
print("biggest 20:")
for size, n in sorted(sized, reverse=True)[:20]:
    print(f"  {size:7d}  {n}")
# ---- the second list: what the other threads run after start-up --------
# The report, control (and its connection threads) and loader threads, less
# what the first list has (that goes to .text.kill_path): the functions
# that fault in after residency.rs drops the cold code, as linker section
# patterns. Order: by how many of these threads ran the function, then by
# calls to it, then by self Ir.
WANT2 = {"lmkd-report", "lmkd-control", "lmkd-control-c", "lmkd-loader"}
hot_addrs = {by_name[m][0] for m in mangled if m in by_name}
users = collections.defaultdict(set)
irs, ncalls, per_thread = collections.Counter(), collections.Counter(), collections.Counter()
for inst, fn, ir in rows:
    if inst["base"] not in WANT2:
        continue
    a = by_name[fn][0]
    if a in hot_addrs:
        continue
    users[a].add(inst["name"])
    irs[a] += ir
    per_thread[(inst["name"], fn)] += ir
for inst in instances:
    if inst["base"] in WANT2:
        for cfn, n in inst["calls"].items():
            s = resolve(cfn)
            if s is not None and by_name[s][0] in users:
                ncalls[by_name[s][0]] += n

def pattern(m):
    """A section pattern for a symbol: legacy Rust names without their
    hash; v0 names and C names whole."""
    h = re.match(r"(_ZN.*)17h[0-9a-f]{16}E$", m)
    return h.group(1) + "*" if h else m

order = sorted(users, key=lambda a: (-len(users[a]), -ncalls[a], -irs[a], by_addr[a][2]))
pats = []
for a in order:
    for m in sorted(aliases[a]):
        p = pattern(m)
        if p not in pats:
            pats.append(p)
with open(os.path.join(out, "after-start-functions.txt"), "w") as f:
    f.write("".join(p + "\n" for p in pats))
dem2 = demangle(sorted({fn for _, fn in per_thread} | {by_addr[a][2] for a in order}))
with open(os.path.join(out, "after-start-by-thread.txt"), "w") as f:
    f.write("# thread\tfunction\tself Ir (after start-up, callgrind; not in hot-functions.txt; see profile.sh)\n")
    for (name, fn), ir in sorted(per_thread.items(), key=lambda kv: (kv[0][0], -kv[1], dem2[kv[0][1]])):
        f.write(f"{name}\t{dem2[fn]}\t{ir}\n")
total2 = sum(by_addr[a][1] for a in order)
print("after start-up, other threads: " + ", ".join(
    f"{n}={len({fn for t, fn in per_thread if t == n})}" for n in sorted({t for t, _ in per_thread})))
print(f"after-start functions: {len(order)} functions, {len(pats)} patterns, {total2} bytes "
      f"({total2 / text * 100:.1f}% of .text {text})")
print("biggest 20:")
for a in sorted(order, key=lambda a: -by_addr[a][1])[:20]:
    print(f"  {by_addr[a][1]:7d}  {len(users[a])}  {dem2[by_addr[a][2]]}")

if unresolved:
    print("outside the binary (left out):")
    for (name, ob, fn), ir in sorted(unresolved.items(), key=lambda kv: -kv[1]):
        print(f"  {name}\t{ob}\t{fn}\t{ir}")
PY
log "scratch kept in $WORK"
