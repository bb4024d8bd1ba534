//! What each client command does to the process table and daemon state.
//! The socket edge (`server`) hands decoded commands here; effects that
//! need the rest of the daemon (reload, monitors, boot) are returned.

use std::os::fd::{AsRawFd, IntoRawFd};

use crate::memcg::AppMemcg;
use crate::proto::{self, event, Command, Prio, TargetTable};
use crate::report::{KillCounts, Note, Refusal, Reporter};
use crate::sys::{self, ProcFs};
use crate::table::{Proc, ProcTable, NO_OWNER};

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
    pub fn new(table: ProcTable, procfs: ProcFs, memcg: Option<AppMemcg>) -> Registry {
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
                    .remove_where(|p| p.owner == peer || p.owner == NO_OWNER, close_pidfd);
                Effect::None
            }
            Command::GetKillCnt { min_adj, max_adj } => Effect::Reply(
                proto::id::GETKILLCNT,
                self.kills.count(min_adj, max_adj) as i32,
            ),
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
        if let Some(old) = self.table.get(p.pid).copied() {
            if sys::pidfd_exited(borrow(old.pidfd)) {
                // The registered process died without PROCREMOVE and its pid
                // came back: forget the old one, register the new one below.
                if let Some(old) = self.table.remove(p.pid) {
                    close_pidfd(old);
                }
                report.note(Note::Stale { pid: p.pid });
            } else if old.owner != peer && old.owner != NO_OWNER {
                return Self::refuse(report, cmd, p.pid, peer, Refusal::NotOwner(old.owner));
            }
        }
        match self.procfs.tgid(p.pid) {
            Ok(tgid) if tgid != p.pid => {
                return Self::refuse(report, cmd, p.pid, peer, Refusal::Thread(tgid))
            }
            Ok(_) => {}
            Err(e) => return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno)),
        }
        if !p.for_lmkd_only {
            if let Err(e) = self.procfs.write_oom_score_adj(p.pid, p.adj) {
                if e.errno == libc::ENOENT || e.errno == libc::ESRCH {
                    return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno));
                }
                report.note(Note::OomAdjWriteFailed {
                    pid: p.pid,
                    errno: e.errno,
                });
            }
        }
        // An app's soft limit follows its adj; the launcher ranks lower.
        let adj = self.memcg.as_ref().map_or(p.adj, |m| m.on_prio(p, report)) as i16;
        if self.table.get(p.pid).is_some() {
            // Claim an unowned record (its client reconnected) and move it
            // to the head of its adj list.
            self.table.set_owner(p.pid, peer);
            self.table.set_uid(p.pid, p.uid);
            self.table.set_ptype(p.pid, p.ptype as u8);
            self.table.set_adj(p.pid, adj);
            return;
        }
        let pidfd = match sys::pidfd_open(p.pid) {
            Ok(fd) => fd,
            Err(e) => return Self::refuse(report, cmd, p.pid, peer, Refusal::Dead(e.errno)),
        };
        let rec = Proc {
            pid: p.pid,
            uid: p.uid,
            adj,
            ptype: p.ptype as u8,
            pidfd: pidfd.as_raw_fd(),
            owner: peer,
        };
        match self.table.insert(rec) {
            // The table owns the descriptor from here on.
            Ok(()) => drop(pidfd.into_raw_fd()),
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
                if let Some(p) = self.table.remove(pid) {
                    close_pidfd(p);
                }
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

    /// Drops a record whose process is gone (after a kill or found stale).
    pub fn forget(&mut self, pid: i32) {
        if let Some(p) = self.table.remove(pid) {
            close_pidfd(p);
        }
    }
}

fn borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the table owns the pidfd until the record is removed, and we
    // hold &mut to the table for the whole use.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// Closes the pidfd of a record leaving the table.
pub fn close_pidfd(p: Proc) {
    if p.pidfd >= 0 {
        // SAFETY: the record owned this descriptor and is gone now.
        unsafe { libc::close(p.pidfd) };
    }
}
