//! Properties the daemon publishes, read back from a store shared with an
//! in-process daemon: `sys.lmk.reportkills` at start-up, and
//! `sys.lmk.minfree_levels` after each TARGET (set by the logging thread).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::inproc::InProc;
use common::*;
use lmkd::props::{MapProperties, PropertySource};
use lmkd::proto::{self, Command as Cmd, TargetTable};

const T: Duration = Duration::from_secs(5);

fn levels_text(levels: &[proto::Target]) -> String {
    let parts: Vec<String> = levels
        .iter()
        .map(|l| format!("{}:{}", l.minfree, l.adj))
        .collect();
    parts.join(",")
}

#[test]
fn start_up_and_target_publish_their_properties() {
    if !need_root("start_up_and_target_publish_their_properties") {
        return;
    }
    let props = Arc::new(MapProperties::new());
    let shared = props.clone();
    let d = InProc::start("publish", "small", &[], move |_, o| {
        o.props = Box::new(shared);
    });
    assert_eq!(props.get("sys.lmk.reportkills").as_deref(), Some("1"));
    assert_eq!(props.get("sys.lmk.minfree_levels"), None);

    let c = d.connect();
    let levels = proto::AMS_PHONE_TARGETS;
    c.send(&Cmd::Target(TargetTable::from_slice(&levels).unwrap()))
        .unwrap();
    Daemon::sync(&c);
    let want = levels_text(&levels);
    assert!(
        eventually(T, || props.get("sys.lmk.minfree_levels").as_deref()
            == Some(&want)),
        "sys.lmk.minfree_levels is {:?}, want {want:?}",
        props.get("sys.lmk.minfree_levels")
    );
    // A refused TARGET (within 1 s of the last) publishes nothing; a later
    // one replaces the value.
    c.send(&Cmd::Target(TargetTable::from_slice(&levels[..1]).unwrap()))
        .unwrap();
    Daemon::sync(&c);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(props.get("sys.lmk.minfree_levels").as_deref(), Some(&*want));
    std::thread::sleep(Duration::from_millis(1100));
    c.send(&Cmd::Target(TargetTable::from_slice(&levels[..2]).unwrap()))
        .unwrap();
    let want = levels_text(&levels[..2]);
    assert!(
        eventually(T, || props.get("sys.lmk.minfree_levels").as_deref()
            == Some(&want)),
        "sys.lmk.minfree_levels is {:?}, want {want:?}",
        props.get("sys.lmk.minfree_levels")
    );
}

/// `log_stats = false` (`ro.lmk.log_stats`): kills are still announced
/// (PROCKILL), but no LMK_STAT_KILL_OCCURRED packet goes out.
#[test]
fn log_stats_off_sends_no_stats_packets() {
    if !need_root("log_stats_off_sends_no_stats_packets") {
        return;
    }
    for log_stats in [true, false] {
        let victim = Sleeper::new();
        let d = InProc::start("logstats", "small", &[victim.pid()], move |c, _| {
            c.startup.log_stats = log_stats;
        });
        let c = d.connect();
        subscribe_all(&c);
        c.send(&Cmd::ProcPrio(prio(victim.pid(), 950))).unwrap();
        Daemon::sync(&c);
        d.raise_complete();
        let (mut stats, mut killed) = (0, false);
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while !killed && std::time::Instant::now() < end {
            match c.recv(Some(Duration::from_millis(100))) {
                Ok(Some(lmkd::client::Message::Stat(_))) => stats += 1,
                Ok(Some(lmkd::client::Message::Kill(k))) => killed = k.pid == victim.pid(),
                _ => {}
            }
        }
        assert!(killed, "no kill (log_stats = {log_stats})");
        assert_eq!(stats, usize::from(log_stats), "log_stats = {log_stats}");
    }
}
