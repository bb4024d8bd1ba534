//! What each control request answers: the views of the kill history,
//! the counters and histograms, the status, the process table copy and the
//! configuration, and the changes a privileged client may ask for. Apart
//! from `mod.rs`, which owns the socket, the threads and who may ask.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::wire::{self, ErrorKind, ErrorReply, Request, Response};
use super::{error, failure, shared, Ctx, Shared, CORE_TIMEOUT};
use crate::config::{Config, Value, PERSIST_PREFIX, RO_PREFIX};
use crate::sys;
use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

pub(super) fn kill_view(k: &shared::KillEntry) -> wire::Kill {
    wire::Kill {
        serial: k.serial,
        time_ms: k.time_ms,
        pid: k.pid,
        name: k.name(),
        uid: k.uid,
        adj: k.adj,
        min_adj: k.min_adj,
        reason: REASON_NAMES[k.reason_slot()].to_string(),
        reason_code: shared::slot_code(k.reason_slot()),
        free_kb: k.free_kb,
        free_swap_kb: k.free_swap_kb,
        thrashing_pct: k.thrashing,
        rss_kb: k.rss_kb,
        swap_kb: k.swap_kb,
        event_to_signal_us: k.event_to_signal_us,
        signal_to_exit_us: (k.signal_to_exit_us > 0).then_some(k.signal_to_exit_us),
        reap_us: (k.reap_us > 0).then_some(k.reap_us),
        dry_run: k.dry_run != 0,
    }
}

/// lmkd's statsd reason names, by code, then the three reported as -1.
const REASON_NAMES: [&str; shared::REASON_SLOTS] = [
    "pressure_after_kill",
    "not_responding",
    "low_swap_and_thrashing",
    "low_mem_and_swap",
    "low_mem_and_thrashing",
    "direct_recl_and_thrashing",
    "low_mem_and_swap_util",
    "low_filecache_after_thrashing",
    "low_mem",
    "direct_recl_stuck",
    "minfree",
    "vmpressure",
    "watchdog",
];

/// The name of a statsd code (-1: minfree).
pub fn reason_name(code: i32) -> &'static str {
    REASON_NAMES[shared::reason_slot(code)]
}

/// The name of a kill's reason.
pub fn kill_reason_name(reason: crate::policy::KillReason) -> &'static str {
    REASON_NAMES[shared::kill_slot(reason)]
}

const COMMAND_NAMES: [&str; shared::COMMANDS] = [
    "target",
    "procprio",
    "procremove",
    "procpurge",
    "getkillcnt",
    "subscribe",
    "prockill",
    "update_props",
    "stat_kill_occurred",
    "start_monitoring",
    "boot_completed",
    "procs_prio",
];

fn counts(names: &[&str], vals: &[std::sync::atomic::AtomicU64]) -> Vec<wire::Count> {
    names
        .iter()
        .zip(vals)
        .map(|(n, v)| wire::Count {
            name: n.to_string(),
            count: v.load(Ordering::Relaxed),
        })
        .collect()
}

fn histogram(h: &shared::Histogram) -> wire::Histogram {
    let c = h.counts();
    let count: u64 = c.iter().sum();
    wire::Histogram {
        count,
        mean_us: h.sum_us.load(Ordering::Relaxed) / count.max(1),
        buckets: c
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| wire::Bucket {
                below_us: if i == 0 { 1 } else { 1u64 << i.min(63) },
                count: n,
            })
            .collect(),
    }
}

/// What a request is answered with: a whole response, or the `evals`
/// batch, which is read from the ring as it is written (see [`EvalsReply`]).
pub(super) enum Reply<'a> {
    Whole(Response),
    Evals(EvalsReply<'a>),
}

impl Serialize for Reply<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Whole(r) => r.serialize(s),
            // As `Response::Evals(wire::Evals)` is written: {"evals":{...}}.
            Reply::Evals(e) => s.serialize_newtype_variant("Response", 8, "evals", e),
        }
    }
}

/// The `evals` reply, serialized as [`wire::Evals`] straight from the ring:
/// `lmkctl record` asks for one every 200 ms for as long as it runs, and a
/// copy of each batch (and a buffer for its text) was a heap allocation
/// large enough that the allocator mapped and unmapped memory for it on
/// every request. `lost` comes last: it also counts the records that left
/// the ring while the batch was being written.
pub(super) struct EvalsReply<'a> {
    shared: &'a Shared,
    toml: &'a str,
    generation: u64,
    first: u64,
    total: u64,
    lost_before: u64,
    lost_during: Cell<u64>,
}

impl<'a> EvalsReply<'a> {
    /// Evaluations after `after`, at most a ring's worth per reply.
    fn new(s: &'a Shared, after: u64, toml: &'a mut String) -> EvalsReply<'a> {
        let generation = s.config_gen.load(Ordering::Acquire);
        s.copy_toml(toml);
        let total = s.eval_count.load(Ordering::Acquire);
        let first = after.max(total.saturating_sub(s.eval_capacity() as u64)) + 1;
        EvalsReply {
            shared: s,
            toml,
            generation,
            first,
            total,
            lost_before: first.saturating_sub(after + 1),
            lost_during: Cell::new(0),
        }
    }
}

impl Serialize for EvalsReply<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Evals", 7)?;
        st.serialize_field("config_toml", self.toml)?;
        st.serialize_field("config_generation", &self.generation)?;
        st.serialize_field("page_size", &crate::snapshot::page_size())?;
        st.serialize_field("ring", &(self.shared.eval_capacity() as u64))?;
        st.serialize_field("total", &self.total)?;
        st.serialize_field("records", &RingRecords(self))?;
        st.serialize_field("lost", &(self.lost_before + self.lost_during.get()))?;
        st.end()
    }
}

struct RingRecords<'r, 'a>(&'r EvalsReply<'a>);

impl Serialize for RingRecords<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        let mut seq = s.serialize_seq(None)?;
        for serial in e.first..=e.total {
            match e.shared.eval(serial) {
                Some(w) => seq.serialize_element(&w[..])?,
                None => e.lost_during.set(e.lost_during.get() + 1),
            }
        }
        seq.end()
    }
}

impl Ctx {
    /// The answer to `req`; `toml` is the connection's buffer for the
    /// configuration text an `evals` reply carries. Not inlined into the
    /// serving loop: most of it is for rare requests, and a recording
    /// client should page in only the dispatch and its own arm.
    #[inline(never)]
    pub(super) fn handle<'a>(&'a self, req: &Request, toml: &'a mut String) -> Reply<'a> {
        let whole = match req {
            Request::Status => Response::Status(self.status()),
            Request::Procs => match self.procs() {
                Ok(p) => Response::Procs(p),
                Err(e) => Response::Error(e),
            },
            Request::Kills { .. } => Response::Kills(self.kills()),
            Request::Stats => Response::Stats(self.stats()),
            Request::ConfigGet { key } => {
                let items = self.config_items();
                match key {
                    None => Response::Config(items),
                    Some(k) => match items.into_iter().find(|i| &i.key == k) {
                        Some(i) => Response::Config(vec![i]),
                        None => error(ErrorKind::UnknownKey, format!("no configuration key {k:?}")),
                    },
                }
            }
            Request::ConfigSet { key, value } => self.set(key, value),
            Request::Reload => self.reload(),
            Request::Evals { after } => {
                return Reply::Evals(EvalsReply::new(&self.shared, *after, toml))
            }
        };
        Reply::Whole(whole)
    }

    pub(super) fn uptime_ms(&self) -> u64 {
        sys::monotonic_ns().saturating_sub(self.shared.start_ns) / 1_000_000
    }

    pub(super) fn kills(&self) -> Vec<wire::Kill> {
        let n = self.shared.kill_count.load(Ordering::Acquire);
        let first = n.saturating_sub(crate::history::HISTORY as u64) + 1;
        (first..=n)
            .filter_map(|i| self.shared.kill(i))
            .map(|k| kill_view(&k))
            .collect()
    }

    pub(super) fn stats(&self) -> wire::Stats {
        let s = &self.shared;
        wire::Stats {
            uptime_ms: self.uptime_ms(),
            event_to_signal: histogram(&s.event_to_signal),
            signal_to_exit: histogram(&s.signal_to_exit),
            reap: histogram(&s.reap),
            pressure_events: counts(&shared::LEVELS, &s.pressure),
            commands: counts(&COMMAND_NAMES, &s.commands),
            refused_commands: s.refused_commands.load(Ordering::Relaxed),
            refused_connections: s.refused_connections.load(Ordering::Relaxed),
            dropped_notes: s.dropped_notes.load(Ordering::Relaxed),
        }
    }

    pub(super) fn status(&self) -> wire::Status {
        let s = &self.shared;
        let cfg = s.current_config();
        let bands: Vec<&str> = shared::BANDS.iter().map(|b| b.1).collect();
        wire::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            protocol: wire::PROTOCOL,
            pid: std::process::id(),
            uptime_ms: self.uptime_ms(),
            config_file: self.config_path.as_ref().map(|p| p.display().to_string()),
            pressure: wire::PressureInfo {
                psi_path: cfg.startup.psi_path.display().to_string(),
                partial_stall_ms: cfg.psi_partial_stall_ms,
                early_stall_ms: cfg.early_stall_ms(),
                complete_stall_ms: cfg.psi_complete_stall_ms,
                now: psi_now(&cfg.startup.psi_path),
            },
            table_used: s.table_len.load(Ordering::Relaxed),
            table_capacity: s.table_cap.load(Ordering::Relaxed),
            kills_total: s.kill_count.load(Ordering::Relaxed),
            kills_by_reason: counts(&REASON_NAMES, &s.kills_by_reason),
            kills_by_band: counts(&bands, &s.kills_by_band),
            dropped_notes: s.dropped_notes.load(Ordering::Relaxed),
            config: self.config_items(),
        }
    }

    /// Asks the core for a copy of the table and waits for it.
    pub(super) fn procs(&self) -> Result<Vec<wire::ProcRow>, ErrorReply> {
        let s = &self.shared;
        let _one = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let asked = s.table_asked.load(Ordering::Relaxed) + 1;
        s.table_asked.store(asked, Ordering::Release);
        self.doorbell.ring();
        if !self.wait_core(|| s.table_done.load(Ordering::Acquire) == asked) {
            return Err(failure(
                ErrorKind::Busy,
                "the daemon's core did not copy its table in time",
            ));
        }
        let n = s.table_rows.load(Ordering::Relaxed) as usize;
        let rows: Vec<shared::Row> = (0..n).filter_map(|i| s.row(i)).collect();
        drop(_one);
        let root = s.current_config().startup.proc_root;
        Ok(rows
            .into_iter()
            .map(|r| {
                let dir = root.join(r.pid.to_string());
                wire::ProcRow {
                    pid: r.pid,
                    uid: r.uid,
                    adj: r.adj.into(),
                    ptype: if r.ptype == 1 { "service" } else { "app" }.into(),
                    owner: r.owner,
                    // comm, as the kill log: reading cmdline takes the
                    // process's mmap lock, which a process in reclaim may
                    // hold for seconds.
                    name: std::fs::read_to_string(dir.join("comm"))
                        .map(|s| s.trim_end().to_string())
                        .unwrap_or_default(),
                    rss_kb: rss_kb(&dir),
                }
            })
            .collect())
    }

    pub(super) fn wait_core(&self, done: impl Fn() -> bool) -> bool {
        let end = Instant::now() + CORE_TIMEOUT;
        while !done() {
            if Instant::now() >= end {
                return false;
            }
            self.reply.wait(20);
            self.reply.clear();
        }
        true
    }

    /// Every key with its value in force and where it came from.
    pub(super) fn config_items(&self) -> Vec<wire::ConfigItem> {
        let s = &self.shared;
        let cfg = s.current_config();
        let gen = s.config_gen.load(Ordering::Acquire);
        let live = {
            let mut l = self.live.lock().unwrap_or_else(|e| e.into_inner());
            if l.0 != gen {
                l.1.clear();
            }
            l.1.clone()
        };
        let file_keys: BTreeSet<String> = self
            .config_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.parse::<toml::Table>().ok())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        let props: BTreeSet<&str> = Config::property_key_names().collect();
        Config::key_names()
            .map(|k| {
                let set_by_prop = props.contains(k)
                    && [RO_PREFIX, PERSIST_PREFIX].iter().any(|p| {
                        self.props
                            .get(&format!("{p}{k}"))
                            .is_some_and(|v| !v.trim().is_empty())
                    });
                let source = if live.contains(k) {
                    "live"
                } else if set_by_prop {
                    "property"
                } else if file_keys.contains(k) {
                    "file"
                } else {
                    "default"
                };
                wire::ConfigItem {
                    key: k.to_string(),
                    value: json_value(cfg.value(k)),
                    source: source.into(),
                }
            })
            .collect()
    }

    pub(super) fn set(&self, key: &str, value: &str) -> Response {
        if !Config::key_names().any(|k| k == key) {
            return error(
                ErrorKind::UnknownKey,
                format!("no configuration key {key:?}"),
            );
        }
        if !Config::live_key_names().any(|k| k == key) {
            return error(
                ErrorKind::NotLive,
                format!("{key} is read at start-up only (set it in the config file and restart)"),
            );
        }
        let _one = self.core.lock().unwrap_or_else(|e| e.into_inner());
        let mut cfg = self.shared.current_config();
        if let Err(e) = cfg.set_key(key, value) {
            return error(ErrorKind::BadValue, e.to_string());
        }
        let shown = json_value(cfg.value(key));
        match self.change(|s| s.post_config(Box::new(cfg)).is_ok()) {
            Ok(gen) => {
                let mut l = self.live.lock().unwrap_or_else(|e| e.into_inner());
                if l.0 != gen.saturating_sub(1) {
                    l.1.clear();
                }
                l.0 = gen;
                l.1.insert(key.to_string());
                Response::Applied(wire::Applied {
                    key: key.to_string(),
                    value: shown,
                    persisted: false,
                    note: "applied live; not persisted: the next reload or restart \
                           goes back to the file and properties"
                        .into(),
                })
            }
            Err(e) => Response::Error(e),
        }
    }

    pub(super) fn reload(&self) -> Response {
        let _one = self.core.lock().unwrap_or_else(|e| e.into_inner());
        match self.change(|s| {
            s.reload_asked.store(true, Ordering::Release);
            true
        }) {
            Ok(gen) => Response::Reloaded(wire::Reloaded {
                config_generation: gen,
            }),
            Err(e) => Response::Error(e),
        }
    }

    /// Posts a change, rings the core, waits for its answer; returns the
    /// new configuration generation.
    pub(super) fn change(&self, post: impl FnOnce(&Shared) -> bool) -> Result<u64, ErrorReply> {
        let s = &self.shared;
        let asked = s.change_asked.load(Ordering::Relaxed) + 1;
        s.change_asked.store(asked, Ordering::Release);
        if !post(s) {
            return Err(failure(
                ErrorKind::Busy,
                "an earlier change is still waiting for the core",
            ));
        }
        self.doorbell.ring();
        if !self.wait_core(|| s.change_done.load(Ordering::Acquire) >= asked) {
            return Err(failure(
                ErrorKind::Busy,
                "the daemon's core did not apply the change in time",
            ));
        }
        if !s.change_ok.load(Ordering::Acquire) {
            return Err(failure(
                ErrorKind::Rejected,
                "the daemon rejected the new configuration and kept the old one (see its log)",
            ));
        }
        Ok(s.config_gen.load(Ordering::Acquire))
    }
}

/// A configuration value as JSON (null: no such key).
fn json_value(v: Option<Value>) -> serde_json::Value {
    match v {
        Some(Value::Bool(b)) => b.into(),
        Some(Value::Int(i)) => i.into(),
        Some(Value::Path(p)) => p.display().to_string().into(),
        Some(Value::Uids(u)) => u.into(),
        None => serde_json::Value::Null,
    }
}

fn rss_kb(dir: &Path) -> Option<u64> {
    let statm = std::fs::read_to_string(dir.join("statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * crate::snapshot::page_size() / 1024)
}

fn psi_now(path: &Path) -> Option<wire::PsiNow> {
    let buf = std::fs::read(path).ok()?;
    let mut p = crate::snapshot::PsiAvg::default();
    crate::snapshot::parse_psi(&buf, &mut p).ok()?;
    let pct = |v: u32| f64::from(v) / 100.0;
    Some(wire::PsiNow {
        some_avg10: pct(p.some_avg10),
        some_avg60: pct(p.some_avg60),
        some_avg300: pct(p.some_avg300),
        full_avg10: pct(p.full_avg10),
        full_avg60: pct(p.full_avg60),
        full_avg300: pct(p.full_avg300),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Decision, Pressure, Tunables};
    use crate::snapshot::Snapshot;

    /// A publisher whose ring holds 4 evaluations, with `n` published.
    fn ring_with(n: u64) -> shared::Publisher {
        let s = Shared::new(8, &Config::default()).recording(4);
        let bell = super::super::Bell::new("test").unwrap();
        let p = shared::Publisher::new(std::sync::Arc::new(s), bell.clone(), bell);
        publish(&p, n);
        p
    }

    /// Publishes `n` more evaluations, as the core does after each one.
    fn publish(p: &shared::Publisher, n: u64) {
        let t = crate::table::ProcTable::new(8).unwrap();
        let tun = Tunables::from_config(&Config::default());
        let targets = crate::proto::TargetTable::default();
        let d = Decision {
            kill: None,
            poll: crate::policy::PollInterval::Fast,
            extend_poll: false,
            figures: crate::policy::Figures::default(),
        };
        let done = p.shared.eval_count.load(Ordering::Acquire);
        for ms in done + 1..=done + n {
            let snap = Snapshot {
                time_ms: ms,
                ..Snapshot::default()
            };
            p.record(Pressure::Poll, &snap, &d, &tun, &targets, &t);
        }
    }

    fn reply(p: &shared::Publisher, after: u64) -> wire::Evals {
        let mut toml = String::from("stale text from the last reply");
        let r = Reply::Evals(EvalsReply::new(&p.shared, after, &mut toml));
        let json = serde_json::to_string(&r).unwrap();
        match serde_json::from_str::<Response>(&json).unwrap() {
            Response::Evals(e) => e,
            other => panic!("not an evals reply: {other:?}"),
        }
    }

    #[test]
    fn evals_reply_reads_as_the_wire_batch_and_counts_what_left_the_ring() {
        let p = ring_with(6);
        let e = reply(&p, 0);
        assert_eq!(
            (e.total, e.ring, e.lost),
            (6, 4, 2),
            "1 and 2 were overwritten"
        );
        let serials: Vec<u64> = e.records.iter().map(|r| r[0]).collect();
        assert_eq!(serials, [3, 4, 5, 6]);
        assert!(e
            .records
            .iter()
            .all(|r| r.len() == crate::record::EVAL_WORDS));
        assert_eq!(e.config_toml, Config::default().to_toml());
        assert_eq!(e.page_size, crate::snapshot::page_size());

        let e = reply(&p, 4);
        assert_eq!((e.lost, e.records.len()), (0, 2));
        assert_eq!(e.records[0][0], 5);
        let e = reply(&p, 6);
        assert_eq!((e.lost, e.records.len()), (0, 0));
        assert_eq!(reply(&ring_with(0), 0).records.len(), 0);
    }

    /// The core keeps publishing while a batch is written: records that
    /// leave the ring between the reply's start and their turn are counted
    /// in `lost`, not sent as whatever replaced them.
    #[test]
    fn evals_reply_counts_what_left_the_ring_while_it_was_written() {
        let p = ring_with(4);
        let mut toml = String::new();
        let r = Reply::Evals(EvalsReply::new(&p.shared, 0, &mut toml));
        // 5 and 6 overwrite 1 and 2 after the reply fixed its range (1-4).
        publish(&p, 2);
        let json = serde_json::to_string(&r).unwrap();
        let Response::Evals(e) = serde_json::from_str::<Response>(&json).unwrap() else {
            panic!("not an evals reply: {json}");
        };
        let serials: Vec<u64> = e.records.iter().map(|r| r[0]).collect();
        assert_eq!(serials, [3, 4], "only what was still in the ring");
        assert_eq!((e.total, e.lost), (4, 2), "1 and 2 left during the reply");
    }
}
