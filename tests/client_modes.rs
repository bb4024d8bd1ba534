//! `lmkd --reinit` and `lmkd --boot_completed` as init runs them: one
//! command, one reply, a clear exit status, and a clean failure when no
//! daemon answers.

mod common;

use std::fs;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(5);

fn lmkd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lmkd"))
        .args(args)
        .output()
        .expect("run lmkd")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn reinit_applies_good_props_and_refuses_a_bad_file() {
    if !need_root("reinit_applies_good_props_and_refuses_a_bad_file") {
        return;
    }
    let props_dir = TempDir::new("reinit-props");
    let props = props_dir.path("props");
    fs::write(&props, "").unwrap();
    let d = Daemon::start_with("reinit", "", &[], |c| {
        c.env("LMKD_PROPS_FILE", &props);
    });
    let sock = d.socket.to_str().unwrap();
    // setprop persist.device_config.lmkd_native.debug true; lmkd --reinit
    fs::write(&props, "persist.device_config.lmkd_native.debug=true\n").unwrap();
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert!(o.status.success(), "reinit failed: {}", text(&o));
    d.wait_log("debug logging is on", T);
    // A broken config file: non-zero, a message, and the old values stay.
    let good = fs::read_to_string(&d.config).unwrap();
    fs::write(&d.config, format!("{good}kill_timeout_ms = 0\n")).unwrap();
    fs::write(&props, "persist.device_config.lmkd_native.debug=false\n").unwrap();
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert!(!o.status.success(), "reinit accepted a broken file");
    assert!(text(&o).contains("rejected"), "no message: {}", text(&o));
    d.wait_log("kill_timeout_ms = 0", T);
    // debug stayed on: the next good reload still logs at debug level
    // before it applies debug=false.
    fs::write(&d.config, &good).unwrap();
    fs::write(&props, "persist.device_config.lmkd_native.debug=true\n").unwrap();
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert!(o.status.success(), "{}", text(&o));
    d.wait_log_count("debug logging is on", 2, T);
    // An invalid property value is ignored with a warning naming it.
    fs::write(
        &props,
        "persist.device_config.lmkd_native.kill_timeout_ms=soon\n",
    )
    .unwrap();
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert!(o.status.success(), "{}", text(&o));
    d.wait_log("persist.device_config.lmkd_native.kill_timeout_ms", T);
}

#[test]
fn boot_completed_once_then_already_handled() {
    if !need_root("boot_completed_once_then_already_handled") {
        return;
    }
    let d = Daemon::start("boot", "");
    let sock = d.socket.to_str().unwrap();
    let o = lmkd(&["--boot_completed", "--socket", sock]);
    assert!(o.status.success(), "{}", text(&o));
    let o = lmkd(&["--boot_completed", "--socket", sock]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already handled"), "{}", text(&o));
}

#[test]
fn client_modes_fail_cleanly_without_a_daemon() {
    let dir = TempDir::new("nodaemon");
    let sock = dir.path("none.sock");
    for mode in ["--reinit", "--boot_completed"] {
        let start = Instant::now();
        let o = lmkd(&[mode, "--socket", sock.to_str().unwrap()]);
        assert!(!o.status.success(), "{mode} succeeded with no daemon");
        assert!(
            text(&o).contains("is the daemon running?"),
            "{mode}: {}",
            text(&o)
        );
        assert!(start.elapsed() < T);
    }
}

#[test]
fn client_modes_time_out_when_the_daemon_does_not_answer() {
    if !need_root("client_modes_time_out_when_the_daemon_does_not_answer") {
        return;
    }
    let d = Daemon::start("stuck", "");
    let pid = d.child.id() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let start = Instant::now();
    let o = lmkd(&["--reinit", "--socket", d.socket.to_str().unwrap()]);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    assert!(!o.status.success());
    assert!(text(&o).contains("no reply"), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn check_config_names_the_bad_key_and_fails() {
    let dir = TempDir::new("checkcfg");
    let cases = [
        (
            "unknown.toml",
            "kill_timeout_ms = 100\nkill_timout_ms = 5\n",
            "kill_timout_ms",
        ),
        (
            "type.toml",
            "kill_timeout_ms = \"fast\"\n",
            "kill_timeout_ms",
        ),
        (
            "range.toml",
            "swap_free_low_percentage = 150\n",
            "swap_free_low_percentage",
        ),
    ];
    for (name, body, key) in cases {
        let p = dir.path(name);
        fs::write(&p, body).unwrap();
        let o = lmkd(&["--check-config", p.to_str().unwrap()]);
        assert!(!o.status.success(), "{name}: accepted");
        assert!(
            text(&o).contains(key),
            "{name}: error does not name {key}: {}",
            text(&o)
        );
    }
    // A good file prints the effective configuration and succeeds.
    let p = dir.path("good.toml");
    fs::write(&p, "kill_timeout_ms = 250\n").unwrap();
    let o = lmkd(&["--check-config", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("kill_timeout_ms = 250"), "{}", text(&o));
    assert!(
        text(&o).contains("psi_partial_stall_ms = 70"),
        "{}",
        text(&o)
    );
}
