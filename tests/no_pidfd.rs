//! Kernels without `pidfd_open` (ENOSYS, before 5.3): processes register
//! without a pidfd and are killed by pid, behind a start-time check that
//! keeps a reused pid safe. Forced on this kernel by the daemon's fault
//! switch (`LMKD_TEST_NO_PIDFD=1`, read at start-up), so this file holds
//! one test: the switch is process-wide.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::*;
use lmkd::proto::Command as Cmd;

/// Pidfds this process holds (the in-process daemon's show here).
fn pidfds() -> usize {
    fds_linking_to("self", Path::new("anon_inode:[pidfd]")).len()
}

#[test]
fn without_pidfds_kills_by_pid_and_never_a_reused_pid() {
    let test = "without_pidfds_kills_by_pid_and_never_a_reused_pid";
    if !need_root(test) {
        return;
    }
    std::env::set_var(lmkd::sys::NO_PIDFD_ENV, "1");
    let mut old = Sleeper::new();
    let victim = Sleeper::new();
    let reused_pid = old.pid();
    let before = pidfds();
    // No exit watch without a pidfd: the next kill waits kill_timeout_ms.
    let d = InProc::start("nopidfd", "small", &[old.pid(), victim.pid()], |cfg, _| {
        cfg.kill_timeout_ms = 200
    });
    let c = d.connect();
    subscribe_all(&c);
    c.send(&Cmd::ProcPrio(prio(old.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(victim.pid(), 900))).unwrap();
    Daemon::sync(&c);
    // Registration works: adj written, records kept, and no pidfd held.
    assert_eq!(old.oom_adj(), 950);
    assert_eq!(victim.oom_adj(), 900);
    assert_eq!(pidfds(), before, "registered with pidfds despite ENOSYS");
    // The adj 950 process dies unannounced and its pid goes to a new one
    // (a clock tick later, so its start time differs).
    old.0.kill().unwrap();
    old.0.wait().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let Some(mut newcomer) = sleeper_with_pid(reused_pid) else {
        panic!("could not get pid {reused_pid} reused (ns_last_pid)");
    };
    let mut seen = vec![];
    for _ in 0..10 {
        if !seen.is_empty() {
            break;
        }
        d.bump_pressure();
        d.raise_complete();
        seen.extend(kills(&c, Duration::from_millis(300)));
    }
    // The stale adj 950 record is passed over: the adj 900 one is killed.
    assert_eq!(seen.first(), Some(&victim.pid()), "kills: {seen:?}");
    assert!(
        newcomer.0.try_wait().unwrap().is_none(),
        "the process that reused pid {reused_pid} was killed"
    );
    let mut victim = victim;
    let end = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = victim.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the victim was not killed");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // And it stays so under more pressure: the newcomer is not registered.
    for _ in 0..3 {
        d.bump_pressure();
        d.raise_complete();
        assert!(kills(&c, Duration::from_millis(300)).is_empty());
    }
    assert!(newcomer.0.try_wait().unwrap().is_none());
    assert_eq!(kill_count(&c, -1000, 1000), 1);
}
