//! A pressure source that reports EPOLLERR (a PSI trigger whose file went
//! away, a broken descriptor) does not end monitoring: the daemon re-creates
//! the configured PSI triggers (and says so), falls back to vmpressure when
//! that fails, and gives up (saying so) only when the replacement fails too.
//! The failing source is injected: the write end of a pipe whose read end
//! the test closes, which epoll reports as EPOLLERR. And a source the core
//! stops watching is closed on the loader thread, never on the core.

mod common;

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use common::inproc::InProc;
use common::pressure::own_memcg;
use common::strace::{self, Strace};
use common::wakeups;
use common::*;
use lmkd::psi::Source;

const T: Duration = Duration::from_secs(10);

/// A source whose "medium" descriptor errors once `.1` is dropped.
fn failing_source() -> (Source, OwnedFd) {
    let mut p = [0i32; 2];
    // SAFETY: pipe2 into an array of two ints.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: eventfd with valid flags; checked below.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(efd >= 0);
    // SAFETY: fresh descriptors we own.
    let (read, write, critical) = unsafe {
        (
            OwnedFd::from_raw_fd(p[0]),
            OwnedFd::from_raw_fd(p[1]),
            OwnedFd::from_raw_fd(efd),
        )
    };
    let src = Source::Counters {
        medium: write,
        critical,
        _level: None,
    };
    (src, read)
}

#[test]
fn a_failed_source_is_re_created_or_replaced() {
    if !need_root("a_failed_source_is_re_created_or_replaced") {
        return;
    }
    if !std::path::Path::new("/proc/pressure/memory").exists() {
        return skip("a_failed_source_is_re_created_or_replaced", "no PSI");
    }
    // Our own memory cgroup (v1): vmpressure events can be registered there.
    let Some(memcg) = own_memcg().filter(|p| p.join("memory.pressure_level").exists()) else {
        return skip(
            "a_failed_source_is_re_created_or_replaced",
            "no memcg v1 with memory.pressure_level",
        );
    };
    logcap::install();

    // PSI is there: the triggers are re-created.
    let (src, read) = failing_source();
    let _d = InProc::real("epollerr-psi", move |_, o| o.source = Some(src));
    logcap::wait_for("pressure monitor: injected events", T);
    drop(read);
    logcap::wait_for("pressure source reported an error: re-opening it", T);
    logcap::wait_for("re-created the PSI triggers", T);
    logcap::wait_for("pressure monitor: PSI some", T);

    // PSI cannot be re-created: vmpressure takes over, and says so.
    let (src, read) = failing_source();
    let _d = InProc::real("epollerr-vmp", move |c, o| {
        c.startup.psi_path = "/nonexistent/epollerr/pressure".into();
        c.startup.vmpressure_memcg = memcg;
        o.source = Some(src);
    });
    drop(read);
    let log = logcap::wait_for("falling back to memcg v1 vmpressure", T);
    assert!(
        log.contains("re-creating the PSI triggers failed"),
        "the fallback does not say why:\n{log}"
    );
    logcap::wait_for("pressure monitor: memcg v1 vmpressure", T);
}

/// The daemon's PSI triggers on `psi`: its descriptors open for writing
/// there (the snapshot reads the same file through one open read-only).
fn triggers_on(pid: u32, psi: &Path) -> Vec<u32> {
    let writable = |fd: u32| {
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).unwrap_or_default();
        info.lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|f| f & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32)
    };
    let mut fds = fds_linking_to(&pid.to_string(), psi);
    fds.retain(|&fd| writable(fd));
    fds
}

/// The thread that closed `fd` in a `strace -f` trace, if one did.
fn closed_by(trace: &str, fd: u32) -> Option<u32> {
    let call = format!("close({fd}");
    trace.lines().find_map(|l| {
        let (tid, rest) = l.split_once(' ')?;
        let rest = rest.trim_start();
        let next = rest.as_bytes().get(call.len()).copied();
        (rest.starts_with(&call) && matches!(next, Some(b')') | Some(b' ')))
            .then(|| tid.parse().ok())
            .flatten()
    })
}

/// A reload that changes the PSI thresholds arms new triggers and closes
/// the old ones, on the loader thread: closing a trigger waits for an RCU
/// grace period in the kernel (8-16 ms each here), which the core must not.
#[test]
fn replaced_psi_triggers_are_closed_on_the_loader() {
    let test = "replaced_psi_triggers_are_closed_on_the_loader";
    if !need_root(test) {
        return;
    }
    let psi = Path::new("/proc/pressure/memory");
    if !psi.exists() {
        return skip(test, "no PSI");
    }
    if !strace::available() {
        return skip(test, "strace is not installed");
    }
    let d = Daemon::start(
        "psi-close",
        "psi_partial_stall_ms = 600\npsi_complete_stall_ms = 900\n",
    );
    d.wait_log("pressure monitor: PSI", T);
    let pid = d.child.id();
    let old = triggers_on(pid, psi);
    assert!(!old.is_empty(), "no PSI trigger open before the reload");
    // Thread id -> (name, context switches): only the names are used.
    let threads = wakeups::switches(pid);
    let trace = Strace::attach(pid, "close", d.dir.path("strace.out"));

    let text = fs::read_to_string(&d.config).unwrap();
    fs::write(&d.config, text.replace("= 600", "= 700")).unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    d.wait_log_count("pressure monitor: PSI", 2, T);
    let all_closed = || old.iter().all(|&fd| closed_by(&trace.text(), fd).is_some());
    eventually(T, all_closed);
    let log = trace.finish();
    for fd in &old {
        let tid = closed_by(&log, *fd)
            .unwrap_or_else(|| panic!("old trigger fd {fd} was not closed:\n{log}"));
        let name = threads.get(&tid).map_or("?", |(n, _)| n.as_str());
        assert_eq!(
            name, "lmkd-loader",
            "old trigger fd {fd} was closed by thread {tid} ({name}), not the loader:\n{log}"
        );
    }
    assert_eq!(
        triggers_on(pid, psi).len(),
        old.len(),
        "the new triggers are not all open"
    );
}
