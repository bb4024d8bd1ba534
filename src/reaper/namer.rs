//! The namer thread: reads a signalled victim's full name from
//! `/proc/<pid>/cmdline` and its counters from `stat`, for the kill's
//! announcement. It is a thread of its own because that read is the one
//! step after a kill that can enter reclaim: the kernel allocates a page
//! for the copy of `cmdline`, and may have to swap the victim's argument
//! page back in (set h43 saw one of each on the reaper, when the reaper
//! still read the name). The reaper waits for the name at most
//! [`WAIT_MS`] before it releases the victim's memory, since the release
//! takes the arguments with it; a read stuck in reclaim then costs the
//! name, not the release.

use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;

use super::{Done, Finished, Release};
use crate::proto::STAT_NAME_MAX;
use crate::ring;
use crate::sys::{self, ProcFs};

/// How long the reaper waits for the name before it releases the memory
/// anyway. A read takes well under a millisecond when nothing is swapped
/// out; past this, the release matters more than the name.
pub const WAIT_MS: u64 = 10;

/// The namer's stack, locked page by page as it is touched, except
/// [`PREFAULT`] touched at start: it reads two short `/proc` files into
/// fixed buffers.
const STACK: usize = 64 * 1024;
const PREFAULT: usize = 8 * 1024;

/// Test switch: the namer holds the read of this pid's name (as a read
/// stuck in reclaim would) until the value changes. 0 holds nothing.
#[doc(hidden)]
pub static HOLD_NAME_OF: AtomicI32 = AtomicI32::new(0);

/// A victim to name.
#[derive(Clone, Copy, Debug)]
pub struct Ask {
    pub pid: i32,
    /// CLOCK_MONOTONIC ns of the core's SIGKILL.
    pub sent_ns: u64,
    /// Nothing follows on the reaper (no memory to release): the namer's
    /// report is the job's last.
    pub last: bool,
}

/// The victim's name as read from `cmdline` (up to the first NUL or space,
/// as lmkd reports it); empty when the process had no command line left
/// (already gone, or a kernel thread).
#[derive(Clone, Copy)]
pub struct Name {
    buf: [u8; STAT_NAME_MAX],
    len: u8,
}

impl Name {
    pub const EMPTY: Name = Name {
        buf: [0; STAT_NAME_MAX],
        len: 0,
    };

    /// The first word of a raw `cmdline` (NUL-separated arguments).
    pub fn from_cmdline(raw: &[u8]) -> Name {
        let end = raw
            .iter()
            .position(|&b| b == 0 || b == b' ')
            .unwrap_or(raw.len())
            .min(STAT_NAME_MAX);
        let mut n = Name::EMPTY;
        n.buf[..end].copy_from_slice(&raw[..end]);
        n.len = end as u8;
        n
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The victim's counters from `/proc/<pid>/stat`, read after the signal
/// (they outlive the victim's memory); -1 when unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    pub pgfault: i64,
    pub pgmajfault: i64,
    pub start_time_ns: i64,
}

impl Counters {
    pub const UNKNOWN: Counters = Counters {
        pgfault: -1,
        pgmajfault: -1,
        start_time_ns: -1,
    };
}

/// What the namer read.
#[derive(Clone, Copy, Debug)]
pub struct Named {
    pub name: Name,
    pub counters: Counters,
}

/// Starts the namer thread. It takes asks from `asks`, reports to the core
/// on `done`, and tells the reaper on `read` (the pid) once a name is in.
pub fn start(
    procfs: ProcFs,
    asks: ring::Receiver<Ask>,
    done: ring::Sender<Done>,
    read: ring::Sender<i32>,
    on_start: fn(&'static str),
) -> std::io::Result<()> {
    // The reaper's release waits on this thread: it is urgent too.
    crate::protect::spawn_urgent::<PREFAULT, _>("namer", STACK, on_start, move || loop {
        asks.wait(-1);
        asks.ack();
        while let Some(ask) = asks.pop() {
            while HOLD_NAME_OF.load(Ordering::Relaxed) == ask.pid {
                thread::sleep(std::time::Duration::from_millis(1));
            }
            done.push(name(ask, &procfs));
            read.push(ask.pid);
        }
    })
}

/// Reads one victim's name and counters: the namer's report.
pub fn name(ask: Ask, procfs: &ProcFs) -> Done {
    let mut raw = [0u8; STAT_NAME_MAX + 1];
    let name = match procfs.read(Some(ask.pid), "cmdline", &mut raw) {
        Ok(n) => Name::from_cmdline(&raw[..n]),
        Err(_) => Name::EMPTY,
    };
    let mut stat = crate::proto::KillStat::default();
    let mut buf = [0u8; 1024];
    if let Ok(n) = procfs.read(Some(ask.pid), "stat", &mut buf) {
        crate::victim::parse_stat(&buf[..n], &mut stat);
    }
    Done {
        pid: ask.pid,
        signal: Ok(ask.sent_ns),
        named: Some(Named {
            name,
            counters: Counters {
                pgfault: stat.pgfault,
                pgmajfault: stat.pgmajfault,
                start_time_ns: stat.start_time_ns,
            },
        }),
        finished: ask.last.then(|| Finished {
            release: Release::Skipped,
            at_ns: sys::monotonic_ns(),
        }),
    }
}

/// The reaper's side: waits until the namer has read `pid`'s name, for at
/// most `wait_ms`. False if it has not by then. Acknowledgements of earlier
/// victims that came too late are passed over.
pub fn wait_for(read: &ring::Receiver<i32>, pid: i32, wait_ms: u64) -> bool {
    let deadline = sys::monotonic_ns() + wait_ms * 1_000_000;
    loop {
        // Clear the bell before looking, so a pid pushed after the look
        // rings it again.
        read.ack();
        while let Some(p) = read.pop() {
            if p == pid {
                return true;
            }
        }
        let now = sys::monotonic_ns();
        if now >= deadline {
            return false;
        }
        read.wait((deadline - now).div_ceil(1_000_000) as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_is_the_first_word_of_the_command_line() {
        let n = Name::from_cmdline(b"com.google.android.apps.photos\0--flag\0");
        assert_eq!(n.as_bytes(), b"com.google.android.apps.photos");
        assert_eq!(
            Name::from_cmdline(b"/system/bin/foo bar").as_bytes(),
            b"/system/bin/foo"
        );
        assert_eq!(Name::from_cmdline(b"").as_bytes(), b"");
        assert_eq!(
            Name::from_cmdline(&[b'x'; 300]).as_bytes().len(),
            STAT_NAME_MAX
        );
    }

    #[test]
    fn the_wait_ends_at_its_pid_or_its_deadline() {
        let (tx, rx) = ring::channel::<i32>(4).unwrap();
        assert!(!wait_for(&rx, 7, 5), "nothing was read");
        // A late acknowledgement of an earlier victim is passed over.
        tx.push(6);
        tx.push(7);
        assert!(wait_for(&rx, 7, 5));
        tx.push(6);
        let t0 = std::time::Instant::now();
        assert!(!wait_for(&rx, 8, 20));
        assert!(t0.elapsed() >= std::time::Duration::from_millis(20));
        let later = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            tx.push(9);
        });
        assert!(wait_for(&rx, 9, 5_000), "a name read while waiting");
        later.join().unwrap();
    }
}
