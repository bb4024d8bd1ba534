//! The real `lmkd` binary on a real socket, driven with real processes:
//! every command's semantics, and every kind of bad input leaving the
//! daemon running with its table intact.

mod common;

use std::fs;
use std::time::Duration;

use common::*;
use lmkd::client::{Client, Message};
use lmkd::proto::{self, Command as Cmd, PrioBatch, TargetTable};

const T: Duration = Duration::from_secs(5);

#[test]
fn procprio_forms_set_oom_score_adj() {
    if !need_root("procprio_forms_set_oom_score_adj") {
        return;
    }
    let d = Daemon::start("forms", "");
    let c = d.connect();
    let s: Vec<Sleeper> = (0..8).map(|_| Sleeper::new()).collect();
    // 3-, 4- and 5-arg PROCPRIO.
    c.send_raw(&procprio3(s[0].pid(), 10_001, 901)).unwrap();
    c.send_raw(&words(&[proto::id::PROCPRIO, s[1].pid(), 10_002, 902, 0]))
        .unwrap();
    c.send(&Cmd::ProcPrio(prio(s[2].pid(), 903))).unwrap();
    // PROCS_PRIO in both record forms: 4-field x3 and 5-field x3 (64 bytes).
    let mut four = vec![proto::id::PROCS_PRIO];
    for (i, p) in s[3..6].iter().enumerate() {
        four.extend([p.pid(), 10_000, 910 + i as i32, 0]);
    }
    c.send_raw(&words(&four)).unwrap();
    let batch = PrioBatch::from_slice(&[prio(s[6].pid(), 920), prio(s[7].pid(), 921)]).unwrap();
    c.send(&Cmd::ProcsPrio(batch)).unwrap();
    Daemon::sync(&c);
    let got: Vec<i32> = s.iter().map(Sleeper::oom_adj).collect();
    assert_eq!(got, [901, 902, 903, 910, 911, 912, 920, 921]);
    // An update moves the process; removal then frees it for another client.
    c.send(&Cmd::ProcPrio(prio(s[0].pid(), 500))).unwrap();
    Daemon::sync(&c);
    assert_eq!(s[0].oom_adj(), 500);
}

#[test]
fn for_lmkd_only_leaves_oom_score_adj_alone() {
    if !need_root("for_lmkd_only_leaves_oom_score_adj_alone") {
        return;
    }
    let d = Daemon::start("lmkdonly", "");
    let c = d.connect();
    let s = Sleeper::new();
    let before = s.oom_adj();
    let mut p = prio(s.pid(), 777);
    p.for_lmkd_only = true;
    c.send(&Cmd::ProcPrio(p)).unwrap();
    Daemon::sync(&c);
    assert_eq!(s.oom_adj(), before);
    // It is tracked all the same: another client may not take it over.
    let other = Remote::connect(&d.socket);
    other.send(&Cmd::ProcPrio(prio(s.pid(), 600)));
    other.sync();
    d.wait_log(
        &format!("for pid {} refused: record belongs to client pid", s.pid()),
        T,
    );
    assert_eq!(s.oom_adj(), before);
}

#[test]
fn ownership_removal_and_purge() {
    if !need_root("ownership_removal_and_purge") {
        return;
    }
    let d = Daemon::start("owner", "debug = true");
    let a = Remote::connect(&d.socket);
    let b = Remote::connect(&d.socket);
    let s1 = Sleeper::new();
    a.send(&Cmd::ProcPrio(prio(s1.pid(), 900)));
    a.sync();
    // B may neither change nor remove A's record.
    b.send(&Cmd::ProcPrio(prio(s1.pid(), 100)));
    b.send(&Cmd::ProcRemove { pid: s1.pid() });
    b.sync();
    assert_eq!(s1.oom_adj(), 900);
    d.wait_log_count(
        &format!(
            "for pid {} refused: record belongs to client pid {}",
            s1.pid(),
            a.pid
        ),
        2,
        T,
    );
    // A removes it; now B can register the same process.
    a.send(&Cmd::ProcRemove { pid: s1.pid() });
    a.sync();
    b.send(&Cmd::ProcPrio(prio(s1.pid(), 100)));
    b.sync();
    assert_eq!(s1.oom_adj(), 100);

    // Purge: records of a gone client become unowned; PROCPURGE from B
    // deletes B's and the unowned ones, and leaves C's.
    let (p_a, p_b, p_c) = (Sleeper::new(), Sleeper::new(), Sleeper::new());
    a.send(&Cmd::ProcPrio(prio(p_a.pid(), 910)));
    a.sync();
    let a_pid = a.pid;
    drop(a);
    d.wait_log(&format!("client pid {a_pid} disconnected"), T);
    let c = Remote::connect(&d.socket);
    b.send(&Cmd::ProcPrio(prio(p_b.pid(), 920)));
    c.send(&Cmd::ProcPrio(prio(p_c.pid(), 930)));
    b.sync();
    c.sync();
    b.send(&Cmd::ProcPurge);
    b.sync();
    for gone in [p_a.pid(), p_b.pid(), s1.pid()] {
        c.send(&Cmd::ProcRemove { pid: gone });
        c.sync();
        d.wait_log(&format!("for pid {gone} refused: pid is not registered"), T);
    }
    // C's record survived: B still may not touch it.
    b.send(&Cmd::ProcPrio(prio(p_c.pid(), 100)));
    b.sync();
    d.wait_log(
        &format!(
            "for pid {} refused: record belongs to client pid {}",
            p_c.pid(),
            c.pid
        ),
        T,
    );
    assert_eq!(p_c.oom_adj(), 930);
}

#[test]
fn unowned_records_are_claimed_by_the_next_client() {
    if !need_root("unowned_records_are_claimed_by_the_next_client") {
        return;
    }
    let d = Daemon::start("claim", "");
    let s = Sleeper::new();
    {
        let a = Remote::connect(&d.socket);
        a.send(&Cmd::ProcPrio(prio(s.pid(), 900)));
        a.sync();
    }
    d.wait_log("disconnected", T);
    let b = Remote::connect(&d.socket);
    b.send(&Cmd::ProcPrio(prio(s.pid(), 800)));
    b.sync();
    assert_eq!(s.oom_adj(), 800);
}

#[test]
fn getkillcnt_subscribe_target_and_boot() {
    if !need_root("getkillcnt_subscribe_target_and_boot") {
        return;
    }
    let d = Daemon::start("misc", "delay_monitors_until_boot = true");
    let c = d.connect();
    d.wait_log("pressure monitors delayed", T);
    // GETKILLCNT: exactly [4, count] (8 bytes), zero before any kill.
    c.send(&Cmd::GetKillCnt {
        min_adj: 0,
        max_adj: 1000,
    })
    .unwrap();
    match c.recv(Some(T)).unwrap() {
        Some(Message::Reply { cmd: 4, value: 0 }) => {}
        other => panic!("unexpected GETKILLCNT answer {other:?}"),
    }
    assert_eq!(
        c.request(
            &Cmd::GetKillCnt {
                min_adj: 1000,
                max_adj: 0
            },
            T
        )
        .unwrap(),
        0
    );
    subscribe_all(&c);
    c.send(&Cmd::Subscribe { event: 7 }).unwrap();
    let levels = proto::AMS_PHONE_TARGETS;
    c.send(&Cmd::Target(TargetTable::from_slice(&levels).unwrap()))
        .unwrap();
    // A second TARGET within 1 s is ignored (and says so).
    c.send(&Cmd::Target(TargetTable::from_slice(&levels[..1]).unwrap()))
        .unwrap();
    Daemon::sync(&c);
    assert!(
        !d.log_text().contains("pressure monitor:"),
        "monitors armed before START_MONITORING"
    );
    c.send(&Cmd::StartMonitoring).unwrap();
    Daemon::sync(&c);
    // START_MONITORING really arms the triggers.
    d.wait_log("pressure monitor:", T);
    d.wait_log("unknown subscription event 7", T);
    d.wait_log("TARGET less than 1000 ms after the previous one", T);
    assert_eq!(c.request(&Cmd::BootCompleted, T).unwrap(), 0);
    assert_eq!(c.request(&Cmd::BootCompleted, T).unwrap(), 1);
}

#[test]
fn update_props_is_atomic() {
    if !need_root("update_props_is_atomic") {
        return;
    }
    let mut d = Daemon::start("props", "allowed_uids = [0, 1000]");
    let c = d.connect();
    let base = fs::read_to_string(&d.config).unwrap();
    // A good file: 0, and the new value is in force (the reload logs each
    // key it changed, from the value in force to the new one).
    fs::write(&d.config, format!("{base}kill_timeout_ms = 200\n")).unwrap();
    assert_eq!(c.request(&Cmd::UpdateProps, T).unwrap(), 0);
    d.wait_log("reload: kill_timeout_ms 100 -> 200", T);
    // A broken file (and one with a wrong type): -1, nothing applied, not
    // even its valid lines.
    let broken = base.replace("allowed_uids = [0, 1000]", "allowed_uids = [1000]")
        + "kill_timeout_ms = 300\nno_such_key = 1\n";
    fs::write(&d.config, broken).unwrap();
    assert_eq!(c.request(&Cmd::UpdateProps, T).unwrap(), -1);
    d.wait_log("no_such_key", T);
    fs::write(
        &d.config,
        base.replace("allowed_uids = [0, 1000]", "allowed_uids = [1000]")
            + "kill_timeout_ms = \"x\"\n",
    )
    .unwrap();
    assert_eq!(c.request(&Cmd::UpdateProps, T).unwrap(), -1);
    // Root is still allowed, so the half-valid allowed_uids was not applied.
    let c2 = d.connect();
    Daemon::sync(&c2);
    drop(c2);
    // A good file that drops root: new root connections are now refused.
    fs::write(
        &d.config,
        base.replace("allowed_uids = [0, 1000]", "allowed_uids = [1000]"),
    )
    .unwrap();
    assert_eq!(c.request(&Cmd::UpdateProps, T).unwrap(), 0);
    // The diff starts from what was in force: the rejected files left
    // kill_timeout_ms at 200 (not 300) and allowed_uids whole.
    let log = d.wait_log("reload: kill_timeout_ms 200 -> 100", T);
    assert!(
        log.contains("reload: allowed_uids [0, 1000] -> [1000]"),
        "{log}"
    );
    assert!(
        !log.contains("-> 300"),
        "a rejected value was applied:\n{log}"
    );
    let c3 = d.connect();
    let r = c3.request(
        &Cmd::GetKillCnt {
            min_adj: 0,
            max_adj: 0,
        },
        T,
    );
    assert!(
        r.is_err(),
        "a root client was served after root was removed from allowed_uids"
    );
    d.wait_log("uid 0 is not allowed", T);
    assert!(d.alive());
    // Credentials are checked on every packet: the established root
    // connection is now refused too.
    let r = c.request(
        &Cmd::GetKillCnt {
            min_adj: 0,
            max_adj: 0,
        },
        T,
    );
    assert!(
        r.is_err(),
        "a root packet was served after root was removed from allowed_uids"
    );
}

#[test]
fn fourth_connection_is_refused_and_three_keep_working() {
    if !need_root("fourth_connection_is_refused_and_three_keep_working") {
        return;
    }
    let d = Daemon::start("conns", "");
    let conns: Vec<Client> = (0..3).map(|_| d.connect()).collect();
    for c in &conns {
        Daemon::sync(c);
    }
    let fourth = d.connect();
    let r = fourth.request(
        &Cmd::GetKillCnt {
            min_adj: 0,
            max_adj: 0,
        },
        Duration::from_secs(2),
    );
    assert!(r.is_err(), "a 4th connection was served");
    d.wait_log("already 3 clients connected", T);
    for c in &conns {
        Daemon::sync(c);
    }
    // Once one of the three leaves, a new client gets in.
    drop(conns.into_iter().next());
    d.wait_log("disconnected", T);
    let again = d.connect();
    Daemon::sync(&again);
}

#[test]
fn bad_input_leaves_daemon_and_table_intact() {
    if !need_root("bad_input_leaves_daemon_and_table_intact") {
        return;
    }
    let mut d = Daemon::start("badinput", "");
    let c = d.connect();
    let s = Sleeper::new();
    c.send(&Cmd::ProcPrio(prio(s.pid(), 900))).unwrap();
    Daemon::sync(&c);

    // Out-of-range adj and type, pid <= 0: refused, nothing changes.
    c.send(&Cmd::ProcPrio(prio(s.pid(), 1001))).unwrap();
    c.send(&Cmd::ProcPrio(prio(s.pid(), -1001))).unwrap();
    let mut bad_type = prio(s.pid(), 100);
    bad_type.ptype = 2;
    c.send(&Cmd::ProcPrio(bad_type)).unwrap();
    c.send(&Cmd::ProcPrio(prio(0, 100))).unwrap();
    c.send(&Cmd::ProcPrio(prio(-5, 100))).unwrap();
    // A thread id, not a process.
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let th = std::thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tx.send(unsafe { libc::gettid() }).unwrap();
        let _ = stop_rx.recv();
    });
    let tid = rx.recv().unwrap();
    let own_adj = oom_adj(std::process::id() as i32);
    c.send(&Cmd::ProcPrio(prio(tid, 950))).unwrap();
    // A dead pid.
    let mut dead = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = dead.id() as i32;
    dead.wait().unwrap();
    c.send(&Cmd::ProcPrio(prio(dead_pid, 900))).unwrap();
    Daemon::sync(&c);
    d.wait_log("oom_score_adj 1001 outside [-1000, 1000]", T);
    d.wait_log("oom_score_adj -1001 outside [-1000, 1000]", T);
    d.wait_log("process type 2 is not 0 (app) or 1 (service)", T);
    d.wait_log_count("pid must be positive", 2, T);
    d.wait_log(
        &format!("for pid {tid} refused: it is a thread of process"),
        T,
    );
    d.wait_log(&format!("for pid {dead_pid} refused: process is gone"), T);
    assert_eq!(oom_adj(std::process::id() as i32), own_adj);
    stop_tx.send(()).unwrap();
    th.join().unwrap();

    // Every malformed class: short, over 64 bytes, unaligned, bad argument
    // count, unknown id. Commands with a reply get [id, -1].
    let malformed: Vec<Vec<u8>> = vec![
        vec![0, 0],
        words(&[proto::id::PROCPRIO; 17]),
        vec![0, 0, 0, 1, 0, 0],
        words(&[proto::id::PROCPRIO, 1, 2]),
        words(&[proto::id::PROCS_PRIO, 1, 2, 3, 4, 5, 6]),
        words(&[proto::id::TARGET]),
        words(&[99, 1, 2]),
        words(&[proto::id::PROCKILL, 1, 2, 3]),
    ];
    for m in &malformed {
        c.send_raw(m).unwrap();
    }
    // A zero-length datagram reads as a hang-up on SEQPACKET: it may close
    // only its own connection.
    let z = d.connect();
    z.send_raw(&[]).unwrap();
    drop(z);
    for id in [
        proto::id::GETKILLCNT,
        proto::id::UPDATE_PROPS,
        proto::id::BOOT_COMPLETED,
    ] {
        c.send_raw(&words(&[id, 1, 2, 3, 4])).unwrap();
        match c.recv(Some(T)).unwrap() {
            Some(Message::Reply { cmd, value: -1 }) if cmd == id => {}
            other => panic!("malformed command {id} answered {other:?}"),
        }
    }
    // An over-long GETKILLCNT is refused with the reply shape too.
    c.send_raw(&words(&[proto::id::GETKILLCNT; 20])).unwrap();
    assert!(matches!(
        c.recv(Some(T)).unwrap(),
        Some(Message::Reply { cmd: 4, value: -1 })
    ));
    d.wait_log("longer than 64", T);
    d.wait_log("unknown command id 99", T);
    d.wait_log("not a whole number of words", T);

    // Still running, record intact: its adj never moved, and the owner can
    // still update it.
    assert!(d.alive());
    assert_eq!(s.oom_adj(), 900);
    // Another client is still refused (the record is there and owned), and
    // the owner can still move it.
    let other = Remote::connect(&d.socket);
    other.send(&Cmd::ProcPrio(prio(s.pid(), 100)));
    other.sync();
    d.wait_log(
        &format!("for pid {} refused: record belongs to client pid", s.pid()),
        T,
    );
    assert_eq!(s.oom_adj(), 900);
    c.send(&Cmd::ProcPrio(prio(s.pid(), 150))).unwrap();
    Daemon::sync(&c);
    assert_eq!(s.oom_adj(), 150);
}

#[test]
fn send_then_close_is_not_lost() {
    if !need_root("send_then_close_is_not_lost") {
        return;
    }
    let d = Daemon::start("sendclose", "");
    let s: Vec<Sleeper> = (0..20).map(|_| Sleeper::new()).collect();
    for (i, p) in s.iter().enumerate() {
        let c = d.connect();
        c.send(&Cmd::ProcPrio(prio(p.pid(), 300 + i as i32)))
            .unwrap();
        drop(c);
    }
    for (i, p) in s.iter().enumerate() {
        assert!(
            eventually(T, || p.oom_adj() == 300 + i as i32),
            "command of client {i} was lost"
        );
    }
}

#[test]
fn packet_without_credentials_closes_only_that_connection() {
    if !need_root("packet_without_credentials_closes_only_that_connection") {
        return;
    }
    // As init would, but with a socket lacking SO_PASSCRED (an rc line
    // without +passcred): a client that does not set SO_PASSCRED itself then
    // sends packets without credentials.
    let dir = TempDir::new("nocreds-sock");
    let path = dir.path("init.sock");
    let (fd, addr) = raw_seqpacket_listener(&path);
    let d = Daemon::start_with("nocreds", "", &[], |cmd| {
        cmd.env("ANDROID_SOCKET_lmkd", fd.to_string());
    });
    // SAFETY: our copy of the descriptor is no longer needed.
    unsafe { libc::close(fd) };
    d.wait_log("lacks SO_PASSCRED", T);
    // An idle client that stays connected.
    let idle = Client::connect(&path).unwrap();
    d.wait_log_count("client connected", 1, T);
    // SAFETY: a plain SEQPACKET socket without SO_PASSCRED.
    let bare = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
    // SAFETY: addr is initialised.
    let r = unsafe {
        libc::connect(
            bare,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        )
    };
    assert_eq!(r, 0);
    // Packets queued before accept get credentials from the kernel; wait
    // until the daemon has accepted us.
    d.wait_log_count("client connected", 2, T);
    let pkt = words(&[proto::id::GETKILLCNT, 0, 1000]);
    // SAFETY: sending from a live buffer.
    let n = unsafe { libc::send(bare, pkt.as_ptr() as *const _, pkt.len(), 0) };
    assert_eq!(n, pkt.len() as isize);
    d.wait_log("packet without credentials", T);
    // The bare connection was closed without an answer...
    let mut buf = [0u8; 16];
    let mut pfd = libc::pollfd {
        fd: bare,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 5000) };
    // SAFETY: reading into a live buffer.
    let n = unsafe {
        libc::recv(
            bare,
            buf.as_mut_ptr() as *mut _,
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    assert_eq!(
        n, 0,
        "the connection without credentials got an answer instead of being closed"
    );
    // SAFETY: our socket.
    unsafe { libc::close(bare) };
    // ...while the idle one stays open, the daemon runs and still accepts.
    assert!(
        matches!(idle.recv(Some(Duration::from_millis(300))), Ok(None)),
        "the idle connection was closed too"
    );
    let _third = Client::connect(&path).unwrap();
    d.wait_log_count("client connected", 3, T);
    let mut d = d;
    assert!(d.alive());
}

/// A bound SEQPACKET socket without SO_PASSCRED, inheritable by a child.
fn raw_seqpacket_listener(path: &std::path::Path) -> (i32, libc::sockaddr_un) {
    // SAFETY: plain socket(2) without CLOEXEC so the daemon inherits it.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0) };
    assert!(fd >= 0);
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr
        .sun_path
        .iter_mut()
        .zip(path.as_os_str().as_encoded_bytes())
    {
        *d = *s as libc::c_char;
    }
    // SAFETY: addr is initialised.
    let r = unsafe {
        libc::bind(
            fd,
            &addr as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_un>() as u32,
        )
    };
    assert_eq!(r, 0);
    (fd, addr)
}

#[test]
fn socket_is_0660_and_removed_on_sigterm() {
    if !need_root("socket_is_0660_and_removed_on_sigterm") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let mut d = Daemon::start("sock", "");
    let mode = fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    // The 2 s window fallback (no CAP_SYS_RESOURCE) is said once, not per trigger.
    assert!(d.log_text().matches("refused 1 s trigger windows").count() <= 1);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGTERM) };
    let status = d.child.wait().unwrap();
    assert!(status.success(), "lmkd exited with {status} on SIGTERM");
    assert!(!d.socket.exists(), "socket file left behind");
}

#[test]
fn without_psi_falls_back_to_vmpressure_or_exits_clearly() {
    if !need_root("without_psi_falls_back_to_vmpressure_or_exits_clearly") {
        return;
    }
    let memcg = std::path::Path::new("/sys/fs/cgroup/memory");
    if memcg.join("memory.pressure_level").exists() {
        let d = Daemon::start("vmpressure", "psi_path = \"/nonexistent/pressure\"");
        d.wait_log(
            "no PSI at /nonexistent/pressure: falling back to memcg v1 vmpressure",
            T,
        );
        d.wait_log("pressure monitor: memcg v1 vmpressure", T);
    } else {
        eprintln!("note: no memcg v1 here; only the no-source exit is checked");
    }
    // Neither PSI nor vmpressure: a clear message and a non-zero exit.
    let dir = TempDir::new("nosource");
    let cfg = dir.path("lmkd.toml");
    fs::write(
        &cfg,
        format!(
            "socket_path = {:?}\npsi_path = \"/nonexistent/pressure\"\nvmpressure_memcg = \"/nonexistent/memcg\"\n",
            dir.path("s.sock")
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lmkd"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no pressure source"), "{err}");
    assert!(
        !dir.path("s.sock").exists(),
        "socket left behind after a failed start"
    );
}

#[test]
fn memory_is_locked_and_sighup_reloads() {
    if !need_root("memory_is_locked_and_sighup_reloads") {
        return;
    }
    let d = Daemon::start("locked", "");
    let status = fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    let kb = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let (rss, lck) = (kb("VmRSS:"), kb("VmLck:"));
    assert!(lck >= rss, "VmLck {lck} kB does not cover VmRSS {rss} kB");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    d.wait_log("configuration reloaded", T);
}

/// One mapping of `/proc/PID/smaps`, with the fields these tests read.
struct Mapping {
    range: String,
    perms: String,
    path: Option<String>,
    size_kb: u64,
    rss_kb: u64,
    flags: Vec<String>,
}

impl Mapping {
    fn flag(&self, f: &str) -> bool {
        self.flags.iter().any(|x| x == f)
    }
}

fn smaps(pid: u32) -> Vec<Mapping> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out: Vec<Mapping> = vec![];
    for l in text.lines() {
        let words: Vec<&str> = l.split_whitespace().collect();
        let kb = || words[1].parse::<u64>().unwrap();
        match words.first() {
            Some(w) if w.contains('-') && w.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => {
                out.push(Mapping {
                    range: w.to_string(),
                    perms: words[1].to_string(),
                    path: words.get(5).map(|p| p.to_string()),
                    size_kb: 0,
                    rss_kb: 0,
                    flags: vec![],
                })
            }
            Some(&"Size:") => out.last_mut().unwrap().size_kb = kb(),
            Some(&"Rss:") => out.last_mut().unwrap().rss_kb = kb(),
            Some(&"VmFlags:") => {
                out.last_mut().unwrap().flags = words[1..].iter().map(|f| f.to_string()).collect()
            }
            _ => {}
        }
    }
    out
}

/// Locked, accessible mappings: (size kB, rss kB, locks on fault). Guard
/// pages (no access) are left out.
fn locked_mappings(pid: u32) -> Vec<(u64, u64, bool)> {
    smaps(pid)
        .iter()
        .filter(|m| m.flag("lo") && m.perms != "---p")
        .map(|m| (m.size_kb, m.rss_kb, m.flag("lf")))
        .collect()
}

/// Guard pages (no access) that are resident: address range and kB.
/// Thread stacks are mapped without access and opened up, so their guards
/// never are; std's signal stacks are mapped writable and then guarded, so
/// theirs are exactly when the mapping was populated.
fn resident_guards(pid: u32) -> Vec<(String, u64)> {
    smaps(pid)
        .into_iter()
        .filter(|m| m.perms == "---p" && m.rss_kb > 0)
        .map(|m| (m.range, m.rss_kb))
        .collect()
}

/// The daemon's code mappings (`r-xp` of `exe`): size and resident kB,
/// and whether locked on fault.
fn code_mappings(pid: u32, exe: &str) -> Vec<(u64, u64, bool)> {
    smaps(pid)
        .iter()
        .filter(|m| m.perms == "r-xp" && m.path.as_deref() == Some(exe))
        .map(|m| (m.size_kb, m.rss_kb, m.flag("lf")))
        .collect()
}

/// Every mapping the kill path may touch is locked and resident from the
/// start; only the stacks of the threads off that path (the config loader,
/// the control plane and its connections), and every thread's signal
/// stack, are locked page by page as they are touched, which keeps ~500 kB of untouched stack out of RSS. The
/// daemon's own code is split the same way after start-up: the kill
/// path's section (`src/hot_text.ld`) stays whole, the rest is handed back
/// and pages in as it runs.
#[test]
fn kill_path_memory_is_resident_and_cold_stacks_page_in() {
    if !need_root("kill_path_memory_is_resident_and_cold_stacks_page_in") {
        return;
    }
    let d = Daemon::start("cold-stacks", "");
    let ctl = lmkd::control::default_path(&d.socket);
    // A control connection: its thread's stack too pages in.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lmkctl"))
        .args(["--socket", ctl.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let maps = locked_mappings(d.child.id());
    // Each thread's signal stack (std's, for its stack overflow handler)
    // is mapped inside the on-fault window, so neither it nor its guard is
    // resident.
    let guards = resident_guards(d.child.id());
    assert!(
        guards.is_empty(),
        "signal stacks populated (their guard pages are resident): {guards:?}"
    );
    // Stacks of 256 kB locked on fault: the loader's, the control
    // thread's, and a finished connection's that libc keeps for reuse.
    let paged: Vec<_> = maps.iter().filter(|m| m.2 && m.0 >= 256).collect();
    assert!(
        paged.len() >= 2,
        "want at least the loader and control stacks locked on fault: {maps:?}"
    );
    for &&(size, rss, _) in &paged {
        assert!(
            rss * 2 < size,
            "a cold stack is mostly resident: {size} kB, {rss} kB resident"
        );
    }
    let code = code_mappings(d.child.id(), env!("CARGO_BIN_EXE_lmkd"));
    let whole: Vec<_> = code.iter().filter(|m| !m.2).collect();
    let (cold, cold_rss) = code
        .iter()
        .filter(|m| m.2)
        .fold((0, 0), |a, m| (a.0 + m.0, a.1 + m.1));
    assert!(
        !whole.is_empty() && whole.iter().all(|m| m.1 == m.0),
        "the kill path's code is not wholly resident: {code:?}"
    );
    // (This debug build runs far more of its code than a release build,
    // whose code off the kill path stays about nine tenths out.)
    assert!(
        cold > 0 && cold_rss < cold,
        "the code off the kill path was not handed back: {cold_rss} of {cold} kB resident"
    );
    // The rest was populated when it was mapped (MCL_FUTURE): the core,
    // reaper and watchdog never fault on it.
    let short: Vec<_> = maps.iter().filter(|m| !m.2 && m.1 < m.0).collect();
    assert!(
        short.is_empty(),
        "locked mappings not fully resident: {short:?}"
    );
}

/// A core genuinely stuck inside a handler: the test ptrace-stops only the
/// daemon's core thread at the entry of the recvmsg that handles a client
/// packet (so the heartbeat says "busy"), and leaves the watchdog thread
/// running. The watchdog must kill by itself, only apps (adj >= 0), the
/// least important first, once per period while the core stays stuck;
/// when the core runs again the kills are counted, their records dropped
/// and subscribers told (stats, then PROCKILL).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[test]
fn watchdog_kills_apps_each_period_while_the_core_is_stuck() {
    if !need_root("watchdog_kills_apps_each_period_while_the_core_is_stuck") {
        return;
    }
    const PERIOD_MS: u64 = 1000;
    let d = Daemon::start("watchdog", &format!("watchdog_timeout_ms = {PERIOD_MS}"));
    let mut cached = Sleeper::new();
    let mut foreground = Sleeper::new();
    let mut native = Sleeper::new();
    let c = d.connect();
    let sub = d.connect();
    subscribe_all(&sub);
    c.send(&Cmd::ProcPrio(prio(cached.pid(), 950))).unwrap();
    c.send(&Cmd::ProcPrio(prio(foreground.pid(), 0))).unwrap();
    c.send(&Cmd::ProcPrio(prio(native.pid(), -900))).unwrap();
    Daemon::sync(&c);
    Daemon::sync(&sub);
    // The core runs on the daemon's main thread: tid == pid.
    let tid = d.child.id() as libc::pid_t;
    let wait = |what: &str| {
        let mut st = 0;
        // SAFETY: waiting for our tracee.
        let r = unsafe { libc::waitpid(tid, &mut st, libc::__WALL) };
        assert_eq!(r, tid, "waitpid ({what})");
        st
    };
    // SAFETY: ptrace requests on the daemon's main thread, which we trace
    // only for the length of this test and detach from at the end.
    unsafe {
        let opts = libc::PTRACE_O_TRACESYSGOOD as *mut libc::c_void;
        assert_eq!(
            libc::ptrace(libc::PTRACE_SEIZE, tid, 0, opts),
            0,
            "PTRACE_SEIZE"
        );
        assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0), 0);
    }
    wait("interrupt");
    // Wake the core with a packet and step it from syscall to syscall until
    // it enters the recvmsg that reads that packet.
    c.send(&Cmd::GetKillCnt {
        min_adj: 0,
        max_adj: 0,
    })
    .unwrap();
    let mut stuck = false;
    for _ in 0..200 {
        // SAFETY: resume the stopped tracee to its next syscall stop.
        unsafe { libc::ptrace(libc::PTRACE_SYSCALL, tid, 0, 0) };
        let st = wait("syscall");
        if !libc::WIFSTOPPED(st) || libc::WSTOPSIG(st) != (libc::SIGTRAP | 0x80) {
            continue;
        }
        // SAFETY: user_regs_struct is plain data filled by the kernel.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        // SAFETY: GETREGS into a live struct of the right type.
        unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGS,
                tid,
                0,
                &mut regs as *mut _ as *mut libc::c_void,
            )
        };
        let entry = regs.rax as i64 == -(libc::ENOSYS as i64);
        if entry && regs.orig_rax as i64 == libc::SYS_recvmsg {
            stuck = true;
            break;
        }
    }
    let dead = |s: &mut Sleeper| matches!(s.0.try_wait(), Ok(Some(_)));
    let first = stuck && eventually(Duration::from_secs(5), || dead(&mut cached));
    let one_per_period = !dead(&mut foreground);
    let second = first && eventually(Duration::from_secs(5), || dead(&mut foreground));
    // Two more periods: nobody left at adj >= 0 to kill.
    std::thread::sleep(Duration::from_millis(2 * PERIOD_MS + 200));
    let native_alive = !dead(&mut native);
    // SAFETY: let the core go again.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
    assert!(stuck, "never caught the core entering recvmsg");
    assert!(first, "the watchdog did not kill while the core was stuck");
    assert!(one_per_period, "the watchdog killed twice in one period");
    assert!(second, "the watchdog did not kill again in the next period");
    assert!(native_alive, "the watchdog killed a process at adj -900");
    let log = d.wait_log_count("lmkd watchdog timed out!", 2, T);
    for p in [cached.pid(), foreground.pid()] {
        assert!(
            log.contains(&format!("Kill 'sleep' ({p}), uid 10000,"))
                || log.contains(&format!("Kill 'sleep' ({p}), uid 0,")),
            "no kill line for {p}:\n{log}"
        );
    }
    assert!(log.contains("reason: lmkd watchdog timed out"), "{log}");
    // The core carries on and answers (first the packet it was stuck
    // on); the kills are counted.
    assert!(
        matches!(c.recv(Some(T)), Ok(Some(Message::Reply { .. }))),
        "no reply to the packet the core was stuck on"
    );
    assert_eq!(kill_count(&c, 1001, 1001), 2, "GETKILLCNT total");
    assert_eq!(kill_count(&c, 950, 950), 1);
    assert_eq!(kill_count(&c, 0, 0), 1);
    // lmkctl's kill history has them too.
    let ctl = lmkd::control::default_path(&d.socket);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lmkctl"))
        .args(["--socket", ctl.to_str().unwrap(), "--json", "kills"])
        .output()
        .unwrap();
    let kills = String::from_utf8_lossy(&out.stdout);
    let kills: serde_json::Value = serde_json::from_str(&kills).expect("lmkctl --json kills");
    let by_watchdog: Vec<i64> = kills
        .as_array()
        .expect("a list of kills")
        .iter()
        .filter(|k| k["reason"] == "watchdog")
        .filter_map(|k| k["pid"].as_i64())
        .collect();
    assert_eq!(
        by_watchdog,
        [cached.pid() as i64, foreground.pid() as i64],
        "lmkctl kills: {kills}"
    );
    // Stats then PROCKILL for each, in the watchdog's order.
    let mut got = vec![];
    let end = std::time::Instant::now() + T;
    while got.len() < 4 && std::time::Instant::now() < end {
        match sub.recv(Some(Duration::from_millis(100))) {
            Ok(Some(Message::Stat(s))) => got.push(("stat", s.oom_score_adj)),
            Ok(Some(Message::Kill(k))) => got.push(("kill", k.pid)),
            _ => {}
        }
    }
    assert_eq!(
        got,
        [
            ("stat", 950),
            ("kill", cached.pid()),
            ("stat", 0),
            ("kill", foreground.pid())
        ]
    );
    // The records are gone: a new registration of the live one still works
    // and the dead ones are not in the table (PROCREMOVE of them is a no-op
    // that must not disturb anything, and no further kill is counted).
    std::thread::sleep(Duration::from_millis(PERIOD_MS + 200));
    assert_eq!(kill_count(&c, 1001, 1001), 2, "killed again after release");
    assert!(!dead(&mut native));
}
