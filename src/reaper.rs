//! The reaper thread: what follows a kill once the core has sent SIGKILL
//! itself. It calls `process_mrelease` so the memory comes back even if
//! the victim is frozen or starved of CPU. The victim's name for the
//! announcement is read first, by the namer thread ([`namer`]): the reaper
//! waits for it at most `namer::WAIT_MS`, and never reads `/proc` itself,
//! since that read can enter reclaim. The core hands jobs over and reads
//! reports through preallocated rings; it never waits for the reaper, and
//! a job stuck here holds back no kill.
//!
//! A job owns its own duplicate of the victim's pidfd (one `fcntl` on the
//! kill path, no allocation) rather than borrowing the core's: the core
//! keeps its copy to watch for the exit and may drop it whenever it likes,
//! and the reaper closes its copy when it is done. Moving the core's one
//! descriptor here instead would leave the core without an exit watch, or
//! bring back a lifetime rule spread over two threads.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;

use crate::ring;
use crate::sys::{self, ProcFs};

pub mod namer;
pub use namer::{Counters, Name, Named};

/// How the reaper reaches the victim.
#[derive(Debug)]
pub enum Target {
    /// Through the reaper's own duplicate of the victim's pidfd: it can
    /// never reach a process that reused the pid, and it stays open for as
    /// long as the reaper needs it, whatever the core does with its copy.
    Pidfd(OwnedFd),
    /// By pid with `kill(2)`, for a process registered without a pidfd
    /// (kernel without `pidfd_open`); the core checked its start time just
    /// before. Nothing to release.
    Pid,
    /// The kill could not be prepared (errno of the failed `dup`); reported
    /// as a failed signal.
    Unusable(i32),
}

/// A kill to carry out.
#[derive(Debug)]
pub struct Job {
    pub pid: i32,
    pub target: Target,
    /// Only pretend: `--dry-run`.
    pub dry_run: bool,
    /// CLOCK_MONOTONIC ns at which the core's SIGKILL went out; 0 when the
    /// reaper is to send it itself ([`run`]).
    pub sent_ns: u64,
}

impl Job {
    /// A kill of `pid` through a duplicate of `pidfd` (one `fcntl`, no
    /// allocation), or by pid when the record has none.
    pub fn new(pid: i32, pidfd: Option<BorrowedFd<'_>>, dry_run: bool) -> Job {
        let target = match pidfd.map(|fd| fd.try_clone_to_owned()) {
            None => Target::Pid,
            Some(Ok(fd)) => Target::Pidfd(fd),
            Some(Err(e)) => Target::Unusable(e.raw_os_error().unwrap_or(libc::EBADF)),
        };
        Job {
            pid,
            target,
            dry_run,
            sent_ns: 0,
        }
    }

    /// The same job for a victim the core has already signalled at
    /// `sent_ns`: the namer reads the name and the reaper releases the
    /// memory.
    pub fn signalled(mut self, sent_ns: u64) -> Job {
        self.sent_ns = sent_ns;
        self
    }
}

/// A [`Job`] as it crosses the ring (whose items are `Copy`): the pidfd
/// travels as its number. Only [`Reaper::submit`] makes one, from a `Job`
/// it consumes, and the reaper thread turns each one back exactly once.
#[derive(Clone, Copy)]
struct Wire {
    pid: i32,
    /// >= 0: an owned pidfd; -1: by pid; below: `-1 - errno` of `Unusable`.
    fd: RawFd,
    dry_run: bool,
    sent_ns: u64,
}

impl Wire {
    fn from_job(job: Job) -> Wire {
        let fd = match job.target {
            Target::Pidfd(fd) => fd.into_raw_fd(),
            Target::Pid => -1,
            Target::Unusable(errno) => -1 - errno.max(1),
        };
        Wire {
            pid: job.pid,
            fd,
            dry_run: job.dry_run,
            sent_ns: job.sent_ns,
        }
    }

    fn into_job(self) -> Job {
        let target = match self.fd {
            // SAFETY: `from_job` took this number from an `OwnedFd` it
            // consumed, and each `Wire` is popped from the ring (or handed
            // back by a failed push) exactly once, so this is its only owner.
            fd if fd >= 0 => Target::Pidfd(unsafe { OwnedFd::from_raw_fd(fd) }),
            -1 => Target::Pid,
            e => Target::Unusable(-1 - e),
        };
        Job {
            pid: self.pid,
            target,
            dry_run: self.dry_run,
            sent_ns: self.sent_ns,
        }
    }
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

/// Progress of a job. A job reports twice: the namer's report with the
/// name (so the kill can be announced), and the reaper's when it is done
/// with the pidfd (`finished` set), in either order; a job with nothing to
/// release reports once, named and finished.
#[derive(Clone, Copy, Debug)]
pub struct Done {
    pub pid: i32,
    /// CLOCK_MONOTONIC ns when the SIGKILL went out, or its errno.
    pub signal: Result<u64, i32>,
    /// The full name and counters, read after the signal: in the namer's
    /// report only.
    pub named: Option<Named>,
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
    jobs: ring::Sender<Wire>,
    /// The reaper's reports, and the namer's on the same doorbell.
    done: ring::Receiver<Done>,
    named: ring::Receiver<Done>,
}

/// Jobs queued at once. A stuck release holds the jobs behind it (their
/// kills still go: the core signals), and the core abandons a kill's
/// report after kill_timeout_ms, so a few suffice; a full ring refuses.
const DEPTH: usize = 8;

/// The reaper's stack, locked page by page as it is touched
/// ([`spawn_demand_paged`](crate::protect::spawn_demand_paged)), except
/// [`PREFAULT`] touched at start so that a kill never faults one in: it
/// moves records through rings and makes a few system calls, with no
/// buffers of its own.
const STACK: usize = 64 * 1024;
const PREFAULT: usize = 12 * 1024;

/// Test switch: the reaper holds a job for this pid before its release
/// (as a `process_mrelease` stuck on the victim's mmap lock would) until
/// the value changes. 0 holds nothing.
#[doc(hidden)]
pub static HOLD_RELEASE_OF: AtomicI32 = AtomicI32::new(0);

impl Reaper {
    /// Starts the reaper thread. `on_start` runs first on that thread
    /// (tests use it to watch the thread's allocations).
    pub fn start(procfs: ProcFs, on_start: fn(&'static str)) -> io::Result<Reaper> {
        let (jobs, job_rx) = ring::channel::<Wire>(DEPTH)?;
        let (done_tx, done) = ring::channel::<Done>(DEPTH)?;
        let (named_tx, named) = ring::channel_sharing_bell::<Done, Done>(DEPTH, &done)?;
        let (ask_tx, ask_rx) = ring::channel::<namer::Ask>(DEPTH)?;
        let (read_tx, read_rx) = ring::channel::<i32>(DEPTH)?;
        namer::start(procfs, ask_rx, named_tx, read_tx, on_start)?;
        let reaping = Arc::new(AtomicBool::new(true));
        crate::protect::spawn_urgent::<PREFAULT, _>("reaper", STACK, on_start, move || {
            loop {
                job_rx.wait(-1);
                job_rx.ack();
                while let Some(wire) = job_rx.pop() {
                    let job = wire.into_job();
                    let releases = !job.dry_run && matches!(job.target, Target::Pidfd(_));
                    let sent = Done {
                        pid: job.pid,
                        signal: Ok(job.sent_ns),
                        named: None,
                        finished: None,
                    };
                    let asked = ask_tx.push(namer::Ask {
                        pid: job.pid,
                        sent_ns: job.sent_ns,
                        last: !releases,
                    });
                    if !releases {
                        // The namer finishes the job, or nobody will.
                        if !asked {
                            done_tx.push(Done {
                                finished: Some(Finished {
                                    release: Release::Skipped,
                                    at_ns: sys::monotonic_ns(),
                                }),
                                ..sent
                            });
                        }
                        continue;
                    }
                    if asked {
                        namer::wait_for(&read_rx, job.pid, namer::WAIT_MS);
                    }
                    while HOLD_RELEASE_OF.load(Ordering::Relaxed) == job.pid {
                        thread::sleep(std::time::Duration::from_millis(1));
                    }
                    done_tx.push(release(&job, sent, &reaping));
                    // Dropping the job closes the reaper's pidfd.
                }
            }
        })?;
        Ok(Reaper { jobs, done, named })
    }

    /// Hands a job over; false if the ring is full (never expected with
    /// one kill at a time), and the job is dropped.
    pub fn submit(&self, job: Job) -> bool {
        let wire = Wire::from_job(job);
        if self.jobs.push(wire) {
            return true;
        }
        // Not queued: take the descriptor back so it closes.
        drop(wire.into_job());
        false
    }

    /// Clears the doorbell; call when the completion fd is readable, then
    /// take reports with [`Reaper::next_done`] until it returns None.
    pub fn ack(&self) {
        self.done.ack();
    }

    /// The next report, the namer's first (a name to announce).
    pub fn next_done(&self) -> Option<Done> {
        self.named.pop().or_else(|| self.done.pop())
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
    let sent = signal(&job);
    if sent.finished.is_some() {
        return sent;
    }
    release(&job, sent, reaping)
}

/// Sends SIGKILL through the pidfd (or by pid). The result is finished
/// when there is nothing to release (dry run, by pid, or the signal failed).
pub fn signal(job: &Job) -> Done {
    let sig = if job.dry_run {
        Ok(())
    } else {
        match &job.target {
            Target::Pidfd(fd) => sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL),
            Target::Pid => sys::kill_pid(job.pid, libc::SIGKILL),
            Target::Unusable(errno) => Err(sys::SysError {
                what: "dup pidfd",
                errno: *errno,
            }),
        }
    };
    let at_ns = sys::monotonic_ns();
    // process_mrelease needs a pidfd and a signal that went out.
    let nothing_to_release = sig.is_err() || job.dry_run || !matches!(job.target, Target::Pidfd(_));
    Done {
        pid: job.pid,
        signal: sig.as_ref().map(|_| at_ns).map_err(|e| e.errno),
        named: None,
        finished: nothing_to_release.then_some(Finished {
            release: Release::Skipped,
            at_ns,
        }),
    }
}

/// Releases a signalled victim's memory with `process_mrelease`.
pub fn release(job: &Job, sent: Done, reaping: &AtomicBool) -> Done {
    let mut release = Release::Skipped;
    if let (Target::Pidfd(pidfd), true) = (&job.target, reaping.load(Ordering::Relaxed)) {
        release = match sys::process_mrelease(pidfd.as_fd()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Whether `fd` is open on `file`. By name, not number alone: other
    /// tests in this process may be handed a closed number at once.
    fn fd_on(fd: RawFd, file: &std::path::Path) -> bool {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|l| l == file)
    }

    #[test]
    fn a_job_crosses_the_ring_with_its_descriptor() {
        let file = std::env::temp_dir().join(format!("lmkd-reaper-ring-{}", std::process::id()));
        let own = OwnedFd::from(std::fs::File::create(&file).unwrap());
        std::fs::remove_file(&file).unwrap();
        let file = std::path::PathBuf::from(format!("{} (deleted)", file.display()));
        let job = Job::new(7, Some(own.as_fd()), false);
        let Target::Pidfd(dup) = &job.target else {
            panic!("no duplicate: {job:?}");
        };
        let raw = dup.as_raw_fd();
        assert_ne!(raw, own.as_raw_fd());
        let back = Wire::from_job(job).into_job();
        assert!(matches!(&back.target, Target::Pidfd(fd) if fd.as_raw_fd() == raw));
        drop(back);
        assert!(!fd_on(raw, &file), "the reaper's copy leaked");
        assert!(fd_on(own.as_raw_fd(), &file), "the core's copy was closed");
        for t in [
            Target::Pid,
            Target::Unusable(libc::EPERM),
            Target::Unusable(libc::EMFILE),
        ] {
            let want = format!("{t:?}");
            let job = Job {
                pid: 1,
                target: t,
                dry_run: true,
                sent_ns: 5,
            };
            let back = Wire::from_job(job).into_job();
            assert_eq!(format!("{:?}", back.target), want);
            assert!(back.dry_run);
            assert_eq!(back.sent_ns, 5);
        }
    }

    #[test]
    fn kills_by_pid_without_a_pidfd() {
        let mut child = std::process::Command::new("sleep")
            .arg("100")
            .spawn()
            .unwrap();
        let job = Job::new(child.id() as i32, None, false);
        let done = run(job, &AtomicBool::new(true));
        assert!(done.signal.is_ok());
        assert_eq!(done.finished.map(|f| f.release), Some(Release::Skipped));
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
