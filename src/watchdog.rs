//! The watchdog: if the core has been inside one handler for too long
//! (stuck in reclaim, a slow /proc read, a bug), a separate thread kills
//! the least important app (adj 0..1000) by itself, and again every period
//! while the core stays stuck, as lmkd does.
//!
//! It shares nothing the core owns. The core publishes its next few
//! candidates as *duplicate* pidfds in a small array of atomic slots (so a
//! kill can never hit a recycled pid) and reports each kill to the core
//! through a ring of its own; the core counts it, drops the record and
//! tells subscribers when it runs again. The watchdog writes the log lines
//! itself, at once: the core may never come back.
//!
//! Idle costs nothing: the core arms a timerfd when it starts handling a
//! wakeup and disarms it when done (two syscalls per wakeup, as lmkd's
//! timer), and the watchdog thread sleeps on that timerfd. It wakes only
//! when a handler has run for a whole period.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::history::KillRecord;
use crate::policy::{Figures, Kill, KillReason};
use crate::proto;
use crate::report::{logline, Note, Outputs};
use crate::ring;
use crate::sys::{self, ProcFs};
use crate::table::Proc;
use crate::victim::{self, Victim};

/// Candidates the core keeps ready: one per period the core may stay
/// stuck before it can publish again.
pub const SLOTS: usize = 8;

/// Kills the core has not taken in yet; more than SLOTS cannot happen
/// before the candidates run out.
const QUEUE: usize = SLOTS;

/// One candidate in one atomic word, so the core and the watchdog hand
/// its descriptor over without a lock: bits 0..32 the pidfd + 1 (0: the
/// slot is empty), 32..54 the pid (pid_max is at most 2^22), 54..64 the
/// adj (only 0..1000 is published).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Packed(u64);

const PID_BITS: u32 = 22;

impl Packed {
    const EMPTY: Packed = Packed(0);

    fn new(pid: i32, adj: i32, fd: OwnedFd) -> Packed {
        let raw = fd.into_raw_fd() as u64 + 1;
        Packed(raw | (pid as u64) << 32 | (adj as u64) << (32 + PID_BITS))
    }

    fn pid(self) -> i32 {
        ((self.0 >> 32) & ((1 << PID_BITS) - 1)) as i32
    }

    fn adj(self) -> i32 {
        (self.0 >> (32 + PID_BITS)) as i32
    }

    /// Takes ownership of the descriptor a swapped-out word held.
    fn into_fd(self) -> Option<OwnedFd> {
        let raw = (self.0 & 0xffff_ffff) as i64 - 1;
        // SAFETY: a non-empty word was made by `new` from an `OwnedFd`, and
        // the atomic swap that took it out of its slot gave it to exactly
        // one caller.
        (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw as i32) })
    }

    /// Whether `pid` at `adj` may be published (and packed).
    fn fits(pid: i32, adj: i32) -> bool {
        pid > 0 && pid < (1 << PID_BITS) && (0..=proto::OOM_ADJ_MAX).contains(&adj)
    }
}

/// Shared between the core and the watchdog thread.
pub struct Heartbeat {
    /// CLOCK_MONOTONIC ms when the current handler started; 0 when idle.
    busy_since_ms: AtomicU64,
    /// Armed while the core handles a wakeup; fires every period.
    timer: TimerFd,
    period: TimeSpec,
    timeout_ms: u64,
    /// The next victims, least important first.
    slots: [AtomicU64; SLOTS],
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        for s in &self.slots {
            drop(Packed(s.swap(0, Ordering::AcqRel)).into_fd());
        }
    }
}

impl Heartbeat {
    /// A heartbeat whose watchdog fires after `timeout_ms` in one handler.
    pub fn new(timeout_ms: u64) -> io::Result<Heartbeat> {
        // Blocking reads: the watchdog thread sleeps in read(2) on it.
        let timer = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_CLOEXEC)
            .map_err(|e| io::Error::other(format!("timerfd_create for the watchdog: {e}")))?;
        let timeout_ms = timeout_ms.max(1);
        Ok(Heartbeat {
            busy_since_ms: AtomicU64::new(0),
            timer,
            period: TimeSpec::from_duration(Duration::from_millis(timeout_ms)),
            timeout_ms,
            slots: Default::default(),
        })
    }

    /// The core starts handling a wakeup: arm the watchdog.
    pub fn enter(&self, now_ms: u64) {
        self.busy_since_ms.store(now_ms.max(1), Ordering::Release);
        let _ = self.timer.set(
            Expiration::IntervalDelayed(self.period, self.period),
            TimerSetTimeFlags::empty(),
        );
    }

    /// The core is done with the wakeup: disarm.
    pub fn leave(&self) {
        self.busy_since_ms.store(0, Ordering::Release);
        let _ = self.timer.unset();
    }

    /// How long the core has been in its current handler.
    pub fn stuck_ms(&self, now_ms: u64) -> u64 {
        match self.busy_since_ms.load(Ordering::Acquire) {
            0 => 0,
            t => now_ms.saturating_sub(t),
        }
    }

    /// Publishes the processes the watchdog would kill, least important
    /// first; those beyond [`SLOTS`], below adj 0 or too large to pack are
    /// left out. A slot that already holds the same pid and adj keeps its
    /// descriptor; a new one costs one `fcntl(F_DUPFD_CLOEXEC)`. Never
    /// allocates.
    pub fn publish<'a>(&self, candidates: impl IntoIterator<Item = (i32, i32, BorrowedFd<'a>)>) {
        let mut it = candidates
            .into_iter()
            .filter(|&(pid, adj, _)| Packed::fits(pid, adj));
        for slot in &self.slots {
            let cur = Packed(slot.load(Ordering::Acquire));
            let next = match it.next() {
                Some((pid, adj, _))
                    if cur != Packed::EMPTY && (cur.pid(), cur.adj()) == (pid, adj) =>
                {
                    continue
                }
                Some((pid, adj, fd)) => fd
                    .try_clone_to_owned()
                    .map_or(Packed::EMPTY, |fd| Packed::new(pid, adj, fd)),
                None if cur == Packed::EMPTY => continue,
                None => Packed::EMPTY,
            };
            drop(Packed(slot.swap(next.0, Ordering::AcqRel)).into_fd());
        }
    }

    /// Takes `pid` out of the candidates (the core is killing it itself).
    pub fn withdraw(&self, pid: i32) {
        for slot in &self.slots {
            let cur = Packed(slot.load(Ordering::Acquire));
            if cur != Packed::EMPTY
                && cur.pid() == pid
                && slot
                    .compare_exchange(cur.0, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                drop(cur.into_fd());
            }
        }
    }

    /// The published candidates' pids, in order (0: empty slot).
    pub fn candidates(&self) -> [i32; SLOTS] {
        let mut out = [0; SLOTS];
        for (o, s) in out.iter_mut().zip(&self.slots) {
            *o = Packed(s.load(Ordering::Acquire)).pid();
        }
        out
    }

    /// Takes the next candidate out of its slot, skipping `skip`ped pids.
    fn take(&self, skip: &[i32]) -> Option<(i32, i32, OwnedFd)> {
        for slot in &self.slots {
            let w = Packed(slot.swap(0, Ordering::AcqRel));
            if let Some(fd) = w.into_fd() {
                if !skip.contains(&w.pid()) {
                    return Some((w.pid(), w.adj(), fd));
                }
            }
        }
        None
    }
}

/// A kill the watchdog made, for the core to count, drop and announce.
#[derive(Clone, Copy, Debug)]
pub struct Killed {
    pub victim: Victim,
    pub record: KillRecord,
}

/// The core's end of the watchdog's kill reports.
pub struct Kills(ring::Receiver<Killed>);

impl Kills {
    /// Clears the doorbell; then take reports with [`Kills::next`].
    pub fn ack(&self) {
        self.0.ack();
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&self) -> Option<Killed> {
        self.0.pop()
    }
}

impl AsFd for Kills {
    /// Readable when a kill report waits (for the core's epoll set).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Starts the watchdog thread; returns the end the core reads kills from.
pub fn start(hb: Arc<Heartbeat>, on_start: fn(&'static str)) -> io::Result<Kills> {
    let (tx, rx) = ring::channel::<Killed>(QUEUE)?;
    let procfs = ProcFs::new(Path::new("/proc"))?;
    // It must get the CPU exactly when the machine is drowning.
    crate::protect::spawn_urgent::<PREFAULT, _>("watchdog", STACK, on_start, move || {
        let mut out = Outputs::new(logline::Log);
        // Pids this thread killed lately: the core may publish one
        // again before it has taken the kill in.
        let mut recent = [0i32; SLOTS];
        let mut n = 0usize;
        let mut told_empty_for = 0;
        loop {
            // Sleeps until a handler has run for a whole period.
            if hb.timer.wait().is_err() {
                thread::sleep(Duration::from_millis(hb.timeout_ms));
                continue;
            }
            let now = sys::monotonic_ms();
            let stuck = hb.stuck_ms(now);
            if stuck < hb.timeout_ms {
                // The core left (or began again) as the timer fired.
                continue;
            }
            log::warn!(target: crate::report::KILL_TARGET, "lmkd watchdog timed out!");
            match kill_one(&hb, &procfs, &recent) {
                Some(k) => {
                    recent[n % SLOTS] = k.victim.pid;
                    n += 1;
                    out.note(&Note::Kill(k.record), now);
                    tx.push(k);
                }
                None if told_empty_for != now - stuck => {
                    told_empty_for = now - stuck;
                    log::error!("watchdog: main loop stuck for {stuck} ms and no process to kill");
                }
                None => {}
            }
        }
    })?;
    Ok(Kills(rx))
}

/// The watchdog's stack, locked page by page as it is touched: log
/// formatting is its deepest use (20 kB measured with a kill, release
/// build).
const STACK: usize = 64 * 1024;
/// Touched at start, so the kill itself never faults a stack page in.
const PREFAULT: usize = 24 * 1024;

/// Kills the first live candidate: the signal first, then what the kill
/// line and the stats packet say about it (read while the victim's memory
/// is still there), then the memory release.
fn kill_one(hb: &Heartbeat, procfs: &ProcFs, skip: &[i32]) -> Option<Killed> {
    while let Some((pid, adj, fd)) = hb.take(skip) {
        if sys::pidfd_send_signal(fd.as_fd(), libc::SIGKILL).is_err() {
            // Already gone: try the next one.
            continue;
        }
        let at_ms = sys::monotonic_ms();
        let k = describe(procfs, pid, adj, at_ms);
        let _ = sys::process_mrelease(fd.as_fd());
        return Some(k);
    }
    None
}

/// Why a watchdog kill was made, in the kill line and the stats packet.
const KILL: Kill = Kill {
    reason: KillReason::Watchdog,
    min_adj: 0,
};

fn describe(procfs: &ProcFs, pid: i32, adj: i32, at_ms: u64) -> Killed {
    let mut buf = [0u8; 2048];
    let uid = procfs
        .read(Some(pid), "status", &mut buf)
        .ok()
        .and_then(|n| sys::status_field(&buf[..n], b"Uid:"))
        .map_or(-1, |u| u as i32);
    let rss_kb = victim::rss_kb(procfs, pid).unwrap_or(0);
    let p = Proc {
        pid,
        uid,
        adj: adj as i16,
        ptype: proto::ptype::APP as u8,
        owner: crate::table::NO_OWNER,
    };
    let mut v = victim::describe(procfs, None, &p, rss_kb);
    v.stat.min_oom_score = KILL.min_adj;
    v.stat.reason = KILL.reason.code();
    let mut rec = KillRecord::new(at_ms, pid, KILL, Figures::default());
    rec.uid = uid;
    rec.adj = adj;
    rec.set_name(v.stat.name());
    rec.rss_kb = v.rss_kb;
    rec.swap_kb = v.swap_kb;
    Killed {
        victim: v,
        record: rec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command};
    use std::time::Instant;

    fn sleeper() -> Child {
        Command::new("sleep").arg("100").spawn().unwrap()
    }

    fn wait_dead(c: &mut Child, what: &str) {
        let end = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < end, "{what}");
            thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn packs_round_trip() {
        let fd = sys::pidfd_open(std::process::id() as i32).unwrap();
        let raw = fd.as_raw_fd();
        let w = Packed::new((1 << PID_BITS) - 1, 1000, fd);
        assert_eq!((w.pid(), w.adj()), ((1 << PID_BITS) - 1, 1000));
        assert_eq!(w.into_fd().unwrap().as_raw_fd(), raw);
        assert!(Packed::EMPTY.into_fd().is_none());
        assert!(!Packed::fits(1 << PID_BITS, 0));
        assert!(!Packed::fits(100, -1));
    }

    #[test]
    fn kills_candidates_in_order_while_the_core_stays_stuck() {
        let mut a = sleeper();
        let mut b = sleeper();
        let hb = Arc::new(Heartbeat::new(300).unwrap());
        let fa = sys::pidfd_open(a.id() as i32).unwrap();
        let fb = sys::pidfd_open(b.id() as i32).unwrap();
        hb.publish([
            (a.id() as i32, 900, fa.as_fd()),
            (b.id() as i32, 0, fb.as_fd()),
        ]);
        assert_eq!(&hb.candidates()[..3], [a.id() as i32, b.id() as i32, 0]);
        let kills = start(hb.clone(), |_| {}).unwrap();
        // Idle core: the timer is not even armed.
        thread::sleep(Duration::from_millis(600));
        assert!(a.try_wait().unwrap().is_none(), "killed while idle");
        // A handler that never returns: one kill per period.
        hb.enter(sys::monotonic_ms());
        wait_dead(&mut a, "watchdog did not kill the first candidate");
        assert!(b.try_wait().unwrap().is_none(), "two kills in one period");
        wait_dead(&mut b, "watchdog did not kill again in the next period");
        hb.leave();
        let got: Vec<_> = std::iter::from_fn(|| kills.next()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].victim.pid, a.id() as i32);
        assert_eq!(got[0].record.adj, 900);
        assert_eq!(got[0].record.kill.reason, KillReason::Watchdog);
        assert_eq!(got[1].victim.pid, b.id() as i32);
        assert_eq!(hb.candidates(), [0; SLOTS]);
    }

    #[test]
    fn negative_adj_is_never_published_and_withdraw_closes() {
        let c = sleeper();
        let hb = Heartbeat::new(1000).unwrap();
        let fd = sys::pidfd_open(c.id() as i32).unwrap();
        hb.publish([(c.id() as i32, -900, fd.as_fd())]);
        assert_eq!(hb.candidates(), [0; SLOTS]);
        hb.publish([(c.id() as i32, 0, fd.as_fd())]);
        assert_eq!(hb.candidates()[0], c.id() as i32);
        hb.withdraw(c.id() as i32);
        assert_eq!(hb.candidates(), [0; SLOTS]);
        let mut c = c;
        let _ = c.kill();
        let _ = c.wait();
    }
}
