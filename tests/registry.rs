//! What registration and updates cost and keep: an update of a registered
//! process writes `oom_score_adj` through the descriptor kept from its
//! registration (no `/proc/<pid>/status`, no path walk), unchanged values
//! are not rewritten, and GETKILLCNT with a min adj above 1000 answers the
//! total kill count.

mod common;

use std::fs;
use std::time::Duration;

use common::inproc::InProc;
use common::strace::{self, Strace};
use common::*;
use lmkd::proto::{Command as Cmd, PrioBatch};

const T: Duration = Duration::from_secs(5);

#[test]
fn update_of_a_registered_process_opens_nothing() {
    let test = "update_of_a_registered_process_opens_nothing";
    if !need_root(test) {
        return;
    }
    if !strace::available() {
        skip(test, "strace is not installed");
        return;
    }
    let kids: Vec<Sleeper> = (0..3).map(|_| Sleeper::new()).collect();
    let d = Daemon::start("registry-strace", "");
    let c = d.connect();
    for k in &kids {
        c.send(&Cmd::ProcPrio(prio(k.pid(), 900))).unwrap();
    }
    Daemon::sync(&c);
    let trace = Strace::attach(
        d.child.id(),
        "open,openat,openat2,pwrite64,write",
        d.dir.path("strace.out"),
    );
    // Updates that change the adj: one pwrite each. PROCPRIO and a
    // PROCS_PRIO batch.
    for (i, k) in kids.iter().enumerate() {
        c.send(&Cmd::ProcPrio(prio(k.pid(), 800 + i as i32)))
            .unwrap();
    }
    let recs: Vec<_> = kids.iter().map(|k| prio(k.pid(), 700)).collect();
    c.send(&Cmd::ProcsPrio(PrioBatch::from_slice(&recs).unwrap()))
        .unwrap();
    // Unchanged values: no write at all.
    for k in &kids {
        c.send(&Cmd::ProcPrio(prio(k.pid(), 700))).unwrap();
    }
    Daemon::sync(&c);
    let text = trace.finish();
    for k in &kids {
        assert_eq!(k.oom_adj(), 700, "update did not reach oom_score_adj");
    }
    let opens: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("open") && l.contains("/proc"))
        .collect();
    assert!(
        opens.is_empty(),
        "updates opened files under /proc:\n{}",
        opens.join("\n")
    );
    let pwrites = text.lines().filter(|l| l.contains("pwrite64(")).count();
    // 3 PROCPRIO + 3 batch records change the adj; the last 3 do not.
    assert_eq!(
        pwrites, 6,
        "expected one pwrite per changed adj and none for unchanged ones:\n{text}"
    );
}

#[test]
fn a_write_by_the_framework_is_not_mistaken_for_ours() {
    if !need_root("a_write_by_the_framework_is_not_mistaken_for_ours") {
        return;
    }
    let d = Daemon::start("registry-lmkd-only", "");
    let c = d.connect();
    let s = Sleeper::new();
    c.send(&Cmd::ProcPrio(prio(s.pid(), 700))).unwrap();
    Daemon::sync(&c);
    assert_eq!(s.oom_adj(), 700);
    // The framework writes 900 itself and tells us (for_lmkd_only)...
    fs::write(format!("/proc/{}/oom_score_adj", s.pid()), "900").unwrap();
    let mut only = prio(s.pid(), 900);
    only.for_lmkd_only = true;
    c.send(&Cmd::ProcPrio(only)).unwrap();
    // ...then asks us for 700 again: that is a change, not a repeat.
    c.send(&Cmd::ProcPrio(prio(s.pid(), 700))).unwrap();
    Daemon::sync(&c);
    assert_eq!(s.oom_adj(), 700);
}

#[test]
fn a_dead_process_is_refused_on_update() {
    if !need_root("a_dead_process_is_refused_on_update") {
        return;
    }
    let d = Daemon::start("registry-dead", "");
    let c = d.connect();
    let mut s = Sleeper::new();
    let pid = s.pid();
    c.send(&Cmd::ProcPrio(prio(pid, 900))).unwrap();
    Daemon::sync(&c);
    s.0.kill().unwrap();
    s.0.wait().unwrap();
    // The kept descriptor cannot reach a new process with this pid: the
    // record is dropped and the update refused.
    c.send(&Cmd::ProcPrio(prio(pid, 800))).unwrap();
    Daemon::sync(&c);
    d.wait_log(&format!("for pid {pid} refused: process is gone"), T);
}

#[test]
fn a_reused_pid_with_the_same_adj_is_registered_and_written() {
    if !need_root("a_reused_pid_with_the_same_adj_is_registered_and_written") {
        return;
    }
    let d = Daemon::start("registry-reuse", "");
    let c = d.connect();
    let mut s = Sleeper::new();
    let pid = s.pid();
    c.send(&Cmd::ProcPrio(prio(pid, 700))).unwrap();
    Daemon::sync(&c);
    s.0.kill().unwrap();
    s.0.wait().unwrap();
    let Some(n) = sleeper_with_pid(pid) else {
        panic!("could not get pid {pid} reused (ns_last_pid)");
    };
    assert_eq!(n.oom_adj(), 0);
    // Same pid, same adj: not "unchanged", since it is another process.
    c.send(&Cmd::ProcPrio(prio(pid, 700))).unwrap();
    Daemon::sync(&c);
    assert_eq!(
        n.oom_adj(),
        700,
        "the new process's oom_score_adj was not written"
    );
    d.wait_log(&format!("process {pid} exited without PROCREMOVE"), T);
}

#[test]
fn getkillcnt_above_1000_is_the_total() {
    if !need_root("getkillcnt_above_1000_is_the_total") {
        return;
    }
    let a = Sleeper::new();
    let b = Sleeper::new();
    let d = InProc::start(
        "registry-killcnt",
        "small",
        &[a.pid(), b.pid()],
        |cfg, _| cfg.kill_timeout_ms = 2000,
    );
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(a.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(b.pid(), 100))).unwrap();
    Daemon::sync(&c);
    assert_eq!(kill_count(&c, 1001, 1001), 0);
    let mut seen = vec![];
    for _ in 0..20 {
        if seen.len() >= 2 {
            break;
        }
        d.bump_pressure();
        d.raise_complete();
        seen.extend(kills(&c, Duration::from_millis(300)));
    }
    assert_eq!(seen, vec![a.pid(), b.pid()]);
    assert_eq!(kill_count(&c, 1001, 1001), 2, "GETKILLCNT(1001, 1001)");
    assert_eq!(
        kill_count(&c, 2000, 0),
        2,
        "any min above 1000 is the total"
    );
    assert_eq!(kill_count(&c, 900, 1000), 1);
    assert_eq!(kill_count(&c, 1000, 900), 0, "an empty range is still 0");
}
