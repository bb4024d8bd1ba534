//! Without PSI (`use_psi = false`) the daemon kills on memcg v1 vmpressure
//! level events, again and again: a medium event kills from `medium` (800)
//! up, a critical one from `critical` (0) up, with no PSI stall gate (which
//! without PSI never moves and allowed one kill per lifetime).
//!
//! Real pressure: a memory cgroup (v1) under our own group with a limit,
//! zram swap, four registered "apps" holding memory in the group and an
//! unregistered hog growing in it. The real daemon listens to that group's
//! `memory.pressure_level` and must kill several apps.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::pressure::*;
use common::*;
use lmkd::client::Message;
use lmkd::proto::Command as Cmd;

/// A child run of this binary (see `common::pressure::child_main`).
#[test]
fn child_process_helper() {
    child_main();
}

const TEST: &str = "vmpressure_events_kill_again_and_again";

#[test]
fn vmpressure_events_kill_again_and_again() {
    if !need_root(TEST) {
        return;
    }
    let Some(memcg_root) = own_memcg() else {
        return skip(TEST, "no cgroup v1 memory controller for this process");
    };
    let _machine = serial();
    let _zram = match ZramSwap::setup(ZRAM_MIB) {
        Ok(z) => z,
        Err(e) => return skip(TEST, &e),
    };
    let group = Cgroup::create(memcg_root.join(unique("vmp")));
    write_file(
        &group.file("memory.limit_in_bytes"),
        &(192 * MIB).to_string(),
    );
    let _ = std::fs::write(group.file("memory.swappiness"), "100");

    // As on a kernel without PSI: no triggers and no PSI figures either.
    let d = Daemon::start(
        "vmp",
        &format!(
            "use_psi = false\npsi_path = \"/nonexistent/pressure/memory\"\n\
             vmpressure_memcg = {:?}\n",
            group.path
        ),
    );
    d.wait_log(
        "pressure monitor: memcg v1 vmpressure",
        Duration::from_secs(5),
    );
    let c = d.connect();
    subscribe_all(&c);
    let mut apps = Vec::new();
    for i in 0..4 {
        // An app of 32 MiB: moved into the group before it allocates, so
        // its memory is charged there.
        let mut k = spawn_child("lmkd-test-app", "hog:32:40");
        group.add(k.pid());
        k.0.stdin.as_mut().unwrap().write_all(b"g").unwrap();
        c.send(&Cmd::ProcPrio(prio(k.pid(), 900 + 10 * i))).unwrap();
        apps.push(k);
    }
    std::thread::sleep(Duration::from_millis(500));
    Daemon::sync(&c);
    let app_pids: Vec<i32> = apps.iter().map(Kid::pid).collect();
    let mut hog = spawn_child(
        "lmkd-test-hog",
        &format!("hog:{HOG_MAX_MIB}:{HOG_MS_PER_CHUNK}"),
    );
    group.add(hog.pid());
    hog.0.stdin.as_mut().unwrap().write_all(b"g").unwrap();

    let mut killed = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while killed.len() < 3 && Instant::now() < end {
        if let Ok(Some(Message::Kill(k))) = c.recv(Some(Duration::from_millis(100))) {
            killed.push(k.pid);
        }
    }
    drop(hog);
    eprintln!("vmpressure kills: {killed:?}");
    assert!(
        killed.len() >= 2,
        "vmpressure made {} kill(s) ({killed:?}), want several; log:\n{}",
        killed.len(),
        d.log_text()
    );
    assert!(
        killed.iter().all(|p| app_pids.contains(p)),
        "killed {killed:?}, not among the registered apps {app_pids:?}"
    );
}
