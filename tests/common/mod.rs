//! Shared helpers for integration tests that run the real `lmkd` binary.
#![allow(dead_code)]

pub mod counting;
pub mod inproc;
pub mod lmkctl;
pub mod logcap;
pub mod pressure;
pub mod reference;
pub mod rng;
pub mod strace;
pub mod wakeups;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lmkd::client::Client;
use lmkd::proto::{self, Command as Cmd, Prio};

/// Whether a missing prerequisite must fail the test instead of skipping it:
/// CI (`CI=true`) and `LMKD_REQUIRE_ALL=1` want every test really run.
pub fn require_all() -> bool {
    let on = |k: &str| {
        std::env::var(k)
            .map(|v| matches!(v.as_str(), "1" | "true" | "yes"))
            .unwrap_or(false)
    };
    on("CI") || on("LMKD_REQUIRE_ALL")
}

/// A test that cannot run here. Under [`require_all`] it fails with the
/// reason; otherwise it says so on the terminal even without `--nocapture`
/// (the test harness captures `eprintln!`, not writes to fd 2), so a skip
/// never passes for an `ok`.
pub fn skip(test: &str, why: &str) {
    if require_all() {
        panic!("{test}: prerequisite missing (CI=true or LMKD_REQUIRE_ALL=1 forbid skips): {why}");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED {test}: {why}");
}

/// Integration tests need root (oom_score_adj of others, cgroups, pidfds).
pub fn need_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip(
            test,
            "needs root (run the tests as root to exercise the daemon)",
        );
        return false;
    }
    true
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "lmkd-test-{tag}-{}-{}",
            std::process::id(),
            nanos()
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// A running daemon with its stderr captured to a file.
pub struct Daemon {
    pub child: Child,
    pub dir: TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `lmkd --config <dir>/lmkd.toml` with `extra` TOML lines.
    pub fn start(tag: &str, extra: &str) -> Daemon {
        Self::start_with(tag, extra, &[], |_| {})
    }

    pub fn start_with(
        tag: &str,
        extra: &str,
        args: &[&str],
        setup: impl FnOnce(&mut Command),
    ) -> Daemon {
        let dir = TempDir::new(tag);
        let socket = dir.path("lmkd.sock");
        let config = dir.path("lmkd.toml");
        let log = dir.path("lmkd.log");
        // The daemon watches the real system PSI. On this shared machine
        // (and beside the real-pressure tests, which fill zram swap
        // machine-wide) a genuine stall would make it kill a test's
        // sleepers: tests that do not ask for pressure get both triggers
        // off (0 disables a trigger, as in lmkd).
        let calm = if extra.contains("psi_") {
            ""
        } else {
            "psi_partial_stall_ms = 0\npsi_complete_stall_ms = 0\n"
        };
        fs::write(
            &config,
            format!("socket_path = {socket:?}\n{calm}{extra}\n"),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lmkd"));
        cmd.arg("--config").arg(&config).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        cmd.env_remove("ANDROID_SOCKET_lmkd")
            .env_remove("LMKD_PROPS_FILE");
        setup(&mut cmd);
        let child = cmd.spawn().expect("spawn lmkd");
        let d = Daemon {
            child,
            dir,
            socket,
            config,
            log,
        };
        d.wait_log("running", Duration::from_secs(10));
        d
    }

    pub fn connect(&self) -> Client {
        Client::connect(&self.socket).expect("connect to lmkd")
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the log contains `needle`; panics with the log if not.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_log_count(needle, 1, timeout)
    }

    pub fn wait_log_count(&self, needle: &str, count: usize, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= count {
                return text;
            }
            if Instant::now() > end {
                panic!("daemon log never showed {count} x {needle:?}; log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A round trip that proves the daemon has handled everything a
    /// connection sent before it.
    pub fn sync(c: &Client) {
        let r = c.request(
            &Cmd::GetKillCnt {
                min_adj: -1000,
                max_adj: 1000,
            },
            Duration::from_secs(5),
        );
        assert!(r.is_ok(), "daemon did not answer GETKILLCNT: {r:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process that just sleeps; killed and reaped on drop.
pub struct Sleeper(pub Child);

/// A `sleep` child that dies with us (PR_SET_PDEATHSIG), so a failed test
/// or bench leaves nothing behind.
pub fn spawn_sleep() -> Child {
    let mut c = Command::new("sleep");
    c.arg("100000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    die_with_us(&mut c).spawn().expect("spawn sleep")
}

/// Makes the command's process get SIGKILL when the test process dies
/// (PR_SET_PDEATHSIG), so a failed test or bench leaves nothing behind.
pub fn die_with_us(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        })
    }
}

/// A `sleep` child with pid `pid` (which must be free), made by setting
/// the pid namespace's last pid just below it; other processes forking
/// meanwhile can take it, so this retries. None if it never worked.
pub fn sleeper_with_pid(pid: i32) -> Option<Sleeper> {
    for _ in 0..200 {
        if fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).is_err() {
            return None;
        }
        let s = Sleeper::new();
        if s.pid() == pid {
            return Some(s);
        }
    }
    None
}

impl Sleeper {
    pub fn new() -> Sleeper {
        Sleeper(spawn_sleep())
    }

    /// A shell holding about `mib` MiB in a variable, then blocking on its
    /// stdin (kept open by the returned child): a process of known weight
    /// with no children of its own to leave behind.
    pub fn heavy(mib: usize) -> Sleeper {
        use std::io::BufRead;
        let script = format!(
            "v=$(head -c {} /dev/zero | tr '\\0' x); echo ready; read _",
            mib << 20
        );
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = die_with_us(&mut c).spawn().expect("spawn sh");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready");
        Sleeper(child)
    }
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
    pub fn oom_adj(&self) -> i32 {
        oom_adj(self.pid())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SUBSCRIBE to kill notifications and kill stats, as AMS does.
pub fn subscribe_all(c: &Client) {
    c.send(&Cmd::Subscribe {
        event: proto::event::KILL,
    })
    .unwrap();
    c.send(&Cmd::Subscribe {
        event: proto::event::STAT,
    })
    .unwrap();
}

/// Kill notifications (pid) seen on `c` within `wait`.
pub fn kills(c: &Client, wait: Duration) -> Vec<i32> {
    let end = Instant::now() + wait;
    let mut out = vec![];
    while Instant::now() < end {
        if let Ok(Some(lmkd::client::Message::Kill(k))) = c.recv(Some(Duration::from_millis(50))) {
            out.push(k.pid);
        }
    }
    out
}

/// GETKILLCNT over [min, max].
pub fn kill_count(c: &Client, min_adj: i32, max_adj: i32) -> i32 {
    c.request(
        &Cmd::GetKillCnt { min_adj, max_adj },
        Duration::from_secs(5),
    )
    .expect("GETKILLCNT")
}

/// In one `read`: the kernel formats the value afresh on every call, so
/// `read_to_string`'s second call (at offset 2) could splice a new value
/// onto the old one ("0\n" then "5\n" of "305\n": "0\n5", not a number)
/// when the daemon writes in between.
pub fn oom_adj(pid: i32) -> i32 {
    let path = format!("/proc/{pid}/oom_score_adj");
    let mut buf = [0u8; 16];
    let n = fs::File::open(&path)
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    let text = std::str::from_utf8(&buf[..n]).unwrap_or("");
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path} read {text:?}: {e}"))
}

pub fn prio(pid: i32, adj: i32) -> Prio {
    Prio {
        pid,
        uid: 10_000,
        adj,
        ptype: proto::ptype::APP,
        for_lmkd_only: false,
    }
}

/// Raw 3-arg PROCPRIO (the oldest form).
pub fn procprio3(pid: i32, uid: i32, adj: i32) -> Vec<u8> {
    words(&[proto::id::PROCPRIO, pid, uid, adj])
}

pub fn words(w: &[i32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// Polls `f` until true or timeout.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// The descriptors of process `pid` ("self" for this one) that link to
/// `target` (a path, or an anonymous inode such as `anon_inode:[pidfd]`).
pub fn fds_linking_to(pid: &str, target: &Path) -> Vec<u32> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| fs::read_link(e.path()).is_ok_and(|l| l == target))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A client living in its own process, so the daemon sees a distinct peer
/// pid (ownership is per client process, as with AMS and init). The child
/// forwards datagrams from a pipe to the daemon and replies back, using
/// only syscalls and stack buffers (safe after fork in a threaded test).
pub struct Remote {
    pub pid: i32,
    to_child: i32,
    from_child: i32,
}

const WAIT_REPLY: u32 = 1;

impl Remote {
    pub fn connect(path: &Path) -> Remote {
        let mut down = [0i32; 2];
        let mut up = [0i32; 2];
        // SAFETY: pipe2 into arrays of two ints.
        unsafe {
            assert_eq!(libc::pipe2(down.as_mut_ptr(), libc::O_CLOEXEC), 0);
            assert_eq!(libc::pipe2(up.as_mut_ptr(), libc::O_CLOEXEC), 0);
        }
        // Connect before forking would share the socket; connect in the child.
        // SAFETY: the child only calls async-signal-safe syscalls and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: child side; see above.
            unsafe { remote_child(path, down[0], up[1]) }
        }
        // SAFETY: closing our copies of the child's pipe ends.
        unsafe {
            libc::close(down[0]);
            libc::close(up[1]);
        }
        let r = Remote {
            pid,
            to_child: down[1],
            from_child: up[0],
        };
        // Wait for the child's "connected" byte.
        let mut st = [0u8; 8];
        // SAFETY: reading into a live buffer.
        let n = unsafe { libc::read(r.from_child, st.as_mut_ptr() as *mut _, 8) };
        assert_eq!(n, 8, "remote client did not start");
        assert_eq!(
            i32::from_ne_bytes(st[..4].try_into().unwrap()),
            0,
            "remote client could not connect"
        );
        r
    }

    fn forward(&self, pkt: &[u8], flags: u32) -> Option<i32> {
        let mut msg = [0u8; 8 + 96];
        msg[..4].copy_from_slice(&(pkt.len() as u32).to_ne_bytes());
        msg[4..8].copy_from_slice(&flags.to_ne_bytes());
        msg[8..8 + pkt.len()].copy_from_slice(pkt);
        // SAFETY: writing a live buffer to our pipe.
        let n = unsafe { libc::write(self.to_child, msg.as_ptr() as *const _, msg.len()) };
        assert_eq!(n, msg.len() as isize);
        let mut st = [0u8; 8];
        // SAFETY: reading into a live buffer.
        let n = unsafe { libc::read(self.from_child, st.as_mut_ptr() as *mut _, 8) };
        if n != 8 {
            return None;
        }
        let status = i32::from_ne_bytes(st[..4].try_into().unwrap());
        (status == 0).then(|| i32::from_ne_bytes(st[4..].try_into().unwrap()))
    }

    pub fn send(&self, cmd: &Cmd) {
        let mut buf = [0u8; proto::MAX_PACKET];
        let n = proto::encode(cmd, &mut buf);
        self.forward(&buf[..n], 0)
            .expect("remote client failed to send");
    }

    pub fn request(&self, cmd: &Cmd) -> Option<i32> {
        let mut buf = [0u8; proto::MAX_PACKET];
        let n = proto::encode(cmd, &mut buf);
        self.forward(&buf[..n], WAIT_REPLY)
    }

    /// A round trip proving everything sent before was handled.
    pub fn sync(&self) {
        assert!(
            self.request(&Cmd::GetKillCnt {
                min_adj: -1000,
                max_adj: 1000
            })
            .is_some(),
            "remote sync failed"
        );
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // SAFETY: closing our pipe ends makes the child exit; then reap it.
        unsafe {
            libc::close(self.to_child);
            libc::close(self.from_child);
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The forked child's loop. Never returns.
unsafe fn remote_child(path: &Path, rx: i32, tx: i32) -> ! {
    let reply = |status: i32, value: i32| {
        let mut st = [0u8; 8];
        st[..4].copy_from_slice(&status.to_ne_bytes());
        st[4..].copy_from_slice(&value.to_ne_bytes());
        libc::write(tx, st.as_ptr() as *const _, 8);
    };
    let Ok(c) = Client::connect(path) else {
        reply(-1, 0);
        libc::_exit(1)
    };
    reply(0, 0);
    let mut msg = [0u8; 8 + 96];
    loop {
        if libc::read(rx, msg.as_mut_ptr() as *mut _, msg.len()) != msg.len() as isize {
            libc::_exit(0);
        }
        let len = u32::from_ne_bytes(msg[..4].try_into().unwrap()) as usize;
        let flags = u32::from_ne_bytes(msg[4..8].try_into().unwrap());
        if c.send_raw(&msg[8..8 + len.min(96)]).is_err() {
            reply(-1, 0);
            continue;
        }
        if flags & WAIT_REPLY == 0 {
            reply(0, 0);
            continue;
        }
        let id = i32::from_be_bytes(msg[8..12].try_into().unwrap());
        let mut answered = false;
        for _ in 0..100 {
            match c.recv(Some(Duration::from_millis(50))) {
                Ok(Some(lmkd::client::Message::Reply { cmd, value })) if cmd == id => {
                    reply(0, value);
                    answered = true;
                    break;
                }
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        if !answered {
            reply(-1, 0);
        }
    }
}
