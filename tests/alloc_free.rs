//! The core and the reaper allocate nothing after start-up: a counting
//! global allocator watches exactly those two threads (the daemon marks
//! them through `Options::on_thread_start`) while the daemon
//!   1. handles thousands of PROCPRIO / PROCS_PRIO / PROCREMOVE / GETKILLCNT
//!      commands from a real client,
//!   2. handles every other command once for real: SUBSCRIBE, TARGET (its
//!      property is published by the logging thread), START_MONITORING and
//!      BOOT_COMPLETED (arming a source opened at start-up), UPDATE_PROPS
//!      (parsed by the loader thread; the core only swaps the result in)
//!      and PROCPURGE, and
//!   3. goes from an injected pressure event, through recorded /proc
//!      snapshots and the policy, to the real kill of a real child and the
//!      notifications that follow,
//!
//! both while a control client polls `stats` and `procs` (the core copies
//! its table for it) in a loop.
//!
//! Frees are counted too: `free` may trim the heap (a syscall), so what a
//! reload replaces goes back to the loader to be freed.
//!
//! The logging and loader threads format text and may allocate; they are
//! not watched. A capturing logger is installed, so a log line written on
//! the core itself would be formatted there and counted.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::counting::{watch_thread, watched_allocs, watched_frees, Counting};
use common::inproc::InProc;
use common::logcap;
use common::*;
use lmkd::client::Message;
use lmkd::proto::{self, Command as Cmd, PrioBatch, TargetTable};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn watch(role: &'static str) {
    if matches!(role, "core" | "reaper" | "namer") {
        watch_thread();
    }
}

fn allocs() -> u64 {
    watched_allocs()
}

/// A control client asking for `stats` and `procs` in a loop until dropped.
struct Poller {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    fn start(d: &InProc) -> Poller {
        let sock = lmkd::control::default_path(&d.dir.path("lmkd.sock"));
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let (st, sv) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            let s = UnixStream::connect(&sock).expect("connect to the control socket");
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = String::new();
            while !st.load(Ordering::Relaxed) {
                for cmd in ["stats", "procs"] {
                    w.write_all(format!("{{\"cmd\":\"{cmd}\"}}\n").as_bytes())
                        .unwrap();
                    line.clear();
                    r.read_line(&mut line).unwrap();
                    assert!(line.starts_with(&format!("{{\"{cmd}\"")), "{line}");
                    sv.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let p = Poller {
            stop,
            served,
            thread: Some(thread),
        };
        // Warm-up: the first requests are served before measuring.
        assert!(eventually(Duration::from_secs(5), || p.served() >= 4));
        p
    }

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn core_allocates_nothing_after_start_up() {
    if !need_root("core_allocates_nothing_after_start_up") {
        return;
    }
    common::logcap::install();
    counter_sees_watched_threads();
    commands_allocate_nothing();
    every_command_allocates_nothing();
    pressure_to_kill_allocates_nothing();
}

/// Positive control: an allocation on a watched thread is counted.
fn counter_sees_watched_threads() {
    let before = allocs();
    std::thread::spawn(|| {
        watch("core");
        std::hint::black_box(vec![1u8; 64]);
    })
    .join()
    .unwrap();
    assert!(
        allocs() > before,
        "the counting allocator does not see watched threads"
    );
}

fn commands_allocate_nothing() {
    let kids: Vec<Sleeper> = (0..30).map(|_| Sleeper::new()).collect();
    let pids: Vec<i32> = kids.iter().map(Sleeper::pid).collect();
    let d = InProc::start("alloc-cmds", "small", &pids, |_, o| {
        o.on_thread_start = watch
    });
    let c = d.connect();
    let poller = Poller::start(&d);
    // Warm-up round (first-use paths), then measure.
    let polled = poller.served();
    let before = allocs();
    let frees_before = watched_frees();
    let mut sent = 0;
    for round in 0..100 {
        for (i, k) in kids.iter().enumerate() {
            c.send(&Cmd::ProcPrio(prio(
                k.pid(),
                100 + ((i + round) % 900) as i32,
            )))
            .unwrap();
            sent += 1;
        }
        let recs: Vec<_> = kids[..3]
            .iter()
            .map(|k| prio(k.pid(), 900 + (round % 100) as i32))
            .collect();
        c.send(&Cmd::ProcsPrio(PrioBatch::from_slice(&recs).unwrap()))
            .unwrap();
        c.send(&Cmd::ProcRemove {
            pid: kids[round % kids.len()].pid(),
        })
        .unwrap();
        let n = c
            .request(
                &Cmd::GetKillCnt {
                    min_adj: 0,
                    max_adj: 1000,
                },
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(n, 0);
        sent += 3;
    }
    let after = allocs();
    let frees = watched_frees() - frees_before;
    let polled = poller.served() - polled;
    eprintln!(
        "commands: {sent} handled, {polled} control requests served, \
         {} heap allocations, {frees} frees on the core, reaper and namer threads",
        after - before
    );
    assert!(polled > 0, "the control client was not served");
    assert!(sent >= 3000);
    assert_eq!(
        after - before,
        0,
        "the core allocated while handling commands"
    );
    assert_eq!(frees, 0, "the core freed while handling commands");
}

/// Each command beyond the PROCPRIO family, done for real the first time
/// inside the measured window (not only its cheap "already done" path).
fn every_command_allocates_nothing() {
    let kids: Vec<Sleeper> = (0..3).map(|_| Sleeper::new()).collect();
    let pids: Vec<i32> = kids.iter().map(Sleeper::pid).collect();
    let d = InProc::start("alloc-every", "small", &pids, |c, o| {
        c.delay_monitors_until_boot = true;
        o.on_thread_start = watch;
    });
    let c = d.connect();
    let t = Duration::from_secs(5);
    // Warm-up: the first packet and reply paths.
    Daemon::sync(&c);
    for k in &kids {
        c.send(&Cmd::ProcPrio(prio(k.pid(), 900))).unwrap();
    }
    Daemon::sync(&c);
    let monitor_lines = || logcap::text().matches("pressure monitor: injected").count();
    let armed_before = monitor_lines();

    let before = allocs();
    let frees_before = watched_frees();
    subscribe_all(&c);
    let levels = proto::AMS_PHONE_TARGETS;
    c.send(&Cmd::Target(TargetTable::from_slice(&levels).unwrap()))
        .unwrap();
    c.send(&Cmd::StartMonitoring).unwrap();
    assert_eq!(c.request(&Cmd::BootCompleted, t).unwrap(), 0);
    assert_eq!(c.request(&Cmd::BootCompleted, t).unwrap(), 1);
    assert_eq!(c.request(&Cmd::UpdateProps, t).unwrap(), 0);
    assert_eq!(c.request(&Cmd::UpdateProps, t).unwrap(), 0);
    c.send(&Cmd::ProcPurge).unwrap();
    assert_eq!(kill_count(&c, 0, 1000), 0);
    let after = allocs();
    let frees = watched_frees() - frees_before;
    eprintln!(
        "SUBSCRIBE, TARGET, START_MONITORING, BOOT_COMPLETED, UPDATE_PROPS, PROCPURGE: \
         {} heap allocations, {frees} frees on the core, reaper and namer threads",
        after - before
    );
    // Each really happened: the monitor was armed once (by START_MONITORING),
    // the reload ran on the loader, the purge emptied the table.
    assert!(
        eventually(t, || monitor_lines() == armed_before + 1),
        "START_MONITORING did not arm the parked monitor:\n{}",
        logcap::text()
    );
    logcap::wait_for("configuration reloaded", t);
    for k in &kids {
        c.send(&Cmd::ProcRemove { pid: k.pid() }).unwrap();
    }
    Daemon::sync(&c);
    assert!(
        !logcap::text().contains("pid is not registered"),
        "PROCPURGE left records behind"
    );
    assert_eq!(
        after - before,
        0,
        "the core allocated while handling commands"
    );
    assert_eq!(frees, 0, "the core freed while handling commands");
}

fn pressure_to_kill_allocates_nothing() {
    let victim = Sleeper::new();
    let bystander = Sleeper::new();
    let d = InProc::start(
        "alloc-kill",
        "small",
        &[victim.pid(), bystander.pid()],
        |_, o| {
            o.on_thread_start = watch;
        },
    );
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(victim.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(bystander.pid(), 0))).unwrap();
    common::Daemon::sync(&c);
    let poller = Poller::start(&d);

    let polled = poller.served();
    let before = allocs();
    let frees_before = watched_frees();
    d.raise_complete();
    let mut got_stat = false;
    let mut got_kill = false;
    let end = Instant::now() + Duration::from_secs(10);
    while !(got_stat && got_kill) && Instant::now() < end {
        match c.recv(Some(Duration::from_millis(200))).unwrap() {
            Some(Message::Stat(s)) => {
                assert!(!got_kill, "stats packet must come before PROCKILL");
                assert_eq!(s.oom_score_adj, 950);
                got_stat = true;
            }
            Some(Message::Kill(k)) => {
                assert_eq!(k.pid, victim.pid());
                got_kill = true;
            }
            _ => {}
        }
    }
    assert!(
        got_stat && got_kill,
        "no kill notifications after a critical pressure event"
    );
    // Wait until the victim's exit has been handled (the core saw its pidfd).
    let mut v = victim;
    assert!(eventually(Duration::from_secs(5), || v
        .0
        .try_wait()
        .ok()
        .flatten()
        .is_some()));
    std::thread::sleep(Duration::from_millis(300));
    let after = allocs();
    let frees = watched_frees() - frees_before;
    let polled = poller.served() - polled;
    eprintln!(
        "pressure event to completed kill: {polled} control requests served, \
         {} heap allocations, {frees} frees on the core, reaper and namer threads",
        after - before
    );
    assert!(polled > 0, "the control client was not served");
    assert_eq!(after - before, 0, "the kill path allocated");
    assert_eq!(frees, 0, "the kill path freed");
    assert_eq!(kill_count(&c, 900, 1000), 1);
    // try_wait reaps: a killed bystander shows as exited, not as a zombie
    // whose /proc entry still exists.
    let mut b = bystander;
    assert!(
        b.0.try_wait().unwrap().is_none(),
        "the adj 0 bystander was killed"
    );
}
