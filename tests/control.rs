//! The control socket and lmkctl, on the real daemon binary (and the
//! in-process harness where a kill has to be provoked): every command in
//! both output forms, who may read and who may change, the data socket's
//! clients unaffected, and `kills --follow` seeing a real kill.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::inproc::InProc;
use common::lmkctl::{ok_json, ok_text};
use common::*;
use lmkd::proto::Command as Cmd;
use serde_json::Value;

fn ctl_path(d: &Daemon) -> PathBuf {
    lmkd::control::default_path(&d.socket)
}

fn lmkctl_cmd(sock: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lmkctl"));
    c.arg("--socket").arg(sock).args(args);
    c.env_remove("LMKCTL_SOCKET");
    c
}

fn lmkctl(sock: &Path, args: &[&str]) -> Output {
    lmkctl_cmd(sock, args).output().expect("run lmkctl")
}

/// Runs lmkctl as `uid` (setresuid in the child before exec).
fn lmkctl_as(uid: u32, sock: &Path, args: &[&str]) -> Output {
    let mut c = lmkctl_cmd(sock, args);
    // SAFETY: setresuid/setresgid are async-signal-safe; nothing else runs
    // between fork and exec.
    unsafe {
        c.pre_exec(move || {
            if libc::setresgid(uid, uid, uid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    c.output().expect("run lmkctl as another uid")
}

/// Lines of a child's stdout, read on a thread so a missing line fails the
/// test instead of hanging it.
fn line_reader(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    rx
}

const LINE_WAIT: Duration = Duration::from_secs(10);

/// A follower process, killed however the test ends.
struct Follower(std::process::Child);

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Daemon {
    Daemon::start("control", "")
}

#[test]
fn every_command_in_both_forms() {
    if !need_root("every_command_in_both_forms") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    let kids: Vec<Sleeper> = (0..3).map(|_| Sleeper::new()).collect();
    let c = d.connect();
    for (i, k) in kids.iter().enumerate() {
        c.send(&Cmd::ProcPrio(prio(k.pid(), 100 * (i as i32 + 1))))
            .unwrap();
    }
    Daemon::sync(&c);

    // status
    let t = ok_text(&lmkctl(&sock, &["status"]));
    assert!(t.contains("lmkd-rs") && t.contains("table: 3 of"), "{t}");
    assert!(
        t.contains("psi_complete_stall_ms") && t.contains("file"),
        "{t}"
    );
    let j = ok_json(&lmkctl(&sock, &["--json", "status"]));
    assert_eq!(j["table_used"], 3);
    assert_eq!(j["protocol"], 1);
    let src = |j: &Value, k: &str| {
        j["config"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == k)
            .unwrap()["source"]
            .clone()
    };
    assert_eq!(src(&j, "psi_complete_stall_ms"), "file");
    assert_eq!(src(&j, "thrashing_limit"), "default");

    // procs, both sort orders
    let j = ok_json(&lmkctl(&sock, &["--json", "procs"]));
    let adjs: Vec<i64> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["adj"].as_i64().unwrap())
        .collect();
    assert_eq!(
        adjs,
        [300, 200, 100],
        "procs sorts by adj, most killable first"
    );
    let p = &j[0];
    assert_eq!(p["pid"], kids[2].pid());
    assert_eq!(p["type"], "app");
    assert_eq!(p["name"], "sleep");
    assert!(p["rss_kb"].as_u64().unwrap() > 0);
    let j = ok_json(&lmkctl(&sock, &["--json", "procs", "--sort", "rss"]));
    let rss: Vec<u64> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["rss_kb"].as_u64().unwrap())
        .collect();
    assert!(rss.windows(2).all(|w| w[0] >= w[1]), "{rss:?}");
    let t = ok_text(&lmkctl(&sock, &["procs"]));
    assert!(t.starts_with("PID") && t.contains("3 processes"), "{t}");
    assert!(t.contains(&kids[0].pid().to_string()), "{t}");

    // kills (none yet)
    let j = ok_json(&lmkctl(&sock, &["--json", "kills"]));
    assert_eq!(j, Value::Array(vec![]));
    let t = ok_text(&lmkctl(&sock, &["kills"]));
    assert!(t.contains("0 kills"), "{t}");

    // stats: the commands above were counted
    let j = ok_json(&lmkctl(&sock, &["--json", "stats"]));
    let procprio = j["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "procprio")
        .unwrap()["count"]
        .as_u64()
        .unwrap();
    assert_eq!(procprio, 3);
    assert_eq!(j["event_to_signal"]["count"], 0);
    let t = ok_text(&lmkctl(&sock, &["stats"]));
    assert!(
        t.contains("procprio") && t.contains("event to signal"),
        "{t}"
    );

    // config get / set / reload
    let j = ok_json(&lmkctl(&sock, &["--json", "config", "get"]));
    assert!(j.as_array().unwrap().len() > 20);
    let t = ok_text(&lmkctl(&sock, &["config", "get", "thrashing_limit"]));
    assert!(t.contains("thrashing_limit") && t.contains("100"), "{t}");
    let j = ok_json(&lmkctl(
        &sock,
        &["--json", "config", "set", "thrashing_limit=40"],
    ));
    assert_eq!(j["value"], 40);
    assert_eq!(j["persisted"], false);
    let t = ok_text(&lmkctl(&sock, &["config", "set", "kill_timeout_ms=250"]));
    assert!(t.contains("not persisted"), "{t}");
    let j = ok_json(&lmkctl(
        &sock,
        &["--json", "config", "get", "thrashing_limit"],
    ));
    assert_eq!(j[0]["value"], 40);
    assert_eq!(j[0]["source"], "live");
    // The daemon really runs with it: a reload says so in the log only when
    // it applies, and the value comes back from the file afterwards.
    let t = ok_text(&lmkctl(&sock, &["reload"]));
    assert!(t.contains("reloaded"), "{t}");
    let j = ok_json(&lmkctl(&sock, &["--json", "reload"]));
    assert!(j["config_generation"].as_u64().unwrap() >= 3);
    let j = ok_json(&lmkctl(
        &sock,
        &["--json", "config", "get", "thrashing_limit"],
    ));
    assert_eq!(j[0]["value"], 100);
    assert_eq!(j[0]["source"], "default");
}

#[test]
fn bad_input_gets_typed_errors_and_exit_codes() {
    if !need_root("bad_input_gets_typed_errors_and_exit_codes") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    let o = lmkctl(&sock, &["config", "set", "thrashing_limit=5000"]);
    assert_eq!(o.status.code(), Some(5));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("thrashing_limit") && e.contains("5000") && e.contains("1000"),
        "{e}"
    );
    let o = lmkctl(&sock, &["--json", "config", "set", "max_procs=10"]);
    assert_eq!(o.status.code(), Some(5));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["error"]["kind"], "not_live");
    let o = lmkctl(&sock, &["--json", "config", "get", "nope"]);
    assert_eq!(o.status.code(), Some(5));
    let o = lmkctl(&sock, &["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    let o = lmkctl(&d.dir.path("absent.ctl"), &["status"]);
    assert_eq!(o.status.code(), Some(3));
    // The running value is untouched by the refused change.
    let j = ok_json(&lmkctl(
        &sock,
        &["--json", "config", "get", "thrashing_limit"],
    ));
    assert_eq!(j[0]["value"], 100);

    // Garbage on the wire gets an error line, and the connection goes on.
    let s = UnixStream::connect(&sock).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    w.write_all(b"{not json\n{\"cmd\":\"stats\"}\n").unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains("bad_request"), "{line}");
    line.clear();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("{\"stats\""), "{line}");
}

#[test]
fn shell_reads_but_may_not_change_and_others_are_refused() {
    if !need_root("shell_reads_but_may_not_change_and_others_are_refused") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    // The test directory must be reachable by the other uids.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&d.dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();

    let j = ok_json(&lmkctl_as(2000, &sock, &["--json", "status"]));
    assert!(j["version"].is_string());
    ok_text(&lmkctl_as(2000, &sock, &["procs"]));
    ok_text(&lmkctl_as(2000, &sock, &["stats"]));
    ok_text(&lmkctl_as(2000, &sock, &["config", "get"]));

    for args in [
        &["config", "set", "thrashing_limit=50"][..],
        &["reload"][..],
    ] {
        let o = lmkctl_as(2000, &sock, args);
        assert_eq!(o.status.code(), Some(4), "shell may not {args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("uid 2000 may read but not change"), "{e}");
    }
    let j = ok_json(&lmkctl(
        &sock,
        &["--json", "config", "get", "thrashing_limit"],
    ));
    assert_eq!(j[0]["value"], 100, "the shell's change must not apply");

    // system may change.
    ok_json(&lmkctl_as(
        1000,
        &sock,
        &["--json", "config", "set", "thrashing_limit=60"],
    ));

    let o = lmkctl_as(1234, &sock, &["status"]);
    assert_eq!(o.status.code(), Some(4));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("uid 1234 may not use the lmkd control socket"),
        "{e}"
    );
}

#[test]
fn control_clients_do_not_disturb_the_data_socket() {
    if !need_root("control_clients_do_not_disturb_the_data_socket") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    let kid = Sleeper::new();
    // AMS and friends hold the three data slots.
    let ams: Vec<_> = (0..3).map(|_| d.connect()).collect();
    for c in &ams {
        Daemon::sync(c);
    }
    // A fourth data client is turned away; the three keep working.
    let fourth = lmkd::client::Client::connect(&d.socket).unwrap();
    let r = fourth.request(
        &Cmd::GetKillCnt {
            min_adj: 0,
            max_adj: 1000,
        },
        Duration::from_millis(500),
    );
    assert!(r.is_err(), "a fourth data client must be refused: {r:?}");

    // More control clients than data slots, one of them hammering.
    let idle: Vec<UnixStream> = (0..6)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = {
        let stop = stop.clone();
        let sock = sock.clone();
        std::thread::spawn(move || {
            let s = UnixStream::connect(&sock).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut n = 0u64;
            let mut line = String::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let cmd = if n % 2 == 0 { "procs" } else { "stats" };
                w.write_all(format!("{{\"cmd\":\"{cmd}\"}}\n").as_bytes())
                    .unwrap();
                line.clear();
                r.read_line(&mut line).unwrap();
                assert!(!line.contains("error"), "{line}");
                n += 1;
            }
            n
        })
    };
    let end = Instant::now() + Duration::from_secs(2);
    let mut rounds = 0;
    let mut worst = Duration::ZERO;
    while Instant::now() < end {
        for (i, c) in ams.iter().enumerate() {
            let t = Instant::now();
            c.send(&Cmd::ProcPrio(prio(kid.pid(), 100 + i as i32)))
                .unwrap();
            Daemon::sync(c);
            worst = worst.max(t.elapsed());
        }
        rounds += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served = busy.join().unwrap();
    // A number to watch, not a timed assertion: a core that waited for the
    // control thread would show here as a slow worst round trip.
    eprintln!(
        "{rounds} AMS rounds (worst round trip {worst:?}) while the control client was served {served} requests"
    );
    assert!(served > 10 && rounds > 10);
    // Still exactly the three AMS connections, and all answer.
    for c in &ams {
        Daemon::sync(c);
    }
    drop(idle);
    let j = ok_json(&lmkctl(&sock, &["--json", "procs"]));
    assert_eq!(j.as_array().unwrap().len(), 1);
}

#[test]
fn kills_follow_sees_a_real_kill() {
    if !need_root("kills_follow_sees_a_real_kill") {
        return;
    }
    let victim = Sleeper::new();
    let d = InProc::start("control-follow", "small", &[victim.pid()], |_, _| {});
    let sock = lmkd::control::default_path(&d.dir.path("lmkd.sock"));
    let c = d.connect();
    c.send(&Cmd::ProcPrio(prio(victim.pid(), 950))).unwrap();
    Daemon::sync(&c);

    let spawn = |args: &[&str]| {
        Follower(
            lmkctl_cmd(&sock, args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    let mut follow = spawn(&["--json", "kills", "--follow"]);
    let mut human = spawn(&["kills", "--follow"]);
    let lines = line_reader(follow.0.stdout.take().unwrap());
    // Both followers are connected before the pressure comes.
    std::thread::sleep(Duration::from_millis(300));
    d.raise_complete();
    let line = lines
        .recv_timeout(LINE_WAIT)
        .expect("kills --follow printed no kill");
    let k: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(k["pid"], victim.pid());
    assert_eq!(k["adj"], 950);
    assert_eq!(k["name"], "sleep");
    assert!(k["reason"].is_string());
    assert!(k["event_to_signal_us"].as_u64().unwrap() > 0);
    assert!(
        k["signal_to_exit_us"].as_u64().is_some(),
        "the follower waits for the exit time: {line}"
    );
    drop(follow);

    let hl = line_reader(human.0.stdout.take().unwrap());
    let header = hl.recv_timeout(LINE_WAIT).unwrap();
    assert!(header.starts_with("TIME_MS"), "{header}");
    let row = hl.recv_timeout(LINE_WAIT).expect("no human kill row");
    assert!(row.contains(&victim.pid().to_string()), "{row}");
    drop(human);

    // The history and the stats have it too.
    let j = ok_json(&lmkctl(&sock, &["--json", "kills"]));
    assert_eq!(j[0]["pid"], victim.pid());
    let j = ok_json(&lmkctl(&sock, &["--json", "stats"]));
    assert_eq!(j["event_to_signal"]["count"], 1);
    assert_eq!(j["signal_to_exit"]["count"], 1);
    let j = ok_json(&lmkctl(&sock, &["--json", "status"]));
    assert_eq!(j["kills_total"], 1);
    let band = j["kills_by_band"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["count"] == 1)
        .unwrap()["name"]
        .clone();
    assert_eq!(band, "cached (900-1000)");
}

#[test]
fn init_socket_is_served_when_init_passes_one() {
    if !need_root("init_socket_is_served_when_init_passes_one") {
        return;
    }
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("control-init");
    let path = dir.path("lmkd_ctl");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    // SAFETY: clearing close-on-exec on our own descriptor so the daemon
    // inherits it, as it inherits init's.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let d = Daemon::start_with("control-init", "", &[], |cmd| {
        cmd.env(lmkd::control::ANDROID_SOCKET_ENV, fd.to_string());
    });
    drop(listener);
    assert!(
        !exists(&ctl_path(&d)),
        "with init's socket the daemon binds no path of its own"
    );
    let j = ok_json(&lmkctl(&path, &["--json", "status"]));
    assert_eq!(j["pid"], d.child.id());
}

#[test]
fn too_many_control_clients_are_told_so() {
    if !need_root("too_many_control_clients_are_told_so") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    let held: Vec<UnixStream> = (0..lmkd::control::MAX_CLIENTS)
        .map(|_| answered_connection(&sock))
        .collect();
    let o = lmkctl(&sock, &["status"]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "the ninth client is told to retry"
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("control clients are connected already"), "{e}");
    drop(held);
    assert!(
        eventually(Duration::from_secs(5), || lmkctl(&sock, &["status"])
            .status
            .success()),
        "a slot frees when a client leaves"
    );
}

/// Threads of the daemon named `lmkd-control-c` (connection threads).
fn connection_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "lmkd-control-c")
        .count()
}

/// Connects, asks for `stats` and reads the reply line.
fn stats_reply(sock: &Path) -> (UnixStream, String) {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&s).write_all(b"{\"cmd\":\"stats\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).unwrap();
    (s, line)
}

/// A control connection that has been answered (so it has its thread).
fn answered_connection(sock: &Path) -> UnixStream {
    let (s, line) = stats_reply(sock);
    assert!(line.starts_with("{\"stats\""), "{line}");
    s
}

#[test]
fn one_connection_thread_waits_from_start_up_and_is_kept() {
    if !need_root("one_connection_thread_waits_from_start_up_and_is_kept") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    let pid = d.child.id();
    assert!(
        eventually(Duration::from_secs(5), || connection_threads(pid) == 1),
        "one thread waits before any client"
    );
    let first = answered_connection(&sock);
    assert_eq!(
        connection_threads(pid),
        1,
        "the first client gets the waiting thread"
    );
    let second = answered_connection(&sock);
    assert_eq!(
        connection_threads(pid),
        2,
        "a second client at once gets its own"
    );
    drop(first);
    drop(second);
    assert!(
        eventually(Duration::from_secs(5), || connection_threads(pid) == 1),
        "one thread is kept when both leave, not none or two"
    );
    for _ in 0..3 {
        drop(answered_connection(&sock));
        assert!(eventually(Duration::from_secs(5), || connection_threads(
            pid
        ) == 1));
    }
}

#[test]
fn clients_coming_and_going_at_once_are_all_served() {
    if !need_root("clients_coming_and_going_at_once_are_all_served") {
        return;
    }
    let d = start();
    let sock = ctl_path(&d);
    // Four clients at a time, 25 each, connecting and hanging up as fast
    // as they can: every one is answered (none is lost in a hand-over to
    // the kept thread, which would hang it), and one thread is left
    // waiting afterwards. Connections the daemon has not yet seen close
    // still count against its limit, so "busy" is a fair answer here: the
    // client tries again, as lmkctl's users are told to.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let mut tries = 0;
                    loop {
                        let (_conn, line) = stats_reply(&sock);
                        if line.starts_with("{\"stats\"") {
                            break;
                        }
                        assert!(line.contains("\"busy\"") && tries < 100, "{line}");
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("a client was not answered");
    }
    assert!(
        eventually(Duration::from_secs(5), || connection_threads(d.child.id())
            == 1),
        "one thread is left waiting"
    );
    assert!(lmkctl(&sock, &["status"]).status.success());
}

#[test]
fn control_flag_names_the_socket() {
    if !need_root("control_flag_names_the_socket") {
        return;
    }
    let dir = TempDir::new("control-flag");
    let path = dir.path("my.ctl");
    let d = Daemon::start_with(
        "control-flag",
        "",
        &["--control", path.to_str().unwrap()],
        |_| {},
    );
    assert!(!exists(&ctl_path(&d)));
    let j = ok_json(&lmkctl(&path, &["--json", "status"]));
    assert_eq!(j["pid"], d.child.id());
    // LMKCTL_SOCKET stands in for --socket.
    let o = Command::new(env!("CARGO_BIN_EXE_lmkctl"))
        .env("LMKCTL_SOCKET", &path)
        .arg("stats")
        .output()
        .unwrap();
    assert!(ok_text(&o).contains("event to signal"));
}
