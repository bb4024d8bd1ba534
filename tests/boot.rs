//! A restart after boot (init restarts lmkd after a crash, or `stop lmkd;
//! start lmkd`): with `delay_monitors_until_boot`, a daemon that finds
//! `sys.boot_completed=1` arms its monitors at once, because
//! ActivityManager will not send START_MONITORING again.

mod common;

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use common::inproc::InProc;
use common::pressure::*;
use common::*;
use lmkd::props::MapProperties;
use lmkd::proto::Command as Cmd;

const T: Duration = Duration::from_secs(10);

/// A child run of this binary (the real-pressure hog; see
/// `common::pressure::child_main`).
#[test]
fn child_process_helper() {
    child_main();
}

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

/// The real binary restarted after boot, under real memory pressure in a
/// memory cgroup with zram swap: it kills the hog with no START_MONITORING.
#[test]
fn restart_after_boot_kills_under_real_pressure() {
    const TEST: &str = "restart_after_boot_kills_under_real_pressure";
    let _serial = serial();
    if !need_root(TEST) {
        return;
    }
    let memcg_root = match rig_prerequisites() {
        Ok(p) => p,
        Err(why) => return skip(TEST, &why),
    };
    let _zram = match ZramSwap::setup(ZRAM_MIB) {
        Ok(z) => z,
        Err(why) => return skip(TEST, &format!("zram swap unavailable: {why}")),
    };
    let props = TempDir::new("boot-pressure-props");
    let file = props.path("props");
    fs::write(&file, "sys.boot_completed=1\n").unwrap();
    // Rig::start_with waits for the armed monitor: no START_MONITORING is sent.
    let mut rig = Rig::start_with(
        &memcg_root,
        "boot-pressure",
        "delay_monitors_until_boot = true\n",
        |cmd| {
            cmd.env("LMKD_PROPS_FILE", &file);
        },
    );
    rig.d.wait_log("boot already completed", T);
    let go = rig.go();
    let seen = rig
        .wait_kill(go, Duration::from_secs(45))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(seen.kill.pid, rig.hog.pid(), "killed someone else");
}
