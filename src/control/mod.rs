//! The control socket: `lmkctl`'s way into a running daemon, apart from
//! lmkd's data socket and its three client slots.
//!
//! Served by its own threads (one accepting, one per connection, at most
//! [`MAX_CLIENTS`]; the first client's thread is started with the daemon
//! and kept). They read what the core publishes in [`shared`] and
//! never touch the core's state: the process table is copied by the core
//! itself, a chunk per wakeup, when asked through a doorbell; a
//! configuration change is validated here and handed over whole. The core
//! never waits for these threads.
//!
//! Peer credentials decide what a client may do: root and system change,
//! shell (what `adb shell` runs as) reads, anyone else is refused.

mod answers;
pub mod shared;
pub mod wire;

use answers::kill_view;
pub use answers::{kill_reason_name, reason_name};

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::props::PropertySource;
use crate::protect;
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
        idle: Idle::default(),
        on_start,
    });
    let kept = ctx.clone();
    spawn_connection_thread(move || connection_thread(kept, None))
        .map_err(|e| io::Error::new(e.kind(), format!("spawn control connection thread: {e}")))?;
    let b = std::thread::Builder::new()
        .name("lmkd-control".into())
        .stack_size(256 * 1024);
    protect::spawn_demand_paged(b, move || {
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
    idle: Idle,
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
        if ctx.clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
            let c = ctx.clone();
            spawn_for_client(&ctx, move || {
                let _ = refuse(
                    &stream,
                    ErrorKind::Busy,
                    format!("{MAX_CLIENTS} control clients are connected already; try again"),
                );
                c.clients.fetch_sub(1, Ordering::AcqRel);
            });
            continue;
        }
        if let Err(stream) = ctx.idle.hand(stream) {
            let c = ctx.clone();
            spawn_for_client(&ctx, move || connection_thread(c, Some(stream)));
        }
    }
}

/// Serves `first`, then waits to serve later clients while it is the one
/// kept idle (see [`Idle`]); exits when another already is.
fn connection_thread(ctx: Arc<Ctx>, mut first: Option<UnixStream>) {
    (ctx.on_start)("control");
    loop {
        if let Some(stream) = first.take() {
            let _ = serve(stream, &ctx);
            ctx.clients.fetch_sub(1, Ordering::AcqRel);
        }
        match ctx.idle.wait() {
            Some(next) => first = Some(next),
            None => return,
        }
    }
}

/// Starts a thread for a client the caller has counted in `clients`.
fn spawn_for_client(ctx: &Ctx, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = spawn_connection_thread(f) {
        ctx.clients.fetch_sub(1, Ordering::AcqRel);
        log::warn!("control socket: cannot start a connection thread: {e}");
    }
}

fn spawn_connection_thread(f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let b = std::thread::Builder::new()
        .name("lmkd-control-c".into())
        .stack_size(256 * 1024);
    protect::spawn_demand_paged(b, f).map(drop)
}

/// A connection thread kept between clients, started with the daemon.
/// Starting a thread after start-up runs std's and libc's thread set-up
/// and tear-down code and maps a signal stack; code first run after
/// start-up stays locked in memory (`residency`), and with `lmkctl record`
/// attached that code was 15 of the 37 pages the control plane brought in
/// (60 kB). Further threads serve clients beyond the first at once.
#[derive(Default)]
struct Idle {
    /// Whether a thread waits, and the connection handed to it.
    state: Mutex<(bool, Option<UnixStream>)>,
    wake: Condvar,
}

impl Idle {
    /// Gives `stream` to the waiting thread, or back when none waits.
    fn hand(&self, stream: UnixStream) -> Result<(), UnixStream> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (waiting, handed) = &mut *st;
        if !*waiting || handed.is_some() {
            return Err(stream);
        }
        *waiting = false;
        *handed = Some(stream);
        self.wake.notify_one();
        Ok(())
    }

    /// Waits for a connection, or None at once when a thread already waits.
    fn wait(&self) -> Option<UnixStream> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.0 {
            return None;
        }
        st.0 = true;
        loop {
            if let Some(s) = st.1.take() {
                return Some(s);
            }
            st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(s, PeerCredentials).ok().map(|c| c.uid())
}

/// Writes `r` as one line. Serialized straight into `w`: a connection's
/// writer is buffered once (see `serve`), not a buffer per reply.
fn send(w: &mut impl Write, r: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *w, r).map_err(io::Error::from)?;
    w.write_all(b"\n")?;
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
    // Buffers kept for the connection: replies are written through `out`
    // in pieces, and `toml` takes the configuration text of each `evals`.
    let mut out = BufWriter::with_capacity(8 * 1024, stream.try_clone()?);
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut lines = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    let mut toml = String::new();
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
        send(&mut out, &ctx.handle(&req, &mut toml))?;
    }
}

/// Sends the history, then each new kill as it is published, until the
/// client hangs up.
fn follow(stream: &UnixStream, out: &mut impl Write, ctx: &Ctx) -> io::Result<()> {
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
        use crate::policy::KillReason;
        assert_eq!(kill_reason_name(KillReason::Watchdog), "watchdog");
        assert_eq!(kill_reason_name(KillReason::VmPressure), "vmpressure");
        assert_eq!(kill_reason_name(KillReason::Minfree), "minfree");
        assert_eq!(kill_reason_name(KillReason::LowMem), "low_mem");
    }
}
