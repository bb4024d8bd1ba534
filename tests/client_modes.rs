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

/// The documented exit statuses (README "Command line", `lmkd --help`).
const EXIT_OK: i32 = 0;
const EXIT_USAGE: i32 = 2;
const EXIT_CONFIG: i32 = 3;
const EXIT_START_UP: i32 = 4;
const EXIT_NOT_RUNNING: i32 = 5;
const EXIT_NO_REPLY: i32 = 6;
const EXIT_REFUSED: i32 = 7;

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed by a signal")
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
    fs::write(&d.config, format!("{good}kill_timeout_ms = 60001\n")).unwrap();
    fs::write(&props, "persist.device_config.lmkd_native.debug=false\n").unwrap();
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert_eq!(code(&o), EXIT_REFUSED, "reinit accepted a broken file");
    assert!(text(&o).contains("rejected"), "no message: {}", text(&o));
    d.wait_log("kill_timeout_ms = 60001", T);
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
    // A start-up key changed in the file: the reload goes through and says
    // which key waits for a restart.
    fs::write(&d.config, format!("{good}watchdog_timeout_ms = 5000\n")).unwrap();
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert_eq!(code(&o), EXIT_OK, "{}", text(&o));
    d.wait_log("watchdog_timeout_ms changes only at restart", T);
}

#[test]
fn boot_completed_once_then_already_handled() {
    if !need_root("boot_completed_once_then_already_handled") {
        return;
    }
    let d = Daemon::start("boot", "");
    let sock = d.socket.to_str().unwrap();
    let o = lmkd(&["--boot_completed", "--socket", sock]);
    assert_eq!(code(&o), EXIT_OK, "{}", text(&o));
    assert!(text(&o).contains("--boot_completed: done"), "{}", text(&o));
    let o = lmkd(&["--boot_completed", "--socket", sock]);
    assert_eq!(code(&o), EXIT_OK, "{}", text(&o));
    assert!(text(&o).contains("already handled"), "{}", text(&o));
    // The reinit mode is told apart by its command, not its name: its own
    // reply wording.
    let o = lmkd(&["--reinit", "--socket", sock]);
    assert_eq!(code(&o), EXIT_OK, "{}", text(&o));
    assert!(text(&o).contains("--reinit: done"), "{}", text(&o));
}

#[test]
fn client_modes_fail_cleanly_without_a_daemon() {
    let dir = TempDir::new("nodaemon");
    let sock = dir.path("none.sock");
    for mode in ["--reinit", "--boot_completed"] {
        let start = Instant::now();
        let o = lmkd(&[mode, "--socket", sock.to_str().unwrap()]);
        assert_eq!(code(&o), EXIT_NOT_RUNNING, "{mode}: {}", text(&o));
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
    assert_eq!(code(&o), EXIT_NO_REPLY, "{}", text(&o));
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
        assert_eq!(code(&o), EXIT_CONFIG, "{name}: {}", text(&o));
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

#[test]
fn syntax_error_quotes_the_line_with_a_caret() {
    let dir = TempDir::new("syntax");
    let p = dir.path("bad.toml");
    fs::write(&p, "debug = true\nkill_timeout_ms = = 3\n").unwrap();
    let o = lmkd(&["--check-config", p.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_CONFIG, "{}", text(&o));
    let t = text(&o);
    let lines: Vec<&str> = t.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "kill_timeout_ms = = 3")
        .unwrap_or_else(|| panic!("the line is not quoted: {t}"));
    let caret = lines.get(at + 1).copied().unwrap_or("");
    let quoted = lines[at];
    let col = caret.find('^').unwrap_or_else(|| panic!("no caret: {t}"));
    assert_eq!(
        &quoted[col..col + 1],
        "=",
        "caret not under the second '=': {t}"
    );
    assert!(
        quoted[..col].contains('='),
        "caret under the first '=': {t}"
    );
    assert!(t.contains("bad.toml:2:"), "{t}");
}

#[test]
fn bad_command_line_exits_2() {
    let o = lmkd(&["--frobnicate"]);
    assert_eq!(code(&o), EXIT_USAGE, "{}", text(&o));
    assert!(text(&o).contains("--frobnicate"), "{}", text(&o));
    let o = lmkd(&["--config"]);
    assert_eq!(code(&o), EXIT_USAGE, "{}", text(&o));
}

/// Runs the daemon on a config of `body`; it must exit by itself (it is
/// killed after 10 s, which the callers' exit status checks then catch).
fn daemon_exit(dir: &TempDir, body: &str) -> Output {
    let cfg = dir.path("lmkd.toml");
    fs::write(&cfg, body).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_lmkd"))
        .args(["--config", cfg.to_str().unwrap()])
        .env_remove("ANDROID_SOCKET_lmkd")
        .env_remove("LMKD_PROPS_FILE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let exited = eventually(Duration::from_secs(10), || {
        fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    });
    if !exited {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    child.wait_with_output().unwrap()
}

#[test]
fn daemon_exits_3_on_a_bad_config_and_4_when_it_cannot_start() {
    let dir = TempDir::new("startfail");
    let sock = dir.path("lmkd.sock");
    let o = daemon_exit(
        &dir,
        &format!("socket_path = {sock:?}\nkill_timeout_ms = \"fast\"\n"),
    );
    assert_eq!(code(&o), EXIT_CONFIG, "{}", text(&o));
    assert!(text(&o).contains("kill_timeout_ms"), "{}", text(&o));
    // A socket in a directory that does not exist: start-up fails.
    let o = daemon_exit(
        &dir,
        &format!("socket_path = {:?}\n", dir.path("missing/lmkd.sock")),
    );
    assert_eq!(code(&o), EXIT_START_UP, "{}", text(&o));
    assert!(text(&o).contains("start-up failed"), "{}", text(&o));
}

/// The exit status rows of a text: `N  meaning` (help) or `| N | meaning |` (README).
fn exit_rows(text: &str) -> Vec<(i32, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches('|').trim();
            let (n, rest) = l.split_once([' ', '|'])?;
            let n: i32 = n.trim().parse().ok()?;
            let meaning = rest
                .trim()
                .trim_start_matches('|')
                .trim()
                .trim_end_matches('|');
            Some((n, meaning.trim().to_string()))
        })
        .collect()
}

#[test]
fn help_and_readme_document_the_same_exit_statuses() {
    let o = lmkd(&["--help"]);
    assert_eq!(code(&o), EXIT_OK);
    let help = String::from_utf8_lossy(&o.stdout).to_string();
    let help_rows = exit_rows(
        help.split("exit status:")
            .nth(1)
            .expect("help lists exit statuses"),
    );
    let readme = fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("Exit status")
        .nth(1)
        .expect("README documents the exit status");
    let section = section.split("\n## ").next().unwrap();
    let readme_rows = exit_rows(section);
    assert_eq!(help_rows, readme_rows);
    let codes: Vec<i32> = help_rows.iter().map(|r| r.0).collect();
    assert_eq!(codes, (0..=8).collect::<Vec<_>>(), "{help}");
    for (code, what) in [
        (EXIT_USAGE, "command line"),
        (EXIT_CONFIG, "configuration"),
        (EXIT_START_UP, "start-up"),
        (EXIT_NOT_RUNNING, "no daemon"),
        (EXIT_NO_REPLY, "reply"),
        (EXIT_REFUSED, "refused"),
    ] {
        assert!(help_rows[code as usize].1.contains(what), "{code}: {help}");
    }
}

#[test]
fn a_stall_threshold_of_0_turns_that_trigger_off() {
    if !need_root("a_stall_threshold_of_0_turns_that_trigger_off") {
        return;
    }
    if !std::path::Path::new("/proc/pressure/memory").exists() {
        eprintln!("SKIP a_stall_threshold_of_0_turns_that_trigger_off: no PSI on this kernel");
        return;
    }
    // Before, a 0 threshold made the kernel refuse the trigger and start-up fail.
    let mut d = Daemon::start(
        "zerostall",
        "psi_partial_stall_ms = 0\npsi_complete_stall_ms = 0\nkill_timeout_ms = 0",
    );
    d.wait_log("PSI 'some' trigger off", T);
    d.wait_log("PSI 'full' trigger off", T);
    assert!(d.alive());
    let c = d.connect();
    assert_eq!(kill_count(&c, 0, 1000), 0);
}
