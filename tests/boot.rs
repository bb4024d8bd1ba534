//! A restart after boot (init restarts lmkd after a crash, or `stop lmkd;
//! start lmkd`): with `delay_monitors_until_boot`, a daemon that finds
//! `sys.boot_completed=1` arms its monitors at once, because
//! ActivityManager will not send START_MONITORING again.

mod common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use common::inproc::InProc;
use common::*;
use lmkd::props::MapProperties;
use lmkd::proto::Command as Cmd;

const T: Duration = Duration::from_secs(10);

/// The real binary, properties from `LMKD_PROPS_FILE`.
fn start(tag: &str, props: &str) -> (Daemon, TempDir) {
    let dir = TempDir::new(tag);
    let file = dir.path("props");
    fs::write(&file, props).unwrap();
    let d = Daemon::start_with(tag, "delay_monitors_until_boot = true", &[], |cmd| {
        cmd.env("LMKD_PROPS_FILE", &file);
    });
    (d, dir)
}

#[test]
fn restart_after_boot_arms_monitors_at_once() {
    if !need_root("restart_after_boot_arms_monitors_at_once") {
        return;
    }
    let (d, _props) = start("boot-restart", "sys.boot_completed=1\n");
    d.wait_log("boot already completed (sys.boot_completed=1)", T);
    d.wait_log("pressure monitor: PSI", T);

    // Control: before boot completes, the same daemon waits for AMS.
    let (d, _props) = start("boot-first", "sys.boot_completed=0\n");
    d.wait_log("pressure monitors delayed", T);
    let c = d.connect();
    Daemon::sync(&c);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !d.log_text().contains("pressure monitor:"),
        "monitors armed before boot completed:\n{}",
        d.log_text()
    );
    c.send(&Cmd::StartMonitoring).unwrap();
    d.wait_log("pressure monitor: PSI", T);
}

/// The restarted daemon kills on pressure without START_MONITORING; one
/// started before boot does not, until START_MONITORING comes.
#[test]
fn restart_after_boot_kills_without_start_monitoring() {
    if !need_root("restart_after_boot_kills_without_start_monitoring") {
        return;
    }
    for booted in [true, false] {
        let victim = Sleeper::new();
        let props = Arc::new(MapProperties::from_pairs([(
            "sys.boot_completed",
            if booted { "1" } else { "0" },
        )]));
        let d = InProc::start("boot-kill", "small", &[victim.pid()], move |c, o| {
            c.delay_monitors_until_boot = true;
            o.props = Box::new(props);
        });
        let c = d.connect();
        subscribe_all(&c);
        c.send(&Cmd::ProcPrio(prio(victim.pid(), 900))).unwrap();
        Daemon::sync(&c);
        d.raise_complete();
        let got = kills(&c, Duration::from_millis(1500));
        if booted {
            assert_eq!(got, [victim.pid()], "restarted daemon did not kill");
            continue;
        }
        assert!(got.is_empty(), "killed before START_MONITORING: {got:?}");
        c.send(&Cmd::StartMonitoring).unwrap();
        d.raise_complete();
        assert_eq!(
            kills(&c, Duration::from_secs(3)),
            [victim.pid()],
            "no kill after START_MONITORING"
        );
    }
}
