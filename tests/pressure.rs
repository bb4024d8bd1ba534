//! The daemon against the real kernel:
//!   1. real memory pressure in a small memory cgroup with zram swap: the
//!      real binary, watching that group's PSI, kills the hog before the
//!      kernel's OOM killer acts, and reports it (log line, stats packet then
//!      PROCKILL, GETKILLCNT) while the sleepers outside survive;
//!   2. a frozen victim (cgroup v1 freezer) has its memory released by the
//!      reaper's `process_mrelease` while it is still frozen; a frozen
//!      victim that only gets SIGKILL keeps its memory until thawed;
//!   3. pid reuse: a registered process dies without PROCREMOVE, a new
//!      process gets its pid, a kill is requested: the newcomer survives,
//!      the stale record is dropped and the kill goes to the next candidate.
//!
//! Root only; each test skips with a message when a facility is missing.
//! The tests run one at a time, across test binaries and benches too
//! (`common::pressure::serial`: they measure memory and pids machine-wide)
//! and undo everything they set up, on failure too (Drop guards): cgroups,
//! zram swap, child processes.
//!
//! The real-pressure rig (memory cgroup, zram swap, the hog) lives in
//! `common::pressure`, shared with the storm bench; test 1 also runs with
//! a PROCPRIO storm from three clients. Child processes (the hog, the
//! memory toucher) are this test binary run again: `child_process_helper`.

mod common;

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::pressure::*;
use common::*;
use lmkd::client::Message;
use lmkd::proto::Command as Cmd;

/// Not a test: the body of the child processes (see
/// `common::pressure::child_main`). With `LMKD_PRESSURE_CHILD` unset (a
/// normal test run) it does nothing.
#[test]
fn child_process_helper() {
    child_main();
}

// ---- 1. real memory pressure -------------------------------------------------

#[test]
fn real_pressure_kills_the_hog_before_the_kernel_oom_killer() {
    real_pressure(
        "real_pressure_kills_the_hog_before_the_kernel_oom_killer",
        false,
    );
}

/// The same while three clients (the subscriber among them) send PROCPRIO
/// as fast as they can: the kill is not starved by the storm.
#[test]
fn real_pressure_kills_the_hog_during_a_procprio_storm() {
    real_pressure("real_pressure_kills_the_hog_during_a_procprio_storm", true);
}

/// Processes the storm re-ranks (adj 100..=800, below the hog and the
/// adj 900 sleeper).
const STORM_TARGETS: usize = 30;

fn real_pressure(test: &str, storm: bool) {
    let _serial = serial();
    if !need_root(test) {
        return;
    }
    let memcg_root = match rig_prerequisites() {
        Ok(p) => p,
        Err(why) => {
            skip(test, &why);
            return;
        }
    };
    let oom_before = vmstat("oom_kill");
    // Drop order (reverse of declaration): storm targets, rig (hog, daemon,
    // cgroups), then swap, so swapoff never has to bring the hog's pages back.
    let _zram = match ZramSwap::setup(ZRAM_MIB) {
        Ok(z) => z,
        Err(why) => {
            skip(test, &format!("zram swap unavailable: {why}"));
            return;
        }
    };
    let mut rig = Rig::start(&memcg_root, if storm { "storm" } else { "pressure" });
    let hog_pid = rig.hog.pid();
    let s900 = Sleeper::new();
    let s0 = Sleeper::new();
    let targets: Vec<Sleeper> = (0..if storm { STORM_TARGETS } else { 0 })
        .map(|_| Sleeper::new())
        .collect();
    let c = rig.c.clone();
    for (pid, adj) in [(s900.pid(), 900), (s0.pid(), 0)] {
        c.send(&Cmd::ProcPrio(prio(pid, adj))).unwrap();
    }
    Daemon::sync(&c);
    assert_eq!(oom_adj(hog_pid), 950);

    let storm = storm.then(|| {
        let mut clients = vec![c.clone()];
        clients.extend((0..2).map(|_| Arc::new(rig.d.connect())));
        for k in &clients[1..] {
            Daemon::sync(k);
        }
        Storm::start(clients, targets.iter().map(Sleeper::pid).collect())
    });
    let go = rig.go();
    let seen = rig.wait_kill(go, Duration::from_secs(45));
    let storm_sent = storm.map(|s| (s.stop(), go.elapsed()));
    let seen = seen.unwrap_or_else(|e| panic!("{e}"));
    let (k, kill_at) = (seen.kill, seen.kill_at);
    let d = &rig.d;
    // Stats packet first, then PROCKILL, both naming the hog.
    let (s, stat_at) = seen
        .stat
        .expect("PROCKILL came without a stats packet before it");
    assert_eq!(
        k.pid,
        hog_pid,
        "the first kill was not the hog; daemon log:\n{}",
        d.log_text()
    );
    assert_eq!(k.uid, 10_000);
    assert_eq!(s.oom_score_adj, 950);
    assert_eq!(s.uid, 10_000);
    assert!(s.reason >= 0, "stats packet without a reason: {}", s.reason);
    assert!(stat_at <= kill_at);
    let status = rig
        .hog
        .wait_exit(Duration::from_secs(10))
        .expect("hog still alive");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "hog ended by {status}"
    );
    let d = &rig.d;

    // The kill line, with its reason.
    let needle = format!("({hog_pid}), uid 10000, oom_score_adj 950 to free ");
    let log = d.wait_log(&needle, Duration::from_secs(5));
    let line = log
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap()
        .to_string();
    assert!(line.contains("Kill '"), "kill line: {line}");
    let reason = line.split("; reason: ").nth(1).unwrap_or("").trim();
    assert!(!reason.is_empty(), "kill line without a reason: {line}");

    // No second kill: the sleepers outlive the next PSI window.
    let settle = Instant::now() + Duration::from_millis(3000);
    while Instant::now() < settle {
        if let Some(Message::Kill(k2)) = c.recv(Some(Duration::from_millis(100))).unwrap() {
            panic!(
                "a second kill after the hog: pid {} ({})",
                k2.pid,
                d.log_text()
            );
        }
    }
    assert!(alive(s900.pid()), "the adj 900 sleeper was killed");
    assert!(alive(s0.pid()), "the adj 0 sleeper was killed");
    for t in &targets {
        assert!(alive(t.pid()), "a process of the storm was killed");
    }
    let all = |lo, hi| kill_count(&c, lo, hi);
    assert_eq!(all(-1000, 1000), 1, "GETKILLCNT over all adj");
    assert_eq!(all(950, 950), 1, "GETKILLCNT at adj 950");

    // The kernel's OOM killer never acted in the group, nor anywhere.
    let oc = read_trim(&rig.memcg.file("memory.oom_control"));
    assert_eq!(keyed(&oc, "oom_kill"), Some(0), "memcg oom_control:\n{oc}");
    let oom_after = vmstat("oom_kill");
    assert_eq!(
        oom_after, oom_before,
        "/proc/vmstat oom_kill grew during the test (memcg shows 0, so someone else's?)"
    );

    let max_usage = read_trim(&rig.memcg.file("memory.max_usage_in_bytes"))
        .parse::<u64>()
        .unwrap_or(0);
    let memsw = read_trim(&rig.memcg.file("memory.memsw.max_usage_in_bytes"))
        .parse::<u64>()
        .unwrap_or(0);
    let storm_text = match storm_sent {
        Some((n, t)) => format!(
            "; storm: {n} PROCPRIO from 3 clients ({:.0}/s)",
            n as f64 / t.as_secs_f64()
        ),
        None => String::new(),
    };
    eprintln!(
        "real pressure: hog killed {:.2} s after it started (stats packet at {:.2} s){storm_text}; \
         reason code {}, min adj {}, rss {} kB, swap {} MiB; group peak {} MiB, \
         with swap {} MiB; free memory {} MiB, free swap {} MiB\n  {line}\n  pressure: {}",
        kill_at.as_secs_f64(),
        stat_at.as_secs_f64(),
        s.reason,
        s.min_oom_score,
        k.rss_kb,
        s.swap_bytes >> 20,
        max_usage >> 20,
        memsw >> 20,
        s.free_mem_kb / 1024,
        s.free_swap_kb / 1024,
        read_trim(&rig.pressure_file).replace('\n', " | "),
    );
}

// ---- 2. frozen victim --------------------------------------------------------

const FROZEN_MIB: usize = 512;

#[test]
fn frozen_victim_memory_is_released_by_process_mrelease() {
    let _serial = serial();
    let test = "frozen_victim_memory_is_released_by_process_mrelease";
    if !need_root(test) {
        return;
    }
    let freezer = Path::new("/sys/fs/cgroup/freezer");
    if !freezer.join("cgroup.procs").exists() {
        skip(
            test,
            &format!("no cgroup v1 freezer at {}", freezer.display()),
        );
        return;
    }

    // The daemon's way: pidfd from registration, reaper::run = SIGKILL then
    // process_mrelease, on a victim that is frozen the whole time.
    let fz = Cgroup::create(freezer.join(unique("frozen")));
    if !fz.file("freezer.state").exists() {
        skip(test, "freezer groups have no freezer.state");
        return;
    }
    let mut kid = spawn_child("lmkd-test-frozen", &format!("touch:{FROZEN_MIB}"));
    wait_ready(&mut kid);
    let pid = kid.pid();
    fz.add(pid);
    fz.freeze(true);
    let rss_before = rss_kb(pid).unwrap();
    assert!(
        rss_before >= (FROZEN_MIB as u64 * 1024) * 9 / 10,
        "child touched only {rss_before} kB"
    );
    let free_before = meminfo_kb("MemFree");
    let pidfd = lmkd::sys::pidfd_open(pid).expect("pidfd_open");
    let t0 = Instant::now();
    let done = lmkd::reaper::run(
        lmkd::reaper::Job::new(pid, Some(pidfd.as_fd()), false),
        &AtomicBool::new(true),
    );
    let took = t0.elapsed();
    let free_after = meminfo_kb("MemFree");
    let rss_after = rss_kb(pid);
    let state = read_trim(&fz.file("freezer.state"));
    assert!(
        done.signal.is_ok(),
        "pidfd_send_signal failed: {:?}",
        done.signal
    );
    assert_eq!(
        done.finished.map(|f| f.release),
        Some(lmkd::reaper::Release::Released),
        "process_mrelease did not release"
    );
    assert_eq!(state, "FROZEN", "the victim was thawed");
    assert!(
        fz.pids().contains(&pid) && kid.0.try_wait().unwrap().is_none(),
        "the frozen victim exited: the test proves nothing"
    );
    let rss_after = rss_after.expect("no statm for the frozen victim");
    assert!(
        rss_after * 10 <= rss_before,
        "frozen victim kept {rss_after} of {rss_before} kB after process_mrelease"
    );
    let freed_kb = free_after.saturating_sub(free_before);
    eprintln!(
        "frozen + process_mrelease: rss {rss_before} -> {rss_after} kB within {:.1} ms \
         (signal to release {:.1} ms), MemFree +{} MiB, still {state}",
        took.as_secs_f64() * 1e3,
        (done
            .finished
            .map_or(0, |f| f.at_ns)
            .saturating_sub(done.signal.unwrap_or(0))) as f64
            / 1e6,
        freed_kb / 1024,
    );

    // Contrast: SIGKILL alone does nothing to a frozen process's memory
    // until it is thawed.
    let fz2 = Cgroup::create(freezer.join(unique("frozen-sigkill")));
    let mut kid2 = spawn_child("lmkd-test-frozen2", &format!("touch:{FROZEN_MIB}"));
    wait_ready(&mut kid2);
    let pid2 = kid2.pid();
    fz2.add(pid2);
    fz2.freeze(true);
    let rss2_before = rss_kb(pid2).unwrap();
    let pidfd2 = lmkd::sys::pidfd_open(pid2).unwrap();
    lmkd::sys::pidfd_send_signal(pidfd2.as_fd(), libc::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let rss2_after = rss_kb(pid2).unwrap_or(0);
    assert!(
        rss2_after * 10 >= rss2_before * 9,
        "a frozen victim released memory without process_mrelease ({rss2_before} -> {rss2_after} kB)"
    );
    let thaw = Instant::now();
    fz2.freeze(false);
    let st = kid2
        .wait_exit(Duration::from_secs(10))
        .expect("the SIGKILLed victim did not exit after thawing");
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    eprintln!(
        "frozen + SIGKILL only: rss {rss2_before} -> {rss2_after} kB after 1000 ms frozen; \
         exited {:.1} ms after thawing",
        thaw.elapsed().as_secs_f64() * 1e3
    );

    // Thaw the first one too: it exits by the pending SIGKILL.
    fz.freeze(false);
    let st = kid
        .wait_exit(Duration::from_secs(10))
        .expect("victim did not exit");
    assert_eq!(st.signal(), Some(libc::SIGKILL));
}

// ---- 3. pid reuse ------------------------------------------------------------

/// Spawns `sleep` with exactly `pid`, via ns_last_pid; None if another
/// process kept taking it.
fn spawn_at_pid(pid: i32) -> Option<Kid> {
    for _ in 0..50 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let k = Kid(spawn_sleep());
        if k.pid() == pid {
            return Some(k);
        }
    }
    None
}

#[test]
fn reused_pid_survives_and_the_stale_record_is_dropped() {
    let _serial = serial();
    let test = "reused_pid_survives_and_the_stale_record_is_dropped";
    if !need_root(test) {
        return;
    }
    let ns_last_pid = Path::new("/proc/sys/kernel/ns_last_pid");
    if fs::OpenOptions::new()
        .write(true)
        .open(ns_last_pid)
        .is_err()
    {
        skip(test, &format!("{} is not writable", ns_last_pid.display()));
        return;
    }
    logcap::install();
    let d = InProc::real("pidreuse", |cfg, _| cfg.startup.max_procs = 256);
    let c = d.connect();
    subscribe_all(&c);

    // The next candidate after the stale record, and a bystander.
    let next = Kid(spawn_sleep());
    let bystander = Kid(spawn_sleep());
    c.send(&Cmd::ProcPrio(prio(next.pid(), 900))).unwrap();
    c.send(&Cmd::ProcPrio(prio(bystander.pid(), 0))).unwrap();

    // Register, die unannounced (reaped by us, its parent), reuse the pid.
    let mut newcomer = None;
    let mut old_pid = 0;
    for _ in 0..5 {
        let mut old = Kid(spawn_sleep());
        old_pid = old.pid();
        c.send(&Cmd::ProcPrio(prio(old_pid, 950))).unwrap();
        Daemon::sync(&c);
        assert_eq!(oom_adj(old_pid), 950);
        old.0.kill().unwrap();
        old.0.wait().unwrap();
        drop(old);
        newcomer = spawn_at_pid(old_pid);
        if newcomer.is_some() {
            break;
        }
    }
    let newcomer = newcomer.expect("could not get a new process onto a freed pid");
    assert_eq!(newcomer.pid(), old_pid);
    let newcomer_adj = oom_adj(old_pid);
    assert_ne!(
        newcomer_adj, 950,
        "the newcomer inherited nothing from the record"
    );
    let stale_line = format!("process {old_pid} exited without PROCREMOVE; its record was dropped");
    assert!(
        !logcap::text().contains(&stale_line),
        "the record was dropped before the kill request"
    );

    // Request a kill: a critical event (NOT_RESPONDING, min adj 0).
    d.raise_complete();
    let mut got_stat = None;
    let mut got_kill = None;
    let end = Instant::now() + Duration::from_secs(10);
    while got_kill.is_none() && Instant::now() < end {
        match c.recv(Some(Duration::from_millis(100))).unwrap() {
            Some(Message::Stat(s)) => got_stat = Some(s),
            Some(Message::Kill(k)) => got_kill = Some(k),
            _ => {}
        }
    }
    let k = got_kill.unwrap_or_else(|| panic!("no kill after the event; log:\n{}", logcap::text()));
    let s = got_stat.expect("no stats packet before PROCKILL");
    assert_ne!(
        k.pid, old_pid,
        "the kill hit the process that reused the pid"
    );
    assert_eq!(
        k.pid,
        next.pid(),
        "the kill did not go to the next candidate"
    );
    assert_eq!(s.oom_score_adj, 900);
    logcap::wait_for(&stale_line, Duration::from_secs(5));

    // The newcomer lives, untouched.
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(old_pid), "the process that reused the pid died");
    assert_eq!(oom_adj(old_pid), newcomer_adj);
    assert!(alive(bystander.pid()));
    assert_eq!(kill_count(&c, 950, 950), 0);
    assert_eq!(kill_count(&c, 900, 900), 1);

    // The record is really gone: another client can register the newcomer
    // (a live record of the first client would be refused), and no second
    // "dropped" line appears for it.
    let other = Remote::connect(&d.dir.path("lmkd.sock"));
    other.send(&Cmd::ProcPrio(prio(old_pid, 800)));
    other.sync();
    assert_eq!(
        oom_adj(old_pid),
        800,
        "registering the newcomer was refused"
    );
    let text = logcap::text();
    assert_eq!(text.matches(&stale_line).count(), 1, "log:\n{text}");
    assert!(
        !text.contains(&format!("for pid {old_pid} refused")),
        "log:\n{text}"
    );
    eprintln!(
        "pid reuse: pid {old_pid} reused by a new process; kill went to {} (adj 900); \
         stale record dropped at the kill",
        k.pid
    );
    drop(newcomer);
}
