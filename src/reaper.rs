//! The reaper thread: SIGKILL through the victim's pidfd, then
//! `process_mrelease` so its memory comes back even if it is frozen or
//! starved of CPU. The core hands jobs over and reads completions through
//! preallocated rings; it never waits for the reaper.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use crate::ring;
use crate::sys;

/// A kill to carry out. The pidfd stays owned (and open) by the core until
/// the matching [`Done`] with `finished` set comes back.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    pub pid: i32,
    pub pidfd: RawFd,
    /// Only pretend: `--dry-run`.
    pub dry_run: bool,
}

/// How the memory release went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// `process_mrelease` returned 0.
    Released,
    /// ESRCH: the victim was already tearing itself down.
    AlreadyExiting,
    /// Not attempted (dry run, failed signal, or reaping is off).
    Skipped,
    /// ENOSYS: the kernel lacks the call; reaping is now off for good.
    Unsupported,
    Failed(i32),
}

/// Progress of a job. A job reports twice: once the signal is sent (so the
/// kill is counted and announced at once), and again when the reaper is
/// done with the pidfd (`finished` set); a job with nothing to release
/// reports once, finished.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    pub pid: i32,
    /// CLOCK_MONOTONIC ns when `pidfd_send_signal` returned, or its errno.
    pub signal: Result<u64, i32>,
    /// None while the reaper still uses the pidfd.
    pub finished: Option<Finished>,
}

/// The reaper's last step on a job: it no longer uses the pidfd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub release: Release,
    /// CLOCK_MONOTONIC ns when the release call returned (or was skipped).
    pub at_ns: u64,
}

pub struct Reaper {
    jobs: ring::Sender<Job>,
    done: ring::Receiver<Done>,
}

/// Jobs in flight at once; the core kills one at a time, so a few suffice.
const DEPTH: usize = 8;

impl Reaper {
    /// Starts the reaper thread. `on_start` runs first on that thread
    /// (tests use it to watch the thread's allocations).
    pub fn start(on_start: fn(&'static str)) -> io::Result<Reaper> {
        let (jobs, job_rx) = ring::channel::<Job>(DEPTH)?;
        let (done_tx, done) = ring::channel::<Done>(DEPTH)?;
        let reaping = Arc::new(AtomicBool::new(true));
        thread::Builder::new()
            .name("lmkd-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                // The thread that sends SIGKILL must not wait behind the
                // processes eating the memory.
                crate::protect::raise_thread_priority();
                on_start("reaper");
                loop {
                    job_rx.wait(-1);
                    job_rx.ack();
                    while let Some(job) = job_rx.pop() {
                        let sent = signal(job);
                        done_tx.push(sent);
                        if sent.finished.is_none() {
                            done_tx.push(release(job, sent, &reaping));
                        }
                    }
                }
            })
            .map_err(|e| io::Error::new(e.kind(), format!("spawn reaper thread: {e}")))?;
        Ok(Reaper { jobs, done })
    }

    /// Hands a job over; false if the ring is full (never expected with
    /// one kill at a time).
    pub fn submit(&self, job: Job) -> bool {
        self.jobs.push(job)
    }

    /// Clears the doorbell; call when the completion fd is readable, then
    /// take reports with [`Reaper::next_done`] until it returns None.
    pub fn ack(&self) {
        self.done.ack();
    }

    pub fn next_done(&self) -> Option<Done> {
        self.done.pop()
    }
}

impl AsFd for Reaper {
    /// Readable when completions are waiting.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.done.as_fd()
    }
}

/// Signals one victim and releases its memory (both steps, in one call).
pub fn run(job: Job, reaping: &AtomicBool) -> Done {
    let sent = signal(job);
    if sent.finished.is_some() {
        return sent;
    }
    release(job, sent, reaping)
}

/// Sends SIGKILL through the pidfd. The result is finished when there is
/// nothing to release (dry run, or the signal failed).
pub fn signal(job: Job) -> Done {
    let sig = if job.dry_run {
        Ok(())
    } else {
        // SAFETY: the core keeps the pidfd open until it sees a finished Done.
        let pidfd = unsafe { BorrowedFd::borrow_raw(job.pidfd) };
        sys::pidfd_send_signal(pidfd, libc::SIGKILL)
    };
    let at_ns = sys::monotonic_ns();
    let skipped = Some(Finished {
        release: Release::Skipped,
        at_ns,
    });
    Done {
        pid: job.pid,
        signal: sig.as_ref().map(|_| at_ns).map_err(|e| e.errno),
        finished: if sig.is_err() || job.dry_run {
            skipped
        } else {
            None
        },
    }
}

/// Releases a signalled victim's memory with `process_mrelease`.
pub fn release(job: Job, sent: Done, reaping: &AtomicBool) -> Done {
    let mut release = Release::Skipped;
    if reaping.load(Ordering::Relaxed) {
        // SAFETY: the core keeps the pidfd open until it sees a finished Done.
        let pidfd = unsafe { BorrowedFd::borrow_raw(job.pidfd) };
        release = match sys::process_mrelease(pidfd) {
            Ok(()) => Release::Released,
            Err(e) if e.errno == libc::ESRCH => Release::AlreadyExiting,
            Err(e) if e.errno == libc::ENOSYS => {
                reaping.store(false, Ordering::Relaxed);
                Release::Unsupported
            }
            Err(e) => Release::Failed(e.errno),
        };
    }
    Done {
        finished: Some(Finished {
            release,
            at_ns: sys::monotonic_ns(),
        }),
        ..sent
    }
}
