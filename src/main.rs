//! `lmkd`: the daemon, and its one-shot client modes.
//!
//!   lmkd [--config FILE] [--socket PATH] [--control PATH] [--dry-run]
//!                                                      run the daemon
//!   lmkd --check-config FILE                           print the effective config
//!   lmkd --reinit | --boot_completed [--socket PATH]   ask a running daemon
//!
//! Every failure is a [`MainError`]; each kind has its own exit status
//! ([`Exit`]), stable so that init scripts and tests can tell them apart.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use lmkd::client::{Done, OneShot, OneShotError};
use lmkd::config::{self, Config, ConfigError};
use lmkd::daemon::{Daemon, Options};
use lmkd::{logging, props, protect, residency};

/// How long a one-shot client waits for the daemon's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// The socket init creates for lmkd on Android.
const ANDROID_SOCKET: &str = "/dev/socket/lmkd";

/// Property init sets to ask for a reinit; `--reinit` clears it (as lmkd
/// does) so the next `setprop lmkd.reinit 1` fires the trigger again.
#[cfg(target_os = "android")]
const REINIT_PROP: &str = "lmkd.reinit";

const USAGE: &str = "usage: lmkd [--config FILE] [--socket PATH] [--control PATH] [--dry-run]
       lmkd --check-config FILE
       lmkd --reinit [--config FILE] [--socket PATH]
       lmkd --boot_completed [--config FILE] [--socket PATH]
       lmkd --version";

const EXIT_CODES: &str = "exit status:
  0  success (daemon stopped by a signal; request applied or already handled)
  1  the daemon failed after start-up
  2  bad command line
  3  configuration file or value unusable
  4  daemon start-up failed (socket, /proc, PSI, process table, threads)
  5  no daemon answers at the socket
  6  the daemon did not reply in time, or hung up
  7  the daemon refused the request (configuration rejected, boot not complete)
  8  the daemon's reply is not one the protocol defines";

/// Exit statuses; the numbers are part of the interface (README, `--help`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Exit {
    Ok = 0,
    Runtime = 1,
    Usage = 2,
    Config = 3,
    StartUp = 4,
    NotRunning = 5,
    NoReply = 6,
    Refused = 7,
    Protocol = 8,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Everything that can make `lmkd` exit unsuccessfully.
#[derive(Debug)]
enum MainError {
    Usage(String),
    Config(ConfigError),
    StartUp(io::Error),
    Runtime(io::Error),
    Request(OneShot, OneShotError),
}

impl MainError {
    fn exit(&self) -> Exit {
        match self {
            MainError::Usage(_) => Exit::Usage,
            MainError::Config(_) => Exit::Config,
            MainError::StartUp(_) => Exit::StartUp,
            MainError::Runtime(_) => Exit::Runtime,
            MainError::Request(_, e) => match e {
                OneShotError::NotRunning { .. } => Exit::NotRunning,
                OneShotError::NoReply(_) | OneShotError::Io(_) => Exit::NoReply,
                OneShotError::ConfigRejected | OneShotError::BootNotComplete => Exit::Refused,
                OneShotError::UnexpectedReply(_) => Exit::Protocol,
            },
        }
    }
}

impl fmt::Display for MainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MainError::Usage(e) => write!(f, "{e}\n{USAGE}"),
            MainError::Config(e) => write!(f, "configuration: {e}"),
            MainError::StartUp(e) => write!(f, "start-up failed: {e}"),
            MainError::Runtime(e) => write!(f, "{e}"),
            MainError::Request(req, e) => write!(f, "{}: {e}", req.flag()),
        }
    }
}

enum Mode {
    Daemon,
    CheckConfig(PathBuf),
    Request(OneShot),
    Version,
    Help,
}

struct Args {
    mode: Mode,
    config: Option<PathBuf>,
    socket: Option<PathBuf>,
    /// Control socket (lmkctl); default: init's, else `<socket>.ctl`.
    control: Option<PathBuf>,
    dry_run: bool,
}

fn parse_args() -> Result<Args, MainError> {
    let mut a = Args {
        mode: Mode::Daemon,
        config: None,
        socket: None,
        control: None,
        dry_run: false,
    };
    let mut it = std::env::args_os().skip(1);
    let value = |it: &mut dyn Iterator<Item = std::ffi::OsString>, flag: &str| {
        it.next()
            .map(PathBuf::from)
            .ok_or_else(|| MainError::Usage(format!("{flag} needs a value")))
    };
    while let Some(arg) = it.next() {
        match arg.to_str().unwrap_or("") {
            "--config" => a.config = Some(value(&mut it, "--config")?),
            "--socket" => a.socket = Some(value(&mut it, "--socket")?),
            "--control" => a.control = Some(value(&mut it, "--control")?),
            "--dry-run" => a.dry_run = true,
            "--check-config" => a.mode = Mode::CheckConfig(value(&mut it, "--check-config")?),
            "--reinit" => a.mode = Mode::Request(OneShot::Reinit),
            "--boot_completed" => a.mode = Mode::Request(OneShot::BootCompleted),
            "--version" | "-V" => a.mode = Mode::Version,
            "--help" | "-h" => a.mode = Mode::Help,
            _ => return Err(MainError::Usage(format!("unknown argument {arg:?}"))),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lmkd: {e}");
            return e.exit().into();
        }
    };
    match run(&args) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => {
            // The daemon logs (logcat on Android); the other modes talk to a terminal.
            if matches!(args.mode, Mode::Daemon) {
                log::error!("{e}");
            } else {
                eprintln!("lmkd: {e}");
            }
            e.exit().into()
        }
    }
}

fn run(args: &Args) -> Result<(), MainError> {
    match &args.mode {
        Mode::Version => println!("lmkd-rs {}", env!("CARGO_PKG_VERSION")),
        Mode::Help => println!("{USAGE}\n\n{EXIT_CODES}"),
        Mode::CheckConfig(path) => {
            print!(
                "{}",
                config::check_config_file(path).map_err(MainError::Config)?
            )
        }
        Mode::Request(req) => request(args, *req)?,
        Mode::Daemon => daemon(args)?,
    }
    Ok(())
}

/// Loads the configuration; `--socket` overrides the file.
fn load_config(args: &Args) -> Result<Config, MainError> {
    let props = props::system();
    let (mut cfg, _warnings) =
        Config::load(args.config.as_deref(), props.as_ref()).map_err(MainError::Config)?;
    if let Some(s) = &args.socket {
        cfg.startup.socket_path = s.clone();
    }
    Ok(cfg)
}

fn daemon(args: &Args) -> Result<(), MainError> {
    protect::limit_malloc_arenas();
    logging::init(false);
    let cfg = load_config(args)?;
    logging::set_debug(cfg.debug);
    let mut opts = Options::new(args.config.clone(), props::system());
    opts.dry_run = args.dry_run;
    opts.control = args.control.clone();
    let locked = protect::lock_self();
    let mut d = Daemon::new(cfg, opts).map_err(MainError::StartUp)?;
    let p = protect::protect_self(locked);
    if locked {
        // Start-up is over: the code only it ran goes back (locked on fault).
        match residency::trim() {
            Ok(t) => log::info!(
                "code and constants: {} kB kept resident for the kill path, {} kB paged in on use; {} kB of unused stack dropped",
                t.hot_kb,
                t.cold_kb,
                t.stack_kb
            ),
            Err(e) => log::warn!("keeping all code resident: {e}"),
        }
    }
    log::info!(
        "lmkd-rs {} running{} (memory locked: {}, oom_score_adj -1000: {}, priority raised: {}, locked pages kept from compaction: {})",
        env!("CARGO_PKG_VERSION"),
        if args.dry_run { " in dry-run mode" } else { "" },
        p.locked,
        p.oom_adj,
        p.priority,
        p.pinned.map_or("unknown", |b| if b { "true" } else { "false" })
    );
    d.run().map_err(MainError::Runtime)
}

/// `--reinit` / `--boot_completed`: one command, one reply.
fn request(args: &Args, req: OneShot) -> Result<(), MainError> {
    let path = match &args.socket {
        Some(p) => p.clone(),
        None if Path::new(ANDROID_SOCKET).exists() && args.config.is_none() => {
            PathBuf::from(ANDROID_SOCKET)
        }
        None => load_config(args)?.startup.socket_path,
    };
    #[cfg(target_os = "android")]
    if req == OneShot::Reinit {
        if let Err(e) = props::system().set(REINIT_PROP, "") {
            // Not fatal: the reinit itself still goes out.
            eprintln!("lmkd --reinit: cannot clear {REINIT_PROP}: {e}");
        }
    }
    match req.send(&path, CLIENT_TIMEOUT) {
        Ok(Done::Applied) => println!("lmkd {}: done", req.flag()),
        Ok(Done::AlreadyHandled) => println!("lmkd {}: already handled", req.flag()),
        Err(e) => return Err(MainError::Request(req, e)),
    }
    Ok(())
}
