//! Reporting: the core pushes fixed-size [`Note`]s into a bounded ring and
//! a logging thread turns them into text. The core never formats, and
//! never waits: when the ring is full notes are dropped and counted.
//! Also here: per-adj kill counters (GETKILLCNT) and the kill history.

use std::io;
use std::thread;

use crate::proto::{self, DecodeError};
use crate::ring;

/// Log target of kill lines; Android tools parse lines under this tag.
pub const KILL_TARGET: &str = "lowmemorykiller";

/// One kill, as logged and kept in the history.
#[derive(Clone, Copy, Debug)]
pub struct KillRecord {
    /// CLOCK_MONOTONIC of the signal, ms.
    pub time_ms: u64,
    pub pid: i32,
    pub uid: i32,
    pub adj: i32,
    pub min_adj: i32,
    pub reason: i32,
    pub reason_text: &'static str,
    pub rss_kb: u64,
    pub swap_kb: u64,
    /// From the wakeup that read the pressure event to the return of
    /// `pidfd_send_signal`.
    pub event_to_signal_us: u64,
    /// From the signal to the pidfd becoming readable (the victim is
    /// gone); 0 until known.
    pub time_to_exit_ms: u64,
    pub free_kb: i64,
    pub free_swap_kb: i64,
    pub thrashing: i32,
    pub dry_run: bool,
    name: [u8; 64],
    name_len: u8,
}

impl KillRecord {
    pub fn new(time_ms: u64, stat: &proto::KillStat) -> KillRecord {
        let mut r = KillRecord {
            time_ms,
            pid: 0,
            uid: stat.uid,
            adj: stat.oom_score_adj,
            min_adj: stat.min_oom_score,
            reason: stat.reason,
            reason_text: "",
            rss_kb: 0,
            swap_kb: 0,
            event_to_signal_us: 0,
            time_to_exit_ms: 0,
            free_kb: stat.free_mem_kb as i64,
            free_swap_kb: stat.free_swap_kb as i64,
            thrashing: stat.thrashing,
            dry_run: false,
            name: [0; 64],
            name_len: 0,
        };
        let n = stat.name().len().min(64);
        r.name[..n].copy_from_slice(&stat.name()[..n]);
        r.name_len = n as u8;
        r
    }

    pub fn name(&self) -> &str {
        let b = &self.name[..self.name_len as usize];
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
        }
    }
}

/// Why a command was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    AdjOutOfRange(i32),
    TypeOutOfRange(i32),
    BadPid,
    /// `Tgid != pid`: a thread, not a process.
    Thread(i32),
    /// The process could not be opened: it is gone.
    Dead(i32),
    /// The record belongs to another connection (its peer pid).
    NotOwner(i32),
    TableFull(usize),
    UnknownPid,
    BadEvent(i32),
    /// TARGET within 1 s of the previous one.
    RateLimited,
    BadTarget,
}

/// Why a connection was closed or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    Accepted,
    TooMany,
    UidNotAllowed,
    NoCredentials,
    Closed,
    Error(i32),
}

/// Everything the core wants said. Copy and fixed-size by design.
#[derive(Clone, Copy, Debug)]
pub enum Note {
    Kill(KillRecord),
    /// Time to exit became known for an earlier kill.
    Exited {
        pid: i32,
        time_to_exit_ms: u64,
    },
    /// The victim did not exit within kill_timeout_ms.
    ExitTimeout {
        pid: i32,
        waited_ms: u64,
    },
    KillFailed {
        pid: i32,
        errno: i32,
    },
    /// The reaper's memory release failed or is unsupported.
    ReleaseFailed {
        pid: i32,
        errno: i32,
    },
    NoVictim {
        min_adj: i32,
        reason_text: &'static str,
    },
    /// A registered process exited without PROCREMOVE and its record was dropped.
    Stale {
        pid: i32,
    },
    Refused {
        cmd: i32,
        pid: i32,
        peer: i32,
        why: Refusal,
    },
    OomAdjWriteFailed {
        pid: i32,
        errno: i32,
    },
    Malformed {
        peer: i32,
        err: DecodeError,
    },
    Connection {
        peer: i32,
        uid: u32,
        what: ConnEvent,
    },
    SubscriberDropped {
        peer: i32,
    },
    /// A memory snapshot could not be read; the event was skipped.
    SnapshotFailed(crate::snapshot::ReadError),
    /// The snapshot reader carried on past trouble (told once per kind).
    SnapshotDegraded(crate::snapshot::Degradation),
    Info(&'static str),
}

/// The core's end of the report ring.
pub struct Reporter {
    tx: ring::Sender<Note>,
}

/// Notes buffered between the core and the logging thread.
const RING: usize = 256;

impl Reporter {
    /// Starts the logging thread.
    pub fn start(on_start: fn(&'static str)) -> io::Result<Reporter> {
        let (tx, rx) = ring::channel::<Note>(RING)?;
        thread::Builder::new()
            .name("lmkd-report".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                on_start("report");
                let mut seen_drops = 0;
                loop {
                    rx.wait(1000);
                    rx.ack();
                    while let Some(n) = rx.pop() {
                        log_note(&n);
                    }
                    let drops = rx.dropped();
                    if drops != seen_drops {
                        log::warn!("report ring full: {} notes dropped so far", drops);
                        seen_drops = drops;
                    }
                }
            })
            .map_err(|e| io::Error::new(e.kind(), format!("spawn report thread: {e}")))?;
        Ok(Reporter { tx })
    }

    pub fn note(&self, n: Note) {
        self.tx.push(n);
    }

    pub fn dropped(&self) -> u64 {
        self.tx.dropped()
    }
}

fn errno_text(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

/// Formats one note (logging thread only).
pub fn log_note(n: &Note) {
    match *n {
        Note::Kill(k) if k.dry_run => log::info!(
            target: KILL_TARGET,
            "Dry run: would kill '{}' ({}), uid {}, oom_score_adj {} to free {}kB rss, {}kB swap; reason: {}",
            k.name(), k.pid, k.uid, k.adj, k.rss_kb, k.swap_kb, k.reason_text
        ),
        Note::Kill(k) => {
            log::info!(
                target: KILL_TARGET,
                "Kill '{}' ({}), uid {}, oom_score_adj {} to free {}kB rss, {}kB swap; reason: {}",
                k.name(), k.pid, k.uid, k.adj, k.rss_kb, k.swap_kb, k.reason_text
            );
            log::info!(
                "kill of {} took {} us from event to signal; min adj {}, free {} kB, free swap {} kB, thrashing {}%",
                k.pid, k.event_to_signal_us, k.min_adj, k.free_kb, k.free_swap_kb, k.thrashing
            );
        }
        Note::Exited { pid, time_to_exit_ms } => {
            log::debug!("process {pid} exited {time_to_exit_ms} ms after the kill signal")
        }
        Note::ExitTimeout { pid, waited_ms } => {
            log::warn!("process {pid} still alive {waited_ms} ms after SIGKILL; allowing another kill")
        }
        Note::KillFailed { pid, errno } => {
            log::warn!("kill of {pid} failed: pidfd_send_signal: {}", errno_text(errno))
        }
        Note::ReleaseFailed { pid, errno } if errno == libc::ENOSYS => log::warn!(
            "process_mrelease is not supported by this kernel (pid {pid}); memory reaping turned off"
        ),
        Note::ReleaseFailed { pid, errno } => {
            log::warn!("process_mrelease of {pid} failed: {}", errno_text(errno))
        }
        Note::NoVictim { min_adj, reason_text } => {
            log::warn!("memory pressure ({reason_text}) but no killable process with adj >= {min_adj}")
        }
        Note::Stale { pid } => log::info!(
            "process {pid} exited without PROCREMOVE; its record was dropped (pid may be reused)"
        ),
        // AMS removes processes we already killed; that is routine.
        Note::Refused { cmd, pid, peer, why: Refusal::UnknownPid } => log::debug!(
            "command {cmd} from peer {peer} for pid {pid} refused: {}",
            refusal_text(Refusal::UnknownPid)
        ),
        Note::Refused { cmd, pid, peer, why } => {
            log::warn!("command {cmd} from peer {peer} for pid {pid} refused: {}", refusal_text(why))
        }
        Note::OomAdjWriteFailed { pid, errno } => {
            log::warn!("writing oom_score_adj of {pid} failed: {}", errno_text(errno))
        }
        Note::Malformed { peer, err } => log::warn!("malformed packet from peer {peer}: {err}"),
        Note::Connection { peer, uid, what } => match what {
            ConnEvent::Accepted => log::info!("client connected: pid {peer} uid {uid}"),
            ConnEvent::TooMany => log::warn!(
                "refused connection from pid {peer} uid {uid}: already 3 clients connected"
            ),
            ConnEvent::UidNotAllowed => {
                log::warn!("refused client pid {peer}: uid {uid} is not allowed")
            }
            ConnEvent::NoCredentials => {
                log::warn!("closed connection of pid {peer}: packet without credentials")
            }
            ConnEvent::Closed => log::info!("client pid {peer} disconnected"),
            ConnEvent::Error(e) => {
                log::warn!("closed connection of pid {peer}: {}", errno_text(e))
            }
        },
        Note::SubscriberDropped { peer } => {
            log::warn!("subscriber pid {peer} is not reading; a kill notification was dropped")
        }
        Note::SnapshotFailed(e) => log::warn!("memory snapshot failed, event skipped: {e}"),
        Note::SnapshotDegraded(d) => log::warn!("memory snapshot: {d}"),
        Note::Info(s) => log::info!("{s}"),
    }
}

fn refusal_text(r: Refusal) -> String {
    match r {
        Refusal::AdjOutOfRange(a) => format!("oom_score_adj {a} outside [-1000, 1000]"),
        Refusal::TypeOutOfRange(t) => format!("process type {t} is not 0 (app) or 1 (service)"),
        Refusal::BadPid => "pid must be positive".into(),
        Refusal::Thread(tgid) => format!("it is a thread of process {tgid}"),
        Refusal::Dead(e) => format!("process is gone ({})", errno_text(e)),
        Refusal::NotOwner(o) => format!("record belongs to client pid {o}"),
        Refusal::TableFull(cap) => format!("process table is full ({cap} entries)"),
        Refusal::UnknownPid => "pid is not registered".into(),
        Refusal::BadEvent(e) => format!("unknown subscription event {e}"),
        Refusal::RateLimited => "TARGET less than 1000 ms after the previous one".into(),
        Refusal::BadTarget => "TARGET levels out of range".into(),
    }
}

/// Kills per adj, for GETKILLCNT. Allocated once.
pub struct KillCounts {
    counts: Box<[u32; 2001]>,
}

impl Default for KillCounts {
    fn default() -> Self {
        KillCounts {
            counts: Box::new([0; 2001]),
        }
    }
}

impl KillCounts {
    pub fn add(&mut self, adj: i32) {
        if let Some(c) = self.counts.get_mut((adj - proto::OOM_ADJ_MIN) as usize) {
            *c = c.saturating_add(1);
        }
    }

    /// Kills with adj in [min, max]; 0 when min > max.
    pub fn count(&self, min: i32, max: i32) -> u32 {
        let lo = min.max(proto::OOM_ADJ_MIN);
        let hi = max.min(proto::OOM_ADJ_MAX);
        if lo > hi {
            return 0;
        }
        let range = (lo - proto::OOM_ADJ_MIN) as usize..=(hi - proto::OOM_ADJ_MIN) as usize;
        self.counts[range]
            .iter()
            .fold(0u32, |a, &c| a.saturating_add(c))
    }
}

/// The last kills, newest last. Fixed size; older ones are overwritten.
pub struct History {
    recs: Box<[Option<KillRecord>; HISTORY]>,
    next: usize,
}

pub const HISTORY: usize = 128;

impl Default for History {
    fn default() -> Self {
        History {
            recs: Box::new([None; HISTORY]),
            next: 0,
        }
    }
}

impl History {
    pub fn push(&mut self, r: KillRecord) {
        self.recs[self.next % HISTORY] = Some(r);
        self.next += 1;
    }

    /// Fills in the time to exit of the newest record for `pid`.
    pub fn set_exit(&mut self, pid: i32, ms: u64) {
        if let Some(r) = self.iter_mut_rev().find(|r| r.pid == pid) {
            r.time_to_exit_ms = ms;
        }
    }

    fn iter_mut_rev(&mut self) -> impl Iterator<Item = &mut KillRecord> {
        let n = self.next;
        let (a, b) = self.recs.split_at_mut(n % HISTORY);
        a.iter_mut().rev().chain(b.iter_mut().rev()).flatten()
    }

    /// Oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = &KillRecord> {
        let (a, b) = self.recs.split_at(self.next % HISTORY);
        b.iter().chain(a.iter()).flatten()
    }

    pub fn total(&self) -> usize {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_counts_ranges() {
        let mut k = KillCounts::default();
        k.add(900);
        k.add(900);
        k.add(0);
        k.add(-1000);
        k.add(1000);
        k.add(5000); // ignored
        assert_eq!(k.count(-1000, 1000), 5);
        assert_eq!(k.count(900, 900), 2);
        assert_eq!(k.count(1, 899), 0);
        assert_eq!(k.count(100, 0), 0);
        assert_eq!(k.count(i32::MIN, i32::MAX), 5);
    }

    #[test]
    fn history_wraps_and_updates() {
        let mut h = History::default();
        for pid in 0..(HISTORY as i32 + 5) {
            let mut r = KillRecord::new(pid as u64, &proto::KillStat::default());
            r.pid = pid;
            h.push(r);
        }
        assert_eq!(h.iter().count(), HISTORY);
        assert_eq!(h.iter().next().unwrap().pid, 5);
        h.set_exit(HISTORY as i32 + 4, 42);
        assert_eq!(h.iter().last().unwrap().time_to_exit_ms, 42);
    }
}
