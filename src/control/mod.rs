//! The control socket: `lmkctl`'s way into a running daemon, apart from
//! lmkd's data socket and its three client slots.
//!
//! Served by its own threads (one accepting, one per connection, at most
//! [`MAX_CLIENTS`]). They read what the core publishes in [`shared`] and
//! never touch the core's state: the process table is copied by the core
//! itself, a chunk per wakeup, when asked through a doorbell; a
//! configuration change is validated here and handed over whole. The core
//! never waits for these threads.
//!
//! Peer credentials decide what a client may do: root and system change,
//! shell (what `adb shell` runs as) reads, anyone else is refused.

pub mod shared;
pub mod wire;

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, Value, PERSIST_PREFIX, RO_PREFIX};
use crate::props::PropertySource;
use crate::sys;
pub use shared::{Ask, Publisher, Shared};
use wire::{ErrorKind, ErrorReply, Request, Response};

/// Environment variable init sets for the `lmkd_ctl` socket of lmkd.rc.
pub const ANDROID_SOCKET_ENV: &str = "ANDROID_SOCKET_lmkd_ctl";

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CLIENTS: usize = 8;

/// How long a request waits for the core (table copy, config change).
const CORE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a following connection looks for new kills.
const FOLLOW_POLL_MS: i32 = 50;

/// Who may do what, from the peer's uid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Change,
    Read,
}

/// root and system may change; shell may read; anyone else nothing.
pub fn role(uid: u32) -> Option<Role> {
    match uid {
        0 | 1000 => Some(Role::Change),
        2000 => Some(Role::Read),
        _ => None,
    }
}

/// The default control socket beside the data socket.
pub fn default_path(data_socket: &Path) -> PathBuf {
    let mut s = data_socket.as_os_str().to_owned();
    s.push(".ctl");
    PathBuf::from(s)
}

/// An eventfd used as a doorbell between the control threads and the core.
#[derive(Clone)]
pub struct Bell(Arc<OwnedFd>);

impl Bell {
    pub(crate) fn new(what: &'static str) -> io::Result<Bell> {
        // SAFETY: eventfd(2) with valid flags; checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(sys::SysError::last(what).into());
        }
        // SAFETY: a fresh descriptor we own.
        Ok(Bell(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our eventfd; EAGAIN (counter full) is harmless.
        unsafe { libc::write(self.0.as_raw_fd(), &one as *const u64 as *const _, 8) };
    }

    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: an 8-byte read from our non-blocking eventfd.
        unsafe { libc::read(self.0.as_raw_fd(), &mut v as *mut u64 as *mut _, 8) };
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    fn wait(&self, timeout_ms: i32) {
        poll_in(self.0.as_raw_fd(), timeout_ms);
    }
}

fn poll_in(fd: RawFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
}

/// Where the control socket comes from.
pub enum Endpoint {
    /// Bind this path (mode 0666: the uid check is ours, after connect).
    Path(PathBuf),
    /// Use init's socket if present, else bind the path.
    InitOr(PathBuf),
}

/// Opens the control socket and starts serving it; returns the core's end.
/// `config_path` is the daemon's file (to say where values come from);
/// `path` is `--control PATH`, else init's socket is used, else the path
/// beside the data socket.
pub fn start(
    config: &Config,
    config_path: Option<PathBuf>,
    path: Option<PathBuf>,
    on_start: fn(&'static str),
) -> io::Result<Publisher> {
    let endpoint = match path {
        Some(p) => Endpoint::Path(p),
        None => Endpoint::InitOr(default_path(&config.startup.socket_path)),
    };
    let (listener, bound) = open(endpoint)?;
    let props = crate::props::system();
    let shared = Arc::new(
        Shared::new(config.startup.max_procs as usize, config).recording(shared::RECORD_RING),
    );
    let doorbell = Bell::new("eventfd for control requests")?;
    let reply = Bell::new("eventfd for control replies")?;
    let ctx = Arc::new(Ctx {
        shared: shared.clone(),
        doorbell: doorbell.clone(),
        reply: reply.clone(),
        config_path,
        props,
        core: Mutex::new(()),
        live: Mutex::new((0, BTreeSet::new())),
        clients: AtomicUsize::new(0),
        on_start,
    });
    std::thread::Builder::new()
        .name("lmkd-control".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            on_start("control");
            accept_loop(listener, ctx)
        })
        .map_err(|e| io::Error::new(e.kind(), format!("spawn control thread: {e}")))?;
    let mut p = Publisher::new(shared, doorbell, reply);
    p.bound = bound;
    Ok(p)
}

fn open(endpoint: Endpoint) -> io::Result<(UnixListener, Option<PathBuf>)> {
    let path = match endpoint {
        Endpoint::InitOr(p) => match crate::server::init_socket(ANDROID_SOCKET_ENV)? {
            Some(fd) => return Ok((UnixListener::from(fd), None)),
            None => p,
        },
        Endpoint::Path(p) => p,
    };
    let ctx = |what: &str, e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("{what} control socket {}: {e}", path.display()),
        )
    };
    // A socket left by an earlier run that nobody listens on.
    if std::fs::symlink_metadata(&path).is_ok() && UnixStream::connect(&path).is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let l = UnixListener::bind(&path).map_err(|e| ctx("bind", e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))
        .map_err(|e| ctx("chmod", e))?;
    Ok((l, Some(path)))
}

/// What the serving threads share.
struct Ctx {
    shared: Arc<Shared>,
    doorbell: Bell,
    reply: Bell,
    config_path: Option<PathBuf>,
    props: Box<dyn PropertySource>,
    /// One request to the core at a time.
    core: Mutex<()>,
    /// Keys set live, and the configuration generation they belong to (a
    /// reload from anywhere else forgets them).
    live: Mutex<(u64, BTreeSet<String>)>,
    clients: AtomicUsize,
    on_start: fn(&'static str),
}

fn accept_loop(listener: UnixListener, ctx: Arc<Ctx>) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) => {
                log::warn!("control socket accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Over the limit a client is told so at once (on a short-lived
        // thread: the refusal reads its request first).
        let full = ctx.clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS;
        let c = ctx.clone();
        let spawned = std::thread::Builder::new()
            .name("lmkd-control-c".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                (c.on_start)("control");
                let _ = if full {
                    refuse(
                        &stream,
                        ErrorKind::Busy,
                        format!("{MAX_CLIENTS} control clients are connected already; try again"),
                    )
                } else {
                    serve(stream, &c)
                };
                c.clients.fetch_sub(1, Ordering::AcqRel);
            });
        if let Err(e) = spawned {
            ctx.clients.fetch_sub(1, Ordering::AcqRel);
            log::warn!("control socket: cannot start a connection thread: {e}");
        }
    }
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(s, PeerCredentials).ok().map(|c| c.uid())
}

fn send(w: &mut impl Write, r: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error(failure(kind, message))
}

fn failure(kind: ErrorKind, message: impl Into<String>) -> ErrorReply {
    ErrorReply {
        kind,
        message: message.into(),
    }
}

/// Answers a connection's first request with an error, then closes.
fn refuse(stream: &UnixStream, kind: ErrorKind, message: String) -> io::Result<()> {
    // Read the request first: closing with it unread would reset the
    // connection and the client would never see why.
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let _ = BufReader::new(stream).read_line(&mut String::new());
    send(&mut &*stream, &error(kind, message))
}

fn serve(stream: UnixStream, ctx: &Ctx) -> io::Result<()> {
    let uid = peer_uid(&stream).unwrap_or(u32::MAX);
    let Some(role) = role(uid) else {
        return refuse(
            &stream,
            ErrorKind::Denied,
            format!(
                "uid {uid} may not use the lmkd control socket \
                 (root and system may change settings, shell may read)"
            ),
        );
    };
    let mut out = stream.try_clone()?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut lines = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.trim().is_empty() {
            continue;
        }
        let req = match serde_json::from_str::<Request>(&line) {
            Ok(r) => r,
            Err(e) => {
                send(&mut out, &error(ErrorKind::BadRequest, format!("{e}")))?;
                continue;
            }
        };
        if req.changes() && role != Role::Change {
            send(
                &mut out,
                &error(
                    ErrorKind::Denied,
                    format!("uid {uid} may read but not change settings (root or system may)"),
                ),
            )?;
            continue;
        }
        if let Request::Kills { follow: true } = req {
            return follow(&stream, &mut out, ctx);
        }
        send(&mut out, &ctx.handle(&req))?;
    }
}

/// Sends the history, then each new kill as it is published, until the
/// client hangs up.
fn follow(stream: &UnixStream, out: &mut UnixStream, ctx: &Ctx) -> io::Result<()> {
    let s = &ctx.shared;
    let mut seen = s.kill_count.load(Ordering::Acquire);
    send(out, &Response::Kills(ctx.kills()))?;
    // Exit and reap times arrive after the kill: hold the newest kill back
    // until they are in, or a second has passed.
    loop {
        if poll_in(stream.as_raw_fd(), FOLLOW_POLL_MS) {
            let mut b = [0u8; 64];
            // SAFETY: reading into a local buffer from our socket.
            let n = unsafe { libc::recv(stream.as_raw_fd(), b.as_mut_ptr() as *mut _, 64, 0) };
            if n <= 0 {
                return Ok(());
            }
        }
        let now = s.kill_count.load(Ordering::Acquire);
        while seen < now {
            seen += 1;
            let end = Instant::now() + Duration::from_secs(1);
            let mut e = s.kill(seen);
            while e.is_some_and(|k| k.signal_to_exit_us == 0 && k.dry_run == 0)
                && Instant::now() < end
                && seen == s.kill_count.load(Ordering::Acquire)
            {
                std::thread::sleep(Duration::from_millis(10));
                e = s.kill(seen).or(e);
            }
            if let Some(k) = e {
                send(out, &Response::Kill(kill_view(&k)))?;
            }
        }
    }
}

fn kill_view(k: &shared::KillEntry) -> wire::Kill {
    wire::Kill {
        serial: k.serial,
        time_ms: k.time_ms,
        pid: k.pid,
        name: k.name(),
        uid: k.uid,
        adj: k.adj,
        min_adj: k.min_adj,
        reason: reason_name(k.reason).to_string(),
        reason_code: k.reason,
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

/// lmkd's statsd reason names, by code; slot 10 is minfree (-1).
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
];

pub fn reason_name(code: i32) -> &'static str {
    REASON_NAMES[shared::reason_slot(code)]
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

impl Ctx {
    fn handle(&self, req: &Request) -> Response {
        match req {
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
            Request::Evals { after } => Response::Evals(self.evals(*after)),
        }
    }

    /// Evaluations after `after`, at most a ring's worth per reply.
    fn evals(&self, after: u64) -> wire::Evals {
        let s = &self.shared;
        let total = s.eval_count.load(Ordering::Acquire);
        let ring = s.eval_capacity() as u64;
        let first = after.max(total.saturating_sub(ring)) + 1;
        let mut records = Vec::new();
        let mut lost = first.saturating_sub(after + 1);
        for serial in first..=total {
            match s.eval(serial) {
                Some(w) => records.push(w.to_vec()),
                None => lost += 1,
            }
        }
        wire::Evals {
            config_toml: s.current_config().to_toml(),
            config_generation: s.config_gen.load(Ordering::Acquire),
            page_size: crate::snapshot::page_size(),
            ring,
            total,
            lost,
            records,
        }
    }

    fn uptime_ms(&self) -> u64 {
        sys::monotonic_ns().saturating_sub(self.shared.start_ns) / 1_000_000
    }

    fn kills(&self) -> Vec<wire::Kill> {
        let n = self.shared.kill_count.load(Ordering::Acquire);
        let first = n.saturating_sub(crate::history::HISTORY as u64) + 1;
        (first..=n)
            .filter_map(|i| self.shared.kill(i))
            .map(|k| kill_view(&k))
            .collect()
    }

    fn stats(&self) -> wire::Stats {
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

    fn status(&self) -> wire::Status {
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
    fn procs(&self) -> Result<Vec<wire::ProcRow>, ErrorReply> {
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

    fn wait_core(&self, done: impl Fn() -> bool) -> bool {
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
    fn config_items(&self) -> Vec<wire::ConfigItem> {
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

    fn set(&self, key: &str, value: &str) -> Response {
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

    fn reload(&self) -> Response {
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
    fn change(&self, post: impl FnOnce(&Shared) -> bool) -> Result<u64, ErrorReply> {
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

    #[test]
    fn roles_by_uid() {
        assert_eq!(role(0), Some(Role::Change));
        assert_eq!(role(1000), Some(Role::Change));
        assert_eq!(role(2000), Some(Role::Read));
        assert_eq!(role(10_057), None);
    }

    #[test]
    fn reason_names_follow_statsd_codes() {
        assert_eq!(reason_name(8), "low_mem");
        assert_eq!(reason_name(-1), "minfree");
        assert_eq!(reason_name(2), "low_swap_and_thrashing");
    }
}
