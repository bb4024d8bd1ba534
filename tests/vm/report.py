#!/usr/bin/env python3
"""Metrics, pictures and side-by-side tables for VM bench runs (stdlib only).

    report.py summarize OUTDIR          -> OUTDIR/metrics.json, OUTDIR/plot.svg
    report.py compare [--svg FILE] OUTDIR [OUTDIR..]
                                        -> per-killer medians and ranges on
                                           stdout, all runs in one picture

OUTDIR is what tests/vm/run.sh leaves: result.json from the driver,
samples.csv from the sampler, and the guest's before/after counters.
"""

import csv
import json
import os
import re
import statistics
import sys

# A sample interval whose memory "some" stall exceeds this share marks the
# onset of pressure (a few ms of stall happen on an idle VM too).
ONSET_STALL_SHARE = 0.05
# Kill reasons lmkd gives for page-cache thrashing (LOW_SWAP_AND_THRASHING,
# LOW_MEM_AND_THRASHING, DIRECT_RECL_AND_THRASHING,
# LOW_FILECACHE_AFTER_THRASHING).
THRASHING_REASONS = (2, 4, 5, 7)
# A steady daemon (soak verdict) may end with this much more anonymous
# resident memory (RssAnon: heap, stacks, rings) than it started with: a few
# pages touched for the first time, not a leak that grows with every cycle.
# VmRSS as a whole is reported but not judged: memory is locked on fault,
# so each code path's text comes in the first time it runs (bounded by the
# binary, not by the number of cycles).
RSS_SLACK_KB = 64
# Clock ticks of /proc/PID/stat's utime and stime (the guest kernel's USER_HZ).
USER_HZ = 100


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def psi_totals(text):
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        for kv in parts[1:]:
            if kv.startswith("total="):
                out[parts[0]] = int(kv[6:])
    return out


def vm_counter(text, key):
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2 and p[0] == key:
            return int(p[1])
    return None


def load_samples(d):
    rows = []
    try:
        with open(os.path.join(d, "samples.csv")) as f:
            for r in csv.DictReader(f):
                try:
                    rows.append({k: float(v) for k, v in r.items()})
                except (TypeError, ValueError):
                    pass  # a row cut short when the VM stopped
    except OSError:
        pass
    return rows


def sample_at(samples, key, t_ms):
    """Counter `key` at t_ms, interpolated between the samples around it;
    None outside the sampled span or where the sampler did not record it
    (older samplers, or -1 for unreadable)."""
    for prev, cur in zip(samples, samples[1:]):
        if prev["t_ms"] <= t_ms <= cur["t_ms"]:
            a, b = prev.get(key, -1), cur.get(key, -1)
            if a < 0 or b < 0:
                return None
            span = cur["t_ms"] - prev["t_ms"]
            share = (t_ms - prev["t_ms"]) / span if span > 0 else 1.0
            return a + share * (b - a)
    return None


def thread_stats(text):
    """{tid: (comm, minflt, majflt, cpu ticks)} from concatenated /proc/PID/task/TID/stat lines."""
    out = {}
    for line in text.splitlines():
        open_, close = line.find("("), line.rfind(")")
        if open_ < 0 or close < open_:
            continue
        rest = line[close + 1:].split()
        try:
            out[int(line[:open_])] = (line[open_ + 1:close], int(rest[7]), int(rest[9]),
                                      int(rest[11]) + int(rest[12]))
        except (ValueError, IndexError):
            pass
    return out


# A tracefs line: task, pid, timestamp and the event, a tracepoint's
# ("name: fields") or a traced function's ("name <-caller").
EVENT = re.compile(r"^\s*(.*)-(\d+)\s+\[\d+\].*?\s(\d+\.\d+): ([^\s:]+)(?::|\s+<-)")


# A kernel-mode fault's ip prints as a kernel symbol (`ip=__put_user_4`).
FAULT = re.compile(r"address=(\S+)\s+ip=(\S+)\s+error_code=(0x[0-9a-f]+)")


def killer_trace(text):
    """The killer's events in a tracefs dump: direct-reclaim entries
    [(tid, comm, [frames])], each with the kernel stack recorded by
    options/stacktrace (innermost first), and page faults
    [(tid, kind, address, ip, error_code)]."""
    reclaims, faults = [], []
    cur = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        if line.lstrip().startswith("=>"):
            if cur is not None:
                cur[2].append(line.split("=>", 1)[1].strip().split("+")[0])
            continue
        m = EVENT.match(line)
        if not m:
            # (the "<stack trace>" line before a stack does not match)
            continue
        tid, event = int(m.group(2)), m.group(4)
        # The frames that follow belong to this event, a reclaim's or not.
        cur = None
        if event == "mm_vmscan_direct_reclaim_begin":
            cur = (tid, m.group(1).strip(), [])
            reclaims.append(cur)
        elif event in ("page_fault_user", "page_fault_kernel"):
            f = FAULT.search(line)
            if f:
                faults.append((tid, event.removeprefix("page_fault_"), f.group(1), f.group(2),
                               int(f.group(3), 16)))
    return reclaims, faults


MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) \S+ \d+\s*(.*)$")


def mappings(smaps):
    """The daemon's mappings from its smaps: [(start, end, perms, offset, name)]."""
    out = []
    for line in smaps.splitlines():
        m = MAPPING.match(line)
        if m:
            out.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3),
                        int(m.group(4), 16), os.path.basename(m.group(5)) or "anon"))
    return out


def where(text, maps):
    """An address as mapping+file offset (what addr2line wants for a file);
    a kernel symbol as it is."""
    try:
        addr = int(text, 16)
    except ValueError:
        return f"kernel {text}"
    for start, end, perms, off, name in maps:
        if start <= addr < end:
            return f"{name}+{addr - start + off:#x} ({perms})"
    return f"{addr:#x} (unmapped)"


def fault_site(kind, addr, ip, code, maps):
    """One fault, readable: what was touched, from which instruction, and
    how (x86 error code: bit 0 present page, 1 write, 4 instruction fetch)."""
    how = "fetch" if code & 0x10 else "write" if code & 2 else "read"
    how += ", page present" if code & 1 else ", page absent"
    return f"{kind} {how}: {where(addr, maps)} from {where(ip, maps)}"


def entry_point(frames):
    """What made the kernel allocate: the syscall, or a page fault."""
    for f in frames:
        if f.startswith(("__x64_sys_", "__ia32_sys_", "__do_sys_", "__se_sys_")):
            return f.split("_sys_", 1)[1] + "()"
    for f in frames:
        if "page_fault" in f:
            return "page fault"
    # Some syscalls have no __x64_sys_ frame of their own (inlined): the
    # frame below do_syscall_64 names it (ksys_write -> write()).
    if "do_syscall_64" in frames:
        i = frames.index("do_syscall_64")
        if i > 0:
            return frames[i - 1].removeprefix("ksys_") + "()"
    return frames[-1] if frames else "?"


ALLOCATOR = re.compile(r"^(trace_event_|try_to_free_pages|__?alloc_pages|__folio_alloc|folio_alloc|"
                       r"vma_alloc_folio|__alloc_pages_slowpath|alloc_slab_page|allocate_slab|___slab_alloc)")


def call_path(frames, limit=14):
    """The frames between the page allocator and the syscall (or fault)
    entry, innermost first: who asked for memory."""
    i = 0
    while i < len(frames) and ALLOCATOR.match(frames[i]):
        i += 1
    out = []
    for f in frames[i:]:
        out.append(f)
        if f.startswith(("__x64_sys_", "__ia32_sys_", "ksys_")) or f == "asm_exc_page_fault" or len(out) >= limit:
            break
    return out


def killer_threads(d):
    """Per thread of the killer: faults and direct reclaims during the run."""
    before = thread_stats(read(os.path.join(d, "killer-threads.before")))
    after = thread_stats(read(os.path.join(d, "killer-threads.after")))
    if not before and not after:
        return None
    trace, faults_seen = killer_trace(read(os.path.join(d, "killer-reclaim.trace")))
    maps = mappings(read(os.path.join(d, "daemon.smaps")))
    pid = min(before) if before else None
    threads = []
    for tid in sorted(set(before) | set(after)):
        comm = (after.get(tid) or before.get(tid))[0]
        b, a = before.get(tid), after.get(tid)
        faults = cpu_ms = None
        if a and b:
            faults = (a[1] - b[1]) + (a[2] - b[2])
            cpu_ms = (a[3] - b[3]) * 1000 // USER_HZ
        rec = [e for e in trace if e[0] == tid]
        stacks = {}
        for _, _, frames in rec:
            key = (entry_point(frames), " < ".join(call_path(frames)))
            stacks[key] = stacks.get(key, 0) + 1
        threads.append({
            "tid": tid,
            "comm": comm,
            "role": role(comm, tid == pid),
            "faults": faults,
            "cpu_ms": cpu_ms,
            "new_during_run": b is None,
            "gone_after_run": a is None,
            "direct_reclaims": len(rec),
            "reclaim_stacks": [{"count": n, "entry": e, "frames": f} for (e, f), n in stacks.items()],
            "fault_sites": [fault_site(k, a, ip, c, maps) for t, k, a, ip, c in faults_seen if t == tid],
        })
    return threads


STALL_SOURCES = ("kswapd", "kcompactd", "killer", "rest")


def memstall(text, killer_tids):
    """Each task's time in memory stall (psi_memstall_enter to the matching
    leave, from the function tracer), summed in ms by source: kswapd,
    kcompactd, the killer's threads, and the rest (the apps and the
    harness). Tasks stalled at once add up: task-ms, not PSI's wall-clock
    `some`, but PSI counts each of them. None without a trace."""
    if not text:
        return None
    open_, out = {}, dict.fromkeys(STALL_SOURCES, 0.0)
    for line in text.splitlines():
        m = EVENT.match(line)
        if not m or m.group(4) not in ("psi_memstall_enter", "psi_memstall_leave"):
            continue
        comm, pid, ts, fn = m.group(1).strip(), int(m.group(2)), float(m.group(3)), m.group(4)
        t0, depth = open_.get(pid, (ts, 0))
        if fn == "psi_memstall_enter":
            open_[pid] = (t0, depth + 1)
            continue
        if depth == 0:
            continue
        if depth > 1:
            # Nested (the kernel counts only the outer one).
            open_[pid] = (t0, depth - 1)
            continue
        del open_[pid]
        src = ("kswapd" if comm.startswith("kswapd") else "kcompactd" if comm.startswith("kcompactd")
               else "killer" if pid in killer_tids else "rest")
        out[src] += ts - t0
    return {k: round(v * 1000) for k, v in out.items()}


def role(comm, is_main):
    if is_main:
        return "core"
    if "reaper" in comm:
        return "reaper"
    if "namer" in comm:
        # lmkd-rs reads a victim's name off the kill path, on its own thread.
        return "namer"
    return "other"


def smaps_rollup(d):
    text = read(os.path.join(d, "daemon.smaps_rollup"))
    return field_kb(text, "Rss"), field_kb(text, "Locked")


def field_kb(text, key):
    for line in text.splitlines():
        p = line.split()
        if len(p) >= 2 and p[0] == key + ":":
            return int(p[1])
    return None


def fd_kinds(text):
    """Descriptor targets from `ls -l /proc/PID/fd`, numbers dropped
    (socket:[123] -> socket), so two listings compare by kind."""
    out = []
    for line in text.splitlines():
        if line.startswith("l") and " -> " in line:
            out.append(re.sub(r"\[\d+\]$", "", line.split(" -> ", 1)[1].strip()))
    return sorted(out)


def soak(d, res, samples):
    """The steady-daemon verdict: descriptors and VmRSS of the killer before
    and after the scenario (no driver connected either time), plus the
    cycle and OOM figures. (figures, failures)."""
    fb, fa = read(os.path.join(d, "daemon.fd.before")), read(os.path.join(d, "daemon.fd.after"))
    kb, ka = fd_kinds(fb), fd_kinds(fa)
    sb, sa = read(os.path.join(d, "daemon.status.before")), read(os.path.join(d, "daemon.status.after"))
    rss_b, rss_a = field_kb(sb, "VmRSS"), field_kb(sa, "VmRSS")
    anon_b, anon_a = field_kb(sb, "RssAnon"), field_kb(sa, "RssAnon")
    rss = [s["daemon_rss_kb"] for s in samples if s.get("daemon_rss_kb", -1) >= 0]
    t0, deaths = res.get("t0_mono_ms") or 0, res.get("deaths", [])
    # VmRSS a second after the first cycle ended (the sampler's figure).
    warm = None
    if deaths:
        after = [s["daemon_rss_kb"] for s in samples
                 if s.get("daemon_rss_kb", -1) >= 0 and s["t_ms"] - t0 >= deaths[0]["t_ms"] + 1000]
        warm = int(after[0]) if after else None
    f = {
        "cycles": res.get("cycles"),
        "cycles_relieved": res.get("cycles_relieved"),
        "storm_packets": res.get("storm_packets"),
        "daemon_fds_start": len(kb) if fb else None,
        "daemon_fds_end": len(ka) if fa else None,
        "daemon_fds_new": [k for k in ka if ka.count(k) > kb.count(k)],
        "daemon_rss_start_kb": rss_b,
        "daemon_rss_after_cycle1_kb": warm,
        "daemon_rss_end_kb": rss_a,
        "daemon_rss_anon_start_kb": anon_b,
        "daemon_rss_anon_end_kb": anon_a,
        "daemon_rss_shmem_start_kb": field_kb(sb, "RssShmem"),
        "daemon_rss_shmem_end_kb": field_kb(sa, "RssShmem"),
        "daemon_rss_file_start_kb": field_kb(sb, "RssFile"),
        "daemon_rss_file_end_kb": field_kb(sa, "RssFile"),
        "daemon_rss_max_kb": int(max(rss)) if rss else None,
        "kernel_oom_kills": res.get("kernel_oom_kills"),
        "run_s": round(res.get("end_ms", 0) / 1000, 1),
    }
    fails = []
    if not fb or not fa:
        fails.append("no descriptor listing of the daemon before and after the run (daemon.fd.*)")
    elif len(ka) != len(kb):
        fails.append(f"daemon descriptors {len(kb)} before the run, {len(ka)} after; "
                     f"more of: {', '.join(sorted(set(f['daemon_fds_new']))) or 'none'}")
    if m_oom := res.get("kernel_oom_kills"):
        fails.append(f"the kernel OOM killer fired {m_oom} time(s)")
    if anon_b is None or anon_a is None:
        fails.append("no RssAnon of the daemon before and after the run (daemon.status.*)")
    elif anon_a > anon_b + RSS_SLACK_KB:
        fails.append(f"daemon RssAnon {anon_b} kB before the run, {anon_a} kB after "
                     f"(+{anon_a - anon_b} kB, more than {RSS_SLACK_KB} kB; VmRSS {rss_b} -> {rss_a} kB)")
    return f, fails


def add(a, b):
    return None if a is None or b is None else a + b


def per_role(threads, what):
    """Sum of `what` per role over the killer's threads, e.g. {"core": 0}."""
    out = {}
    for t in threads or []:
        v = t.get(what)
        if v is None:
            continue
        out[t["role"]] = out.get(t["role"], 0) + v
    return out


def summarize(d):
    res = json.loads(read(os.path.join(d, "result.json"), "{}") or "{}")
    samples = load_samples(d)
    t0 = res.get("t0_mono_ms")
    m = {
        "scenario": res.get("scenario"),
        "killer": res.get("killer"),
        "pass": res.get("pass"),
        "failures": res.get("failures", []),
        "deaths_total": res.get("deaths_total"),
        "daemon_kills": res.get("daemon_kills"),
        "kills_per_adj": res.get("kills_per_adj", {}),
        "foreground_survived": res.get("foreground_survived"),
        "causes": {},
    }
    for x in res.get("deaths", []):
        m["causes"][x["cause"]] = m["causes"].get(x["cause"], 0) + 1
    before = read(os.path.join(d, "vmstat.before"))
    after = read(os.path.join(d, "vmstat.after"))
    b, a = vm_counter(before, "oom_kill"), vm_counter(after, "oom_kill")
    m["kernel_oom_kills"] = (a - b) if a is not None and b is not None else res.get("kernel_oom_kills")
    pb, pa = psi_totals(read(os.path.join(d, "psi.before"))), psi_totals(read(os.path.join(d, "psi.after")))
    for k in ("some", "full"):
        m[f"psi_{k}_ms"] = round((pa[k] - pb[k]) / 1000) if k in pa and k in pb else None
    # Onset: within the first interval whose "some" stall share passes the
    # bar, the latest moment the stall can have begun (its end less the
    # stall it counted, since "some" never runs faster than the clock).
    # Marking the interval's end instead put the onset up to a sample
    # period (200 ms) late at random: one launch-storm build gave lmkd
    # 35-224 ms from onset to first kill; this bound gives 236-258.
    onset = None
    for prev, cur in zip(samples, samples[1:]):
        dt = (cur["t_ms"] - prev["t_ms"]) * 1000
        if t0 is not None and cur["t_ms"] < t0:
            continue
        stall = cur["some_total_us"] - prev["some_total_us"]
        if dt > 0 and stall / dt > ONSET_STALL_SHARE:
            onset = round(max(prev["t_ms"], cur["t_ms"] - stall / 1000)) - (t0 or 0)
            break
    m["pressure_onset_ms"] = onset
    first = res.get("first_death_ms")
    m["first_kill_ms"] = first
    m["onset_to_first_kill_ms"] = (first - onset) if first is not None and onset is not None else None
    # The stall on either side of the first kill: what came before it is the
    # killer's to cut by acting sooner; what came after is the rest of the
    # scenario (later kills, and any pressure no kill relieves).
    before_us = sample_at(samples, "some_total_us", (t0 or 0) + first) if first is not None else None
    if before_us is not None and "some" in pb and m["psi_some_ms"] is not None:
        m["psi_some_before_first_kill_ms"] = max(0, round((before_us - pb["some"]) / 1000))
        m["psi_some_after_first_kill_ms"] = m["psi_some_ms"] - m["psi_some_before_first_kill_ms"]
    else:
        m["psi_some_before_first_kill_ms"] = m["psi_some_after_first_kill_ms"] = None
    # Whether the page cache was thrashing when the killer first acted: the
    # guest's file refaults from the scenario's start to the first kill, and
    # the thrashing share the killer itself reported for that kill.
    at = [sample_at(samples, "refault_file", (t0 or 0) + t) if t0 is not None and t is not None else None
          for t in (0, first)]
    m["refaults_before_first_kill"] = round(at[1] - at[0]) if None not in at else None
    reported = [x for x in res.get("deaths", []) if x.get("reason") is not None]
    m["thrashing_reason_kills"] = (sum(1 for x in reported if x["reason"] in THRASHING_REASONS)
                                   if res.get("daemon_connected") else None)
    m["first_kill_thrashing_pct"] = reported[0].get("thrashing") if reported else None
    rss = [s["daemon_rss_kb"] for s in samples if s.get("daemon_rss_kb", -1) >= 0]
    lck = [s["daemon_lck_kb"] for s in samples if s.get("daemon_lck_kb", -1) >= 0]
    m["daemon_peak_rss_kb"] = int(max(rss)) if rss else None
    m["daemon_peak_lck_kb"] = int(max(lck)) if lck else None
    cnt = read(os.path.join(d, "strace.count")).strip()
    m["daemon_mmap_calls"] = int(cnt) if cnt.isdigit() else None
    m["daemon_state"] = read(os.path.join(d, "daemon.state")).strip() or None
    threads = killer_threads(d)
    m["killer_threads"] = threads
    m["killer_faults"] = per_role(threads, "faults") if threads else None
    m["killer_direct_reclaims"] = per_role(threads, "direct_reclaims") if threads else None
    m["killer_cpu_ms"] = per_role(threads, "cpu_ms") if threads else None
    m["killer_reclaim_traced"] = os.path.exists(os.path.join(d, "killer-reclaim.trace"))
    m["memstall_ms"] = memstall(read(os.path.join(d, "stall.trace")), {t["tid"] for t in threads or []})
    m["daemon_rss_kb"], m["daemon_locked_kb"] = smaps_rollup(d)
    deaths = res.get("deaths", [])
    adjs = [x["adj"] for x in deaths]
    m["kills_in_adj_order"] = all(a >= b for a, b in zip(adjs, adjs[1:])) if deaths else None
    m["foreground_deaths"] = sum(1 for x in deaths if x["adj"] <= 0)
    m["min_mem_free_mb"] = round(min(s["mem_free_kb"] for s in samples) / 1024) if samples else None
    m["min_swap_free_mb"] = round(min(s["swap_free_kb"] for s in samples) / 1024) if samples else None
    if res.get("steady_daemon"):
        m["soak"], m["soak_failures"] = soak(d, res, samples)
    if threads is not None:
        # One line per killer thread, for tests that read no JSON.
        with open(os.path.join(d, "killer-threads.tsv"), "w") as f:
            f.write("role\tcomm\ttid\tfaults\tdirect_reclaims\treclaim_entries\tfault_sites\n")
            for t in threads:
                entries = ",".join(f"{st['count']}x{st['entry']}" for st in t["reclaim_stacks"]) or "-"
                rec = t["direct_reclaims"] if m["killer_reclaim_traced"] else "?"
                sites = "; ".join(t["fault_sites"]) or "-"
                f.write(f"{t['role']}\t{t['comm']}\t{t['tid']}\t{fmt(t['faults'])}\t{rec}\t{entries}\t{sites}\n")
    with open(os.path.join(d, "metrics.json"), "w") as f:
        json.dump(m, f, indent=1)
        f.write("\n")
    with open(os.path.join(d, "plot.svg"), "w") as f:
        f.write(svg(res, samples))
    return m


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


CAUSE_COLOUR = {"lmkd": "#c0392b", "kernel-oom": "#000000"}


def svg(res, samples):
    """Two panels sharing a time axis: memory (MiB) and PSI (stall % per
    sample interval), with a vertical marker per death labelled by adj."""
    W, H, L, R, T = 900, 520, 60, 20, 40
    ph = 190  # panel height
    gap = 50
    t0 = res.get("t0_mono_ms") or (samples[0]["t_ms"] if samples else 0)
    pts = [(s["t_ms"] - t0) / 1000 for s in samples]
    deaths = res.get("deaths", [])
    tmax = max(pts + [x["t_ms"] / 1000 for x in deaths] + [1])
    tmin = min(pts + [0])
    x = lambda t: L + (t - tmin) / (tmax - tmin) * (W - L - R)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="20" font-size="14">{esc(res.get("scenario"))} under {esc(res.get("killer"))}: '
         f'{"PASS" if res.get("pass") else "FAIL"}, {res.get("deaths_total", 0)} deaths, '
         f'kernel OOM kills {res.get("kernel_oom_kills", "?")}</text>']

    def panel(top, title, series, ymax, unit):
        ymax = ymax or 1
        y = lambda v: top + ph - max(0, min(v, ymax)) / ymax * ph
        o.append(f'<rect x="{L}" y="{top}" width="{W - L - R}" height="{ph}" fill="none" stroke="#999"/>')
        o.append(f'<text x="{L}" y="{top - 6}">{esc(title)}</text>')
        for frac in (0, 0.5, 1):
            o.append(f'<text x="{L - 6}" y="{y(ymax * frac) + 4}" text-anchor="end">{ymax * frac:.0f}{unit}</text>')
        lx = W - R - 150
        for i, (name, colour, vals) in enumerate(series):
            if vals:
                path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(pts, vals) if v is not None)
                o.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>')
            o.append(f'<text x="{lx}" y="{top + 14 + 13 * i}" fill="{colour}">{esc(name)}</text>')

    mem = lambda k: [s[k] / 1024 if s[k] >= 0 else None for s in samples]
    memmax = max([v for k in ("mem_free_kb", "mem_avail_kb", "swap_free_kb", "cached_kb")
                  for v in (mem(k) if samples else []) if v is not None] + [1])
    panel(T + 10, "memory (MiB)", [("MemFree", "#2471a3", mem("mem_free_kb")),
                                   ("MemAvailable", "#76d7c4", mem("mem_avail_kb")),
                                   ("page cache", "#b7950b", mem("cached_kb")),
                                   ("SwapFree", "#8e44ad", mem("swap_free_kb"))], memmax, "")

    def stall(key):
        out = [None]
        for a, b in zip(samples, samples[1:]):
            dt = (b["t_ms"] - a["t_ms"]) * 1000
            out.append(100 * (b[key] - a[key]) / dt if dt > 0 else None)
        return out if samples else []

    top2 = T + 10 + ph + gap
    panel(top2, "memory pressure (% of each interval stalled)",
          [("some", "#e67e22", stall("some_total_us")), ("full", "#c0392b", stall("full_total_us"))], 100, "%")
    for t_tick in range(int(tmin), int(tmax) + 1, max(1, int((tmax - tmin) / 10))):
        o.append(f'<text x="{x(t_tick):.1f}" y="{top2 + ph + 14}" text-anchor="middle">{t_tick}s</text>')
    for i, dth in enumerate(deaths):
        xx = x(dth["t_ms"] / 1000)
        colour = CAUSE_COLOUR.get(dth["cause"], "#7f8c8d")
        o.append(f'<line x1="{xx:.1f}" y1="{T + 10}" x2="{xx:.1f}" y2="{top2 + ph}" stroke="{colour}" '
                 f'stroke-dasharray="3,2"/>')
        label = f'{dth["adj"]}' + ("" if dth["cause"] == "lmkd" else f' {dth["cause"]}')
        o.append(f'<text x="{xx + 2:.1f}" y="{T + 22 + (i % 8) * 11}" fill="{colour}">{esc(label)}</text>')
    o.append(f'<text x="{L}" y="{H - 6}" fill="#555">dashed lines: deaths labelled by adj '
             f'(red: killed by lmkd, black: kernel OOM, grey: other signal/exit)</text>')
    o.append("</svg>\n")
    return "\n".join(o)


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, dict):
        return " ".join(f"{k}:{n}" for k, n in v.items()) or "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def spread(vals):
    """Median and range of the runs' numbers: "1280 (1100-1300)"."""
    xs = [int(v) if float(v).is_integer() else v for v in vals
          if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not xs:
        return "-"
    med = statistics.median(xs)
    med = int(med) if float(med).is_integer() else round(med, 1)
    return f"{med}" if min(xs) == max(xs) else f"{med} ({min(xs)}-{max(xs)})"


def count_true(vals):
    xs = [v for v in vals if v is not None]
    return f"{sum(1 for v in xs if v)}/{len(xs)}" if xs else "-"


def per_run(vals):
    return ", ".join(fmt(v) for v in vals) or "-"


def role_pair(m, r):
    """Faults/direct reclaims of one role's threads in one run, "f/r"."""
    f, d = m.get("killer_faults"), m.get("killer_direct_reclaims")
    if f is None:
        return "-"
    if r not in f and r not in (d or {}):
        return "n/a"
    rec = (d or {}).get(r, 0) if m.get("killer_reclaim_traced") else "?"
    return f"{f.get(r, '?')}/{rec}"


def stall_cell(ms, src):
    """One source's memstall over the runs that traced it (STALL_TRACE=1)."""
    return spread([(m.get("memstall_ms") or {}).get(src) for m in ms])


# (label, how the runs of one killer are folded into one cell; a row whose
# cells are all "-" is left out)
ROWS = [
    ("runs passed", lambda ms: count_true([m.get("pass") for m in ms])),
    ("onset -> first kill (ms)", lambda ms: spread([m.get("onset_to_first_kill_ms") for m in ms])),
    ("PSI some total (ms)", lambda ms: spread([m.get("psi_some_ms") for m in ms])),
    ("  before the first kill", lambda ms: spread([m.get("psi_some_before_first_kill_ms") for m in ms])),
    ("  after it", lambda ms: spread([m.get("psi_some_after_first_kill_ms") for m in ms])),
    ("PSI full total (ms)", lambda ms: spread([m.get("psi_full_ms") for m in ms])),
    ("kills (all deaths)", lambda ms: spread([m.get("deaths_total") for m in ms])),
    ("  by the daemon", lambda ms: spread([m.get("daemon_kills") for m in ms])),
    ("  giving a thrashing reason", lambda ms: spread([m.get("thrashing_reason_kills") for m in ms])),
    ("thrashing % reported at the first kill", lambda ms: spread([m.get("first_kill_thrashing_pct") for m in ms])),
    ("guest file refaults before it (pages)", lambda ms: spread([m.get("refaults_before_first_kill") for m in ms])),
    ("kills in adj order", lambda ms: count_true([m.get("kills_in_adj_order") for m in ms])),
    ("kernel OOM kills", lambda ms: spread([m.get("kernel_oom_kills") for m in ms])),
    ("foreground (adj<=0) deaths", lambda ms: spread([m.get("foreground_deaths") for m in ms])),
    ("memstall task-ms: kswapd", lambda ms: stall_cell(ms, "kswapd")),
    ("  kcompactd", lambda ms: stall_cell(ms, "kcompactd")),
    ("  the killer", lambda ms: stall_cell(ms, "killer")),
    ("  the rest (apps)", lambda ms: stall_cell(ms, "rest")),
    ("core thread CPU (ms)", lambda ms: spread([(m.get("killer_cpu_ms") or {}).get("core") for m in ms])),
    ("core thread faults/reclaims", lambda ms: per_run([role_pair(m, "core") for m in ms])),
    ("reaper threads faults/reclaims", lambda ms: per_run([role_pair(m, "reaper") for m in ms])),
    ("namer thread faults/reclaims", lambda ms: per_run([role_pair(m, "namer") for m in ms])),
    ("other threads faults/reclaims", lambda ms: per_run([role_pair(m, "other") for m in ms])),
    ("killer Rss, smaps_rollup (kB)", lambda ms: spread([m.get("daemon_rss_kb") for m in ms])),
    ("killer Locked (kB)", lambda ms: spread([m.get("daemon_locked_kb") for m in ms])),
    ("killer peak VmRSS (kB)", lambda ms: spread([m.get("daemon_peak_rss_kb") for m in ms])),
    ("min MemFree (MiB)", lambda ms: spread([m.get("min_mem_free_mb") for m in ms])),
    ("min SwapFree (MiB)", lambda ms: spread([m.get("min_swap_free_mb") for m in ms])),
    ("killer mmap-family calls", lambda ms: per_run([m.get("daemon_mmap_calls") for m in ms])),
    ("killer alive at end", lambda ms: count_true([m.get("daemon_state") == "alive" for m in ms
                                                   if m.get("daemon_state")])),
]


def load_runs(dirs):
    """[(killer, dir, metrics)] in the order given."""
    runs = []
    for d in dirs:
        p = os.path.join(d, "metrics.json")
        if not os.path.exists(p) and os.path.exists(os.path.join(d, "result.json")):
            summarize(d)
        m = json.loads(read(p, "{}") or "{}")
        runs.append((m.get("killer") or os.path.basename(d.rstrip("/")), d, m))
    return runs


def compare(dirs, svg_path=None):
    runs = load_runs(dirs)
    groups = {}
    for k, d, m in runs:
        groups.setdefault(k, []).append(m)
    head = ["metric (median (range) over runs)"] + [f"{k} ({len(ms)} runs)" for k, ms in groups.items()]
    rows = [[label] + [f([m for m in ms if m]) if any(ms) else "no run" for ms in groups.values()]
            for label, f in ROWS]
    rows = [r for r in rows if any(c != "-" for c in r[1:])]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    print()
    print("Killer threads that faulted or entered direct reclaim (per run):")
    for k, d, m in runs:
        for t in m.get("killer_threads") or []:
            if t.get("faults") or t.get("direct_reclaims"):
                print(f"- {k} {os.path.basename(d.rstrip('/'))}: thread {t['comm']} ({t['role']}, tid {t['tid']}): "
                      f"{fmt(t['faults'])} faults, {t['direct_reclaims']} direct reclaims")
                for st in t.get("reclaim_stacks", []):
                    print(f"    {st['count']}x from {st['entry']}: {st['frames']}")
                if t["role"] in ("core", "reaper"):
                    for site in t.get("fault_sites", [])[:5]:
                        print(f"    fault: {site}")
    for k, d, m in runs:
        for f in m.get("failures", []) if m else []:
            print(f"{k} {os.path.basename(d.rstrip('/'))}: FAIL: {f}")
    if svg_path:
        with open(svg_path, "w") as f:
            f.write(svg_compare(runs))


KILLER_COLOUR = {"lmkd-rs": "#c0392b", "aosp": "#2471a3", "earlyoom": "#27ae60", "none": "#7f8c8d"}


def colour(killer):
    """A killer's colour; lmkd-rs@VARIANT runs share one of their own."""
    if killer.startswith("lmkd-rs@"):
        return "#e67e22"
    return KILLER_COLOUR.get(killer, "#000")


def svg_compare(runs):
    """Every run of every killer in one picture: cumulative PSI "some" stall
    and MemAvailable over time, and each run's deaths as ticks (labelled
    with the victim's adj) on a row per run."""
    W, L, R, T, ph, gap = 960, 60, 170, 40, 200, 50
    series = []
    for k, d, m in runs:
        res = json.loads(read(os.path.join(d, "result.json"), "{}") or "{}")
        samples = load_samples(d)
        t0 = res.get("t0_mono_ms") or (samples[0]["t_ms"] if samples else 0)
        pts = [((s["t_ms"] - t0) / 1000, s) for s in samples if s["t_ms"] >= t0]
        series.append((k, os.path.basename(d.rstrip("/")), pts, res.get("deaths", [])))
    rows = len(series)
    H = T + 2 * (ph + gap) + 16 * rows + 40
    tmax = max([p[-1][0] for _, _, p, _ in series if p] + [x["t_ms"] / 1000 for *_, ds in series for x in ds] + [1])
    x = lambda t: L + max(0, t) / tmax * (W - L - R)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="20" font-size="14">{esc(runs[0][2].get("scenario") if runs else "")}: '
         f'{esc(", ".join(dict.fromkeys(k for k, _, _ in runs)))}</text>']

    def panel(top, title, key_fn, unit):
        vals = [key_fn(s, first) for _, _, pts, _ in series for first in [pts[0][1] if pts else None]
                for _, s in pts]
        ymax = max([v for v in vals if v is not None] + [1])
        y = lambda v: top + ph - min(v, ymax) / ymax * ph
        o.append(f'<rect x="{L}" y="{top}" width="{W - L - R}" height="{ph}" fill="none" stroke="#999"/>')
        o.append(f'<text x="{L}" y="{top - 6}">{esc(title)}</text>')
        for frac in (0, 0.5, 1):
            o.append(f'<text x="{L - 6}" y="{y(ymax * frac) + 4}" text-anchor="end">{ymax * frac:.1f}{unit}</text>')
        for k, name, pts, _ in series:
            if not pts:
                continue
            first = pts[0][1]
            path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, s in pts for v in [key_fn(s, first)] if v is not None)
            o.append(f'<polyline fill="none" stroke="{colour(k)}" stroke-width="1.2" '
                     f'stroke-opacity="0.8" points="{path}"><title>{esc(name)}</title></polyline>')

    panel(T + 10, "memory PSI some, cumulative stall since the driver started (s)",
          lambda s, f: (s["some_total_us"] - f["some_total_us"]) / 1e6, "s")
    top2 = T + 10 + ph + gap
    panel(top2, "MemAvailable (MiB)", lambda s, f: s["mem_avail_kb"] / 1024 if s["mem_avail_kb"] >= 0 else None, "")
    for t_tick in range(0, int(tmax) + 1, max(1, int(tmax / 10))):
        o.append(f'<text x="{x(t_tick):.1f}" y="{top2 + ph + 14}" text-anchor="middle">{t_tick}s</text>')
    top3 = top2 + ph + 30
    for i, (k, name, _, deaths) in enumerate(series):
        yy = top3 + 16 * i
        run_colour = colour(k)
        o.append(f'<text x="{W - R + 6}" y="{yy + 4}" fill="{run_colour}">{esc(name)}</text>')
        o.append(f'<line x1="{L}" y1="{yy}" x2="{W - R}" y2="{yy}" stroke="#ddd"/>')
        for dth in deaths:
            xx = x(dth["t_ms"] / 1000)
            c = "#000" if dth["cause"] == "kernel-oom" else run_colour
            o.append(f'<line x1="{xx:.1f}" y1="{yy - 6}" x2="{xx:.1f}" y2="{yy + 6}" stroke="{c}" stroke-width="2">'
                     f'<title>{esc(dth["app"])} adj {dth["adj"]} {esc(dth["cause"])} at {dth["t_ms"]} ms</title></line>')
    ly = T
    for k in dict.fromkeys(k for k, _, _ in runs):
        o.append(f'<text x="{W - R + 6}" y="{ly + 24}" fill="{colour(k)}">{esc(k)}</text>')
        ly += 14
    o.append(f'<text x="{L}" y="{H - 6}" fill="#555">bottom rows: deaths per run (black: kernel OOM); '
             f'hover a tick for app, adj and cause</text>')
    o.append("</svg>\n")
    return "\n".join(o)


def main(argv):
    if len(argv) >= 3 and argv[1] == "summarize":
        failed = False
        for d in argv[2:]:
            m = summarize(d)
            print(f"report: {d}/metrics.json, {d}/plot.svg (onset->first kill {fmt(m['onset_to_first_kill_ms'])} ms, "
                  f"kernel OOM kills {fmt(m['kernel_oom_kills'])})")
            if "soak" in m:
                s = m["soak"]
                print(f"soak: cycles {fmt(s['cycles'])} (relieved by the daemon {fmt(s['cycles_relieved'])}), "
                      f"storm {fmt(s['storm_packets'])} PROCPRIO packets, "
                      f"daemon fds {fmt(s['daemon_fds_start'])} -> {fmt(s['daemon_fds_end'])}, "
                      f"VmRSS {fmt(s['daemon_rss_start_kb'])} -> {fmt(s['daemon_rss_after_cycle1_kb'])} (cycle 1) "
                      f"-> {fmt(s['daemon_rss_end_kb'])} kB, RssAnon {fmt(s['daemon_rss_anon_start_kb'])} -> "
                      f"{fmt(s['daemon_rss_anon_end_kb'])} kB, RssShmem+RssFile "
                      f"{fmt(add(s['daemon_rss_shmem_start_kb'], s['daemon_rss_file_start_kb']))} -> "
                      f"{fmt(add(s['daemon_rss_shmem_end_kb'], s['daemon_rss_file_end_kb']))} kB "
                      f"(peak {fmt(s['daemon_rss_max_kb'])}), kernel OOM kills {fmt(s['kernel_oom_kills'])}, "
                      f"run {s['run_s']} s: {'FAIL' if m['soak_failures'] else 'PASS'}")
                for f in m["soak_failures"]:
                    print(f"soak: FAIL: {f}")
                failed = failed or bool(m["soak_failures"])
        # 1: a check this script owns failed (run.sh turns a pass into a fail).
        return 1 if failed else 0
    if len(argv) >= 3 and argv[1] == "compare":
        args, svg_path = argv[2:], None
        if args[0] == "--svg" and len(args) >= 3:
            svg_path, args = args[1], args[2:]
        compare(args, svg_path)
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
