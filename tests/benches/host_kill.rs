//! Wakeup -> SIGKILL latency under real host pressure, lmkd-rs beside a
//! reference lmkd when one is given (issue 10).
//!
//! Each round runs the tests' real-pressure rig (`common::pressure`: a
//! memory cgroup v1 group with a limit, zram swap, a hog at adj 950 that
//! grows until killed, the daemon watching the group's PSI with thresholds
//! 70 ms partial / 150 ms complete) once per daemon, the daemons taking
//! turns. The reference reads only `/proc/pressure/memory`, so it runs with
//! the group's `memory.pressure` bound over that path in a mount namespace
//! of its own, and gets the same thresholds as properties.
//!
//! `perf trace` (syscall tracepoints, no ptrace stops) records the epoll
//! waits and signal syscalls (their exit tracepoints); the figure is the
//! time from the return of the last epoll wait of the daemon's main thread
//! (where both wait for events) to the return of the first successful
//! signal syscall (`pidfd_send_signal` or `kill`: both daemons signal only
//! to kill), whichever thread sends it (AOSP lmkd hands the signal to a
//! reaper thread; lmkd-rs sends it from the core). Both daemons run under
//! the same tracer, whose cost lands on the traced syscalls of both.
//!
//! Run: `cargo bench --bench host_kill` (root, cgroup v1 memory, cgroup2,
//! zram, perf; skips otherwise). `LMKD_HOST_KILL_ROUNDS` (default 5).
//! Reference: `-- --reference PATH` or env `LMKD_REFERENCE=PATH` (see
//! `common::reference`).

#[path = "../common/mod.rs"]
mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pressure::*;
use common::reference;
use common::{subscribe_all, Daemon, TempDir};
use lmkd::client::Message;
use lmkd::proto;

/// Syscall exits traced: a wait that began before the trace still shows
/// its return time (perf's syscall view prints `?` for it).
const EVENTS: [&str; 5] = [
    "syscalls:sys_exit_epoll_wait",
    "syscalls:sys_exit_epoll_pwait",
    "syscalls:sys_exit_epoll_pwait2",
    "syscalls:sys_exit_pidfd_send_signal",
    "syscalls:sys_exit_kill",
];

/// `perf trace` of the whole machine (attaching to one process counts
/// nothing on this kernel), kept to the daemon's threads when read;
/// stopped with SIGINT so it flushes.
struct Tracer {
    child: Child,
    out: std::path::PathBuf,
    pid: u32,
}

impl Tracer {
    fn attach(pid: u32, out: &Path) -> Result<Tracer, String> {
        let child = Command::new("perf")
            // -T: absolute times (relative ones wrap for an event that
            // another CPU reports late).
            .args(["trace", "-a", "-T", "--no-syscalls", "-e"])
            .arg(EVENTS.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // perf trace writes its lines to stderr.
            .stderr(fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?)
            .spawn()
            .map_err(|e| format!("spawn perf: {e}"))?;
        // perf needs a moment to open its events.
        std::thread::sleep(Duration::from_millis(1500));
        Ok(Tracer {
            child,
            out: out.to_path_buf(),
            pid,
        })
    }

    /// The daemon's traced syscalls.
    fn stop(mut self) -> Vec<Event> {
        let tids: Vec<u32> = fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let text = fs::read_to_string(&self.out).unwrap_or_default();
        events(&text)
            .into_iter()
            .filter(|e| tids.contains(&e.tid))
            .collect()
    }
}

/// One traced syscall that returned.
struct Event {
    tid: u32,
    name: String,
    /// Return time, us (CLOCK_MONOTONIC).
    ret_us: f64,
    line: String,
}

fn events(trace: &str) -> Vec<Event> {
    let mut out = vec![];
    for l in trace.lines() {
        // "  12.345 comm/tid syscalls:sys_exit_NAME(__syscall_nr: N, ret: R)"
        let mut w = l.split_whitespace();
        let (Some(ts), Some(who), Some(ev)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let (Ok(ts), Some(tid), Some(name)) = (
            ts.parse::<f64>(),
            who.rsplit('/').next().and_then(|t| t.parse().ok()),
            ev.strip_prefix("syscalls:sys_exit_")
                .and_then(|e| e.split('(').next()),
        ) else {
            continue;
        };
        out.push(Event {
            tid,
            name: name.to_string(),
            ret_us: ts * 1e3,
            line: l.to_string(),
        });
    }
    out
}

/// From the return of the last epoll wait of the daemon's main thread
/// (`main`, where both daemons wait for events) before the first SIGKILL,
/// to that signal's return, in us. The signal may come from another thread
/// (AOSP lmkd hands it to a reaper thread), so this spans the hand-off.
fn wakeup_to_signal(ev: &[Event], main: u32) -> Option<f64> {
    // Both daemons send signals only to kill (SIGKILL).
    let sig = ev.iter().find(|e| {
        // perf leaves out `ret` when it is 0.
        matches!(e.name.as_str(), "pidfd_send_signal" | "kill") && !e.line.contains("ret:")
    })?;
    let wake = ev
        .iter()
        .filter(|e| e.tid == main && e.name.starts_with("epoll") && e.ret_us < sig.ret_us)
        .map(|e| e.ret_us)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))?;
    Some(sig.ret_us - wake)
}

struct Round {
    us: Option<f64>,
    kill_s: f64,
    trace: Vec<Event>,
}

fn ours(memcg_root: &Path, dir: &TempDir) -> Result<Round, String> {
    let mut rig = Rig::start(memcg_root, "host-kill-bench");
    let pid = rig.d.child.id();
    let tracer = Tracer::attach(pid, &dir.path("rs.trace"))?;
    let go = rig.go();
    let seen = rig.wait_kill(go, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    let trace = tracer.stop();
    let seen = seen?;
    if seen.kill.pid != rig.hog.pid() {
        return Err("the kill was not the hog".into());
    }
    if rig.memcg_oom_kills() != Some(0) {
        return Err("the kernel OOM killer acted".into());
    }
    Ok(Round {
        us: wakeup_to_signal(&trace, pid),
        kill_s: seen.kill_at.as_secs_f64(),
        trace,
    })
}

fn theirs(memcg_root: &Path, dir: &TempDir, lmkd: &Path) -> Result<Round, String> {
    let g = Groups::create(memcg_root, "host-kill-bench");
    let d = reference::reference_on(
        dir,
        lmkd,
        Some(&g.pressure_file),
        "ro.lmk.psi_partial_stall_ms=70\nro.lmk.psi_complete_stall_ms=150\n",
    )?;
    let c = d.connect()?;
    subscribe_all(&c);
    let mut hog = spawn_hog(&g.memcg, &g.v2, &g.file);
    // The 4-argument PROCPRIO every lmkd reads.
    let w = [
        proto::id::PROCPRIO,
        hog.pid(),
        10_000,
        950,
        proto::ptype::APP,
    ];
    c.send_raw(&common::words(&w)).map_err(|e| e.to_string())?;
    Daemon::sync(&c);
    let tracer = Tracer::attach(d.pid(), &dir.path("ref.trace"))?;
    let go = Instant::now();
    hog.0.stdin.as_mut().unwrap().write_all(b"g").unwrap();
    // Its PROCKILL notification, as the rig waits for lmkd-rs's.
    let mut kill_s = None;
    while kill_s.is_none() && go.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(Message::Kill(k))) = c.recv(Some(Duration::from_millis(100))) {
            if k.pid == hog.pid() {
                kill_s = Some(go.elapsed().as_secs_f64());
            }
        }
    }
    let exited = hog.wait_exit(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));
    let trace = tracer.stop();
    let log = fs::read_to_string(&d.log).unwrap_or_default();
    let (Some(kill_s), Some(_)) = (kill_s, exited) else {
        return Err(format!("no kill within 60 s; lmkd log:\n{log}"));
    };
    let oom = keyed(&read_trim(&g.memcg.file("memory.oom_control")), "oom_kill");
    if oom != Some(0) {
        return Err(format!("the kernel OOM killer acted; lmkd log:\n{log}"));
    }
    if !log.contains(&format!("({})", hog.pid())) {
        return Err(format!("lmkd did not log a kill of the hog:\n{log}"));
    }
    Ok(Round {
        us: wakeup_to_signal(&trace, d.pid()),
        kill_s,
        trace,
    })
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    child_main();
    if !common::need_root("bench host_kill") {
        return;
    }
    let memcg_root = match rig_prerequisites() {
        Ok(p) => p,
        Err(why) => return common::skip("bench host_kill", &why),
    };
    if Command::new("perf").arg("--version").output().is_err() {
        return common::skip("bench host_kill", "no perf on PATH");
    }
    let rounds: usize = std::env::var("LMKD_HOST_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let reference = reference::path();
    if reference.is_none() {
        println!("no reference lmkd (pass --reference PATH or LMKD_REFERENCE): lmkd-rs alone");
    }
    let _serial = serial();
    let zram = match ZramSwap::setup(ZRAM_MIB) {
        Ok(z) => z,
        Err(why) => return common::skip("bench host_kill", &format!("zram swap: {why}")),
    };
    let names = ["lmkd-rs", "AOSP lmkd"];
    let mut us: [Vec<f64>; 2] = [vec![], vec![]];
    let mut kill_s: [Vec<f64>; 2] = [vec![], vec![]];
    for round in 0..rounds {
        for k in 0..2 {
            let which = (k + round) % 2;
            let dir = TempDir::new("bench-host-kill");
            let r = match (which, &reference) {
                (0, _) => ours(&memcg_root, &dir),
                (_, Some(p)) => theirs(&memcg_root, &dir, p),
                _ => continue,
            };
            match r {
                Ok(r) => {
                    println!(
                        "round {:2} {:<10} wakeup -> SIGKILL {:>8} us, hog start -> PROCKILL {:5.2} s",
                        round + 1,
                        names[which],
                        r.us.map_or("?".into(), |v| format!("{v:.0}")),
                        r.kill_s
                    );
                    match r.us {
                        Some(v) => us[which].push(v),
                        None => {
                            println!("  no wakeup and signal in the trace; it holds:");
                            for e in &r.trace {
                                println!("  {}", e.line);
                            }
                        }
                    }
                    kill_s[which].push(r.kill_s);
                }
                Err(e) => println!("round {:2} {:<10} failed: {e}", round + 1, names[which]),
            }
        }
    }
    drop(zram);
    println!("medians (perf trace on both; {rounds} rounds each):");
    for which in 0..2 {
        if us[which].is_empty() {
            continue;
        }
        println!(
            "  {:<10} wakeup -> SIGKILL {:>6.0} us (n={}, min {:.0}, max {:.0}), hog start -> PROCKILL {:.2} s",
            names[which],
            median(&us[which]),
            us[which].len(),
            us[which].iter().copied().fold(f64::INFINITY, f64::min),
            us[which].iter().copied().fold(0.0, f64::max),
            median(&kill_s[which]),
        );
    }
    if !us[1].is_empty() && !us[0].is_empty() {
        println!(
            "  ratio lmkd-rs / AOSP lmkd (wakeup -> SIGKILL): {} (goal: lmkd-rs <= 300 us)",
            reference::ratio(median(&us[0]), median(&us[1]))
        );
        println!(
            "  ratio lmkd-rs / AOSP lmkd (hog start -> PROCKILL): {}",
            reference::ratio(median(&kill_s[0]), median(&kill_s[1]))
        );
    }
}
