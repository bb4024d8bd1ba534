//! Record and replay: a recording of an in-process daemon driven through
//! cache thrashing and a few real kills, replayed offline. With the
//! recorded settings every recorded decision comes back exactly; with a
//! lower thrashing limit the first kill comes earlier.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::inproc::InProc;
use common::lmkctl::{ok_json, ok_text};
use common::*;
use lmkd::proto::Command as Cmd;

fn lmkctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lmkctl"))
        .env_remove("LMKCTL_SOCKET")
        .args(args)
        .output()
        .expect("run lmkctl")
}

/// Drives the "small" fixture (swap low, above the min watermark) through
/// moderate thrashing (60%: under the default limit of 100) and then heavy
/// thrashing (180%) until `victims` processes were killed; records it.
fn recorded_thrash(d: &InProc, victims: &[Sleeper], file: &Path) {
    // Recording from the start, following live: the daemon keeps only the
    // last 64 evaluations, fewer than this run makes.
    let sock = lmkd::control::default_path(&d.dir.path("lmkd.sock"));
    let recorder = Command::new(env!("CARGO_BIN_EXE_lmkctl"))
        .env_remove("LMKCTL_SOCKET")
        .args(["--socket", sock.to_str().unwrap(), "--json", "record"])
        .arg(file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lmkctl record");
    let c = d.connect();
    subscribe_all(&c);
    for (i, v) in victims.iter().enumerate() {
        c.send(&Cmd::ProcPrio(prio(v.pid(), 900 + 10 * i as i32)))
            .unwrap();
    }
    Daemon::sync(&c);
    // Baseline, then a window of moderate thrashing.
    d.raise_partial();
    std::thread::sleep(Duration::from_millis(200));
    // (Refaults add up over a window: one bump of 60%, then reclaim alone.)
    d.bump_thrashing(60);
    d.raise_partial();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..2 {
        d.bump_pressure();
        d.raise_partial();
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        kills(&c, Duration::from_millis(300)).is_empty(),
        "60% thrashing killed under the default limit of 100%"
    );
    std::thread::sleep(Duration::from_millis(1200));
    let mut killed = Vec::new();
    for _ in 0..40 {
        if killed.len() == victims.len() {
            break;
        }
        d.bump_thrashing(180);
        d.raise_partial();
        killed.extend(kills(&c, Duration::from_millis(150)));
    }
    assert_eq!(
        killed.len(),
        victims.len(),
        "heavy thrashing killed {killed:?}"
    );
    // Past the last kill's re-checks (200 ms polls), then ^C.
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(recorder.id() as i32, libc::SIGINT) };
    let j = ok_json(&recorder.wait_with_output().unwrap());
    assert_eq!(
        j["first_serial"], 1,
        "the recording began with the run: {j}"
    );
    assert_eq!(j["lost"], 0, "the recording lost evaluations: {j}");
}

#[test]
fn replay_reproduces_the_recording_and_a_lower_limit_kills_first() {
    if !need_root("replay_reproduces_the_recording_and_a_lower_limit_kills_first") {
        return;
    }
    let victims = [Sleeper::new(), Sleeper::new(), Sleeper::new()];
    let pids: Vec<i32> = victims.iter().map(Sleeper::pid).collect();
    // lmkd's rows: the fixture's swap is low, so with ours each bump of
    // direct reclaim would kill before any thrashing does.
    let d = InProc::start("replay", "small", &pids, |c, _| {
        c.direct_reclaim_below_min = false;
    });
    let file = d.dir.path("thrash.lmkrec");
    recorded_thrash(&d, &victims, &file);
    let f = file.to_str().unwrap();

    // As recorded: every decision, and the kills where they happened.
    let j = ok_json(&lmkctl(&["--json", "replay", f]));
    let n = j["evaluations"].as_u64().unwrap();
    assert!(n > 10, "too few evaluations recorded: {j}");
    let a = &j["settings"][0];
    assert_eq!(a["reproduced"], n, "replay differs from the recording: {a}");
    assert_eq!(a["kills"], victims.len(), "{a}");
    for k in a["decisions"].as_array().unwrap() {
        assert_eq!(k["recorded"], true, "{k}");
    }
    assert!(j["limit"].as_str().unwrap().contains("cannot know"));

    // A lower thrashing limit kills in the moderate window already.
    let b = d.dir.path("b.toml");
    std::fs::write(
        &b,
        "thrashing_limit = 30\ndirect_reclaim_below_min = false\n",
    )
    .unwrap();
    let j = ok_json(&lmkctl(&[
        "--json",
        "replay",
        f,
        "--vs",
        b.to_str().unwrap(),
    ]));
    let (a, bb) = (&j["settings"][0], &j["settings"][1]);
    let first_a = a["earliest_kill_ms"].as_u64().unwrap();
    let first_b = bb["earliest_kill_ms"].as_u64().unwrap();
    assert!(
        first_b + 1000 < first_a,
        "B's first kill {first_b} ms, A's {first_a} ms"
    );
    let diff = &j["differences"][0];
    assert!(diff["a"].is_null(), "{diff}");
    assert_eq!(diff["b"]["reason"], "low_swap_and_thrashing", "{diff}");
    assert_eq!(diff["b"]["band"], "cached (900-1000)", "{diff}");
    assert!(j["differences_total"].as_u64().unwrap() >= 1);

    // The human form says the same, and the limit.
    let t = ok_text(&lmkctl(&["replay", f, "--vs", b.to_str().unwrap()]));
    assert!(
        t.contains(&format!("(reproduced {n} of {n} recorded decisions)")),
        "{t}"
    );
    assert!(
        t.contains("first points where A and B decide differently"),
        "{t}"
    );
    assert!(t.contains("limit: a replay cannot know"), "{t}");
}

#[test]
fn replay_says_what_is_wrong_with_a_bad_file() {
    let dir = TempDir::new("replay-bad");
    let f = dir.path("junk");
    std::fs::write(&f, b"definitely not a recording").unwrap();
    let o = lmkctl(&["replay", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("not an lmkd-rs recording (bad magic)"), "{e}");
    let o = lmkctl(&["replay", dir.path("missing").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(9));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("read ") && e.contains("missing"), "{e}");
}
