//! What each client command does to the process table and daemon state.
//! The socket edge (`server`) hands decoded commands here; effects that
//! need the rest of the daemon (reload, monitors, boot) are returned.

use crate::history::KillCounts;
use crate::memcg::AppMemcg;
use crate::proto::{self, event, Command, Prio, TargetTable};
use crate::report::{Note, Refusal, Reporter};
use crate::sys::{self, ProcFs, SysError};
use crate::table::{Entry, Handles, Proc, ProcTable, NO_OWNER};

/// Descriptors the table keeps per registered process: its pidfd and its
/// open `oom_score_adj`.
pub const FDS_PER_PROC: u64 = 2;
/// Descriptors beside the table's: sockets, epoll, timers, PSI triggers,
/// rings, the in-flight victim and the reaper's and watchdog's copies of
/// pidfds, files opened for a moment.
pub const FD_HEADROOM: u64 = 128;

/// LMK_TARGET updates closer together than this are ignored (as lmkd).
pub const TARGET_INTERVAL_MS: u64 = 1000;

/// State the commands act on, owned by the daemon.
pub struct Registry {
    pub table: ProcTable,
    pub procfs: ProcFs,
    /// Per-app memcgs, when `per_app_memcg` is on.
    pub memcg: Option<AppMemcg>,
    pub kills: KillCounts,
    pub targets: TargetTable,
    last_target_ms: Option<u64>,
}

/// What the daemon must do after a command, beyond the table update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Send `[cmd, value]` back to the client.
    Reply(i32, i32),
    /// UPDATE_PROPS: reload, then reply.
    Reload,
    StartMonitoring,
    BootCompleted,
    Subscribe {
        stats: bool,
    },
    /// The minfree table changed (publish `sys.lmk.minfree_levels`).
    TargetsChanged,
}

impl Registry {
    /// Start-up: also applies the test fault switches and raises
    /// `RLIMIT_NOFILE` so a full table can keep its descriptors.
    pub fn new(table: ProcTable, procfs: ProcFs, memcg: Option<AppMemcg>) -> Registry {
        if sys::apply_test_faults() {
            log::warn!(
                "{}=1: pidfd_open fails with ENOSYS; processes are killed by pid",
                sys::NO_PIDFD_ENV
            );
        }
        let cap = table.capacity() as u64;
        let want = cap * FDS_PER_PROC + FD_HEADROOM;
        match sys::raise_nofile(want) {
            (_, None) => {}
            (have, Some(e)) => log::warn!(
                "{e}: a full table of {cap} processes needs {want} descriptors, the limit \
                 is {have}: about {} processes keep their descriptors; past that a \
                 registration falls back to a start-time check and path writes",
                have.saturating_sub(FD_HEADROOM) / FDS_PER_PROC
            ),
        }
        Registry {
            table,
            procfs,
            memcg,
            kills: KillCounts::default(),
            targets: TargetTable::default(),
            last_target_ms: None,
        }
    }

    /// Applies one command from the client whose peer pid is `peer`.
    pub fn apply(&mut self, cmd: &Command, peer: i32, now_ms: u64, report: &Reporter) -> Effect {
        match *cmd {
            Command::ProcPrio(p) => {
                self.prio(&p, peer, report);
                Effect::None
            }
            Command::ProcsPrio(b) => {
                for p in b.as_slice() {
                    self.prio(p, peer, report);
                }
                Effect::None
            }
            Command::ProcRemove { pid } => {
                self.remove(pid, peer, report);
                Effect::None
            }
            Command::ProcPurge => {
                self.table
                    .remove_where(|p| p.owner == peer || p.owner == NO_OWNER, drop);
                Effect::None
            }
            Command::GetKillCnt { min_adj, max_adj } => {
                Effect::Reply(proto::id::GETKILLCNT, self.kill_count(min_adj, max_adj))
            }
            Command::Subscribe { event: e } => match e {
                event::KILL => Effect::Subscribe { stats: false },
                event::STAT => Effect::Subscribe { stats: true },
                _ => {
                    report.note(Note::Refused {
                        cmd: proto::id::SUBSCRIBE,
                        pid: 0,
                        peer,
                        why: Refusal::BadEvent(e),
                    });
                    Effect::None
                }
            },
            Command::Target(t) => self.target(&t, peer, now_ms, report),
            Command::UpdateProps => Effect::Reload,
            Command::StartMonitoring => Effect::StartMonitoring,
            Command::BootCompleted => Effect::BootCompleted,
        }
    }

    fn refuse(report: &Reporter, cmd: i32, pid: i32, peer: i32, why: Refusal) {
        report.note(Note::Refused {
            cmd,
            pid,
            peer,
            why,
        });
    }

    /// GETKILLCNT: kills with adj in [min, max]; a min above 1000 asks for
    /// the total (ActivityManager asks (1001, 1001) that way).
    fn kill_count(&self, min_adj: i32, max_adj: i32) -> i32 {
        let (lo, hi) = if min_adj > proto::OOM_ADJ_MAX {
            (proto::OOM_ADJ_MIN, proto::OOM_ADJ_MAX)
        } else {
            (min_adj, max_adj)
        };
        self.kills.count(lo, hi).min(i32::MAX as u32) as i32
    }

    /// PROCPRIO / one PROCS_PRIO record.
    fn prio(&mut self, p: &Prio, peer: i32, report: &Reporter) {
        let cmd = proto::id::PROCPRIO;
        if !(proto::OOM_ADJ_MIN..=proto::OOM_ADJ_MAX).contains(&p.adj) {
            return Self::refuse(report, cmd, p.pid, peer, Refusal::AdjOutOfRange(p.adj));
        }
        if p.ptype != proto::ptype::APP && p.ptype != proto::ptype::SERVICE {
            return Self::refuse(report, cmd, p.pid, peer, Refusal::TypeOutOfRange(p.ptype));
        }
        if p.pid <= 0 {
            return Self::refuse(report, cmd, p.pid, peer, Refusal::BadPid);
        }
        // An app's soft limit follows its adj, and the launcher ranks with
        // perceptible apps in our table (per-app memcg only; the
        // oom_score_adj written stays what the client sent).
        let table_adj = self.memcg.as_ref().map_or(p.adj, |m| m.on_prio(p, report)) as i16;
        if let Some(e) = self.table.entry(p.pid) {
            let owner = e.proc().owner;
            let mine = owner == peer || owner == NO_OWNER;
            // A write through the descriptor kept from registration checks
            // liveness by itself (it fails once the process is gone); any
            // other update asks the pidfd (or the start time) first.
            let via_fd = mine && e.oom_adj_fd().is_some() && self.must_write(p, &e);
            let alive = if via_fd {
                self.update(p, table_adj, peer, report)
            } else if gone(&self.procfs, &e) {
                false
            } else if !mine {
                return Self::refuse(report, cmd, p.pid, peer, Refusal::NotOwner(owner));
            } else {
                self.update(p, table_adj, peer, report)
            };
            if alive {
                return;
            }
            // The registered process died without PROCREMOVE and its pid
            // may have come back: forget the old one, register anew.
            self.table.remove(p.pid);
            report.note(Note::Stale { pid: p.pid });
        }
        self.register(p, table_adj, peer, report);
    }

    /// Whether a record for a registered process needs a write: not for
    /// lmkd only, and not the value we wrote last (rewriting it changes
    /// nothing; a process that raised its own oom_score_adj meanwhile
    /// keeps it until its adj changes).
    fn must_write(&self, p: &Prio, e: &Entry<'_>) -> bool {
        !p.for_lmkd_only && e.written_adj() != Some(p.adj as i16)
    }

    /// A record for a registered process: write the adj (through the
    /// descriptor kept from registration: no /proc path walk, no thread
    /// check, the pidfd proved that once), then update the table. False,
    /// with nothing changed, if the write found the process gone.
    fn update(&mut self, p: &Prio, adj: i16, peer: i32, report: &Reporter) -> bool {
        let Some(e) = self.table.entry(p.pid) else {
            return false;
        };
        if p.for_lmkd_only && e.written_adj().is_some() {
            // Someone else writes oom_score_adj now: what we wrote last says
            // nothing about its value any more.
            self.table.set_written_adj(p.pid, None);
        } else if self.must_write(p, &e) {
            let r = match e.oom_adj_fd() {
                Some(fd) => sys::write_oom_adj_fd(fd, p.adj),
                None => self.procfs.write_oom_score_adj(p.pid, p.adj),
            };
            match r {
                Ok(()) => {
                    self.table.set_written_adj(p.pid, Some(p.adj as i16));
                }
                Err(e) if is_gone(e) => return false,
                Err(e) => {
                    self.table.set_written_adj(p.pid, None);
                    report.note(Note::OomAdjWriteFailed {
                        pid: p.pid,
                        errno: e.errno,
                    });
                }
            }
        }
        // Claim an unowned record (its client reconnected) and move it to
        // the head of its adj list.
        self.table.refresh(Proc {
            pid: p.pid,
            uid: p.uid,
            adj,
            ptype: p.ptype as u8,
            owner: peer,
        })
    }

    /// A record for a pid not in the table: prove it is a live process (not
    /// a thread), keep what identifies it and its `oom_score_adj`, write
    /// the adj, insert.
    fn register(&mut self, p: &Prio, adj: i16, peer: i32, report: &Reporter) {
        let cmd = proto::id::PROCPRIO;
        let mut h = Handles::default();
        match sys::pidfd_open(p.pid) {
            Ok(fd) => h.pidfd = Some(fd),
            // No pidfds (old kernel) or no descriptors left: identify the
            // process by its start time instead, as lmkd does without them.
            Err(e) if matches!(e.errno, libc::ENOSYS | libc::EMFILE | libc::ENFILE) => {
                match self.procfs.tgid(p.pid) {
                    Ok(tgid) if tgid != p.pid => {
                        return Self::refuse(report, cmd, p.pid, peer, Refusal::Thread(tgid))
                    }
                    Ok(_) => {}
                    Err(e) => {
                        return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno))
                    }
                }
                match self.procfs.start_ticks(p.pid) {
                    Ok(t) => h.start_ticks = t,
                    Err(e) => {
                        return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno))
                    }
                }
            }
            // A thread id: name its process in the refusal (this path only).
            Err(e) if e.errno == libc::EINVAL || e.errno == libc::ENOENT => {
                let why = match self.procfs.tgid(p.pid) {
                    Ok(tgid) if tgid != p.pid => Refusal::Thread(tgid),
                    Ok(_) => Refusal::Dead(e.errno),
                    Err(e) => Refusal::Dead(e.errno),
                };
                return Self::refuse(report, cmd, p.pid, peer, why);
            }
            Err(e) => return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno)),
        }
        match self.procfs.open_oom_score_adj(p.pid) {
            Ok(fd) => h.oom_adj = Some(fd),
            Err(e) if is_gone(e) => {
                return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno))
            }
            // Out of descriptors: writes go by path, one open each.
            Err(_) => {}
        }
        // The path was resolved by pid: make sure it still named our
        // process (alive after the open, so the pid was not reused).
        let alive = match &h.pidfd {
            Some(fd) => !sys::pidfd_exited(std::os::fd::AsFd::as_fd(fd)),
            None => self.procfs.start_ticks(p.pid) == Ok(h.start_ticks),
        };
        if !alive {
            return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(libc::ESRCH));
        }
        let mut written = None;
        if !p.for_lmkd_only {
            let r = match &h.oom_adj {
                Some(fd) => sys::write_oom_adj_fd(std::os::fd::AsFd::as_fd(fd), p.adj),
                None => self.procfs.write_oom_score_adj(p.pid, p.adj),
            };
            match r {
                Ok(()) => written = Some(p.adj as i16),
                Err(e) if is_gone(e) => {
                    return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno))
                }
                Err(e) => report.note(Note::OomAdjWriteFailed {
                    pid: p.pid,
                    errno: e.errno,
                }),
            }
        }
        let rec = Proc {
            pid: p.pid,
            uid: p.uid,
            adj,
            ptype: p.ptype as u8,
            owner: peer,
        };
        match self.table.try_insert_with(rec, h) {
            Ok(()) => {
                self.table.set_written_adj(p.pid, written);
            }
            Err(_) => Self::refuse(
                report,
                cmd,
                p.pid,
                peer,
                Refusal::TableFull(self.table.capacity()),
            ),
        }
    }

    fn remove(&mut self, pid: i32, peer: i32, report: &Reporter) {
        let cmd = proto::id::PROCREMOVE;
        match self.table.get(pid) {
            None => Self::refuse(report, cmd, pid, peer, Refusal::UnknownPid),
            Some(p) if p.owner != peer && p.owner != NO_OWNER => {
                Self::refuse(report, cmd, pid, peer, Refusal::NotOwner(p.owner))
            }
            Some(_) => {
                self.table.remove(pid);
            }
        }
    }

    fn target(&mut self, t: &TargetTable, peer: i32, now_ms: u64, report: &Reporter) -> Effect {
        let cmd = proto::id::TARGET;
        if self
            .last_target_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < TARGET_INTERVAL_MS)
        {
            Self::refuse(report, cmd, 0, peer, Refusal::RateLimited);
            return Effect::None;
        }
        let valid = t
            .as_slice()
            .iter()
            .all(|l| l.minfree >= 0 && (proto::OOM_ADJ_MIN..=proto::OOM_ADJ_MAX).contains(&l.adj));
        if !valid {
            Self::refuse(report, cmd, 0, peer, Refusal::BadTarget);
            return Effect::None;
        }
        self.last_target_ms = Some(now_ms);
        self.targets = *t;
        Effect::TargetsChanged
    }

    /// Records of a disconnected client stay, unowned, until someone purges
    /// or claims them.
    pub fn disown(&mut self, peer: i32) {
        self.table.disown(peer);
    }

    /// Drops a record whose process is gone (after a kill or found stale);
    /// its descriptors close.
    pub fn forget(&mut self, pid: i32) {
        self.table.remove(pid);
    }
}

/// Whether a registered process has exited (so its pid may name another
/// process now): its pidfd is readable, or, without a pidfd, its start
/// time no longer matches the one recorded at registration.
pub fn gone(procfs: &ProcFs, e: &Entry<'_>) -> bool {
    match e.pidfd() {
        Some(fd) => sys::pidfd_exited(fd),
        None => procfs.start_ticks(e.proc().pid) != Ok(e.start_ticks()),
    }
}

/// The errors that mean the process no longer exists.
fn is_gone(e: SysError) -> bool {
    e.errno == libc::ENOENT || e.errno == libc::ESRCH
}
