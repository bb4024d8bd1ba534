//! A pressure source that reports EPOLLERR (a PSI trigger whose file went
//! away, a broken descriptor) does not end monitoring: the daemon re-creates
//! the configured PSI triggers (and says so), falls back to vmpressure when
//! that fails, and gives up (saying so) only when the replacement fails too.
//! The failing source is injected: the write end of a pipe whose read end
//! the test closes, which epoll reports as EPOLLERR.

mod common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use common::inproc::InProc;
use common::pressure::own_memcg;
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
