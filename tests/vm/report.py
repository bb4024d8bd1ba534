#!/usr/bin/env python3
"""Metrics, pictures and side-by-side tables for VM bench runs (stdlib only).

    report.py summarize OUTDIR          -> OUTDIR/metrics.json, OUTDIR/plot.svg
    report.py compare OUTDIR [OUTDIR..] -> a table on stdout

OUTDIR is what tests/vm/run.sh leaves: result.json from the driver,
samples.csv from the sampler, and the guest's before/after counters.
"""

import csv
import json
import os
import sys

# A sample interval whose memory "some" stall exceeds this share marks the
# onset of pressure (a few ms of stall happen on an idle VM too).
ONSET_STALL_SHARE = 0.05


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
    # Onset: first interval in the run whose "some" stall share passes the bar.
    onset = None
    for prev, cur in zip(samples, samples[1:]):
        dt = (cur["t_ms"] - prev["t_ms"]) * 1000
        if t0 is not None and cur["t_ms"] < t0:
            continue
        if dt > 0 and (cur["some_total_us"] - prev["some_total_us"]) / dt > ONSET_STALL_SHARE:
            onset = cur["t_ms"] - (t0 or 0)
            break
    m["pressure_onset_ms"] = onset
    first = res.get("first_death_ms")
    m["first_kill_ms"] = first
    m["onset_to_first_kill_ms"] = (first - onset) if first is not None and onset is not None else None
    rss = [s["daemon_rss_kb"] for s in samples if s.get("daemon_rss_kb", -1) >= 0]
    lck = [s["daemon_lck_kb"] for s in samples if s.get("daemon_lck_kb", -1) >= 0]
    m["daemon_peak_rss_kb"] = int(max(rss)) if rss else None
    m["daemon_peak_lck_kb"] = int(max(lck)) if lck else None
    cnt = read(os.path.join(d, "strace.count")).strip()
    m["daemon_mmap_calls"] = int(cnt) if cnt.isdigit() else None
    m["daemon_state"] = read(os.path.join(d, "daemon.state")).strip() or None
    m["min_mem_free_mb"] = round(min(s["mem_free_kb"] for s in samples) / 1024) if samples else None
    m["min_swap_free_mb"] = round(min(s["swap_free_kb"] for s in samples) / 1024) if samples else None
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


COLUMNS = [
    ("pass", "pass"),
    ("pressure onset (ms)", "pressure_onset_ms"),
    ("onset -> first kill (ms)", "onset_to_first_kill_ms"),
    ("deaths total", "deaths_total"),
    ("by daemon", "daemon_kills"),
    ("kernel OOM kills", "kernel_oom_kills"),
    ("deaths per adj", "kills_per_adj"),
    ("foreground survived", "foreground_survived"),
    ("PSI some total (ms)", "psi_some_ms"),
    ("PSI full total (ms)", "psi_full_ms"),
    ("min MemFree (MiB)", "min_mem_free_mb"),
    ("min SwapFree (MiB)", "min_swap_free_mb"),
    ("daemon peak VmRSS (kB)", "daemon_peak_rss_kb"),
    ("daemon peak VmLck (kB)", "daemon_peak_lck_kb"),
    ("daemon mmap-family calls", "daemon_mmap_calls"),
    ("daemon at end", "daemon_state"),
]


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, dict):
        return " ".join(f"{k}:{n}" for k, n in v.items()) or "none"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def compare(dirs):
    runs = []
    for d in dirs:
        p = os.path.join(d, "metrics.json")
        if not os.path.exists(p) and os.path.exists(os.path.join(d, "result.json")):
            summarize(d)
        m = json.loads(read(p, "{}") or "{}")
        runs.append((m.get("killer") or os.path.basename(d.rstrip("/")), m))
    head = ["metric"] + [k for k, _ in runs]
    rows = [[label] + [fmt(m.get(key)) if m else "no run" for _, m in runs] for label, key in COLUMNS]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"
    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))
    for k, m in runs:
        for f in m.get("failures", []) if m else []:
            print(f"{k}: FAIL: {f}")


def main(argv):
    if len(argv) >= 3 and argv[1] == "summarize":
        for d in argv[2:]:
            m = summarize(d)
            print(f"report: {d}/metrics.json, {d}/plot.svg (onset->first kill {fmt(m['onset_to_first_kill_ms'])} ms, "
                  f"kernel OOM kills {fmt(m['kernel_oom_kills'])})")
        return 0
    if len(argv) >= 3 and argv[1] == "compare":
        compare(argv[2:])
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
