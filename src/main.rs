//! `lmkd`: the daemon, and its one-shot client modes.
//!
//!   lmkd [--config FILE] [--socket PATH] [--control PATH] [--dry-run]
//!                                                      run the daemon
//!   lmkd --check-config FILE                           print the effective config
//!   lmkd --reinit | --boot_completed [--socket PATH]   ask a running daemon

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmkd::config::{self, Config};
use lmkd::daemon::{Daemon, Options};
use lmkd::{client, logging, props, protect, proto};

/// How long a one-shot client waits for the daemon's answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

const USAGE: &str = "usage: lmkd [--config FILE] [--socket PATH] [--control PATH] [--dry-run]
       lmkd --check-config FILE
       lmkd --reinit [--config FILE] [--socket PATH]
       lmkd --boot_completed [--config FILE] [--socket PATH]
       lmkd --version";

enum Mode {
    Daemon,
    CheckConfig(PathBuf),
    Request(proto::Command),
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

fn parse_args() -> Result<Args, String> {
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
            .ok_or_else(|| format!("{flag} needs a value"))
    };
    while let Some(arg) = it.next() {
        match arg.to_str().unwrap_or("") {
            "--config" => a.config = Some(value(&mut it, "--config")?),
            "--socket" => a.socket = Some(value(&mut it, "--socket")?),
            "--control" => a.control = Some(value(&mut it, "--control")?),
            "--dry-run" => a.dry_run = true,
            "--check-config" => a.mode = Mode::CheckConfig(value(&mut it, "--check-config")?),
            "--reinit" => a.mode = Mode::Request(proto::Command::UpdateProps),
            "--boot_completed" => a.mode = Mode::Request(proto::Command::BootCompleted),
            "--version" | "-V" => a.mode = Mode::Version,
            "--help" | "-h" => a.mode = Mode::Help,
            _ => return Err(format!("unknown argument {:?}", arg)),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lmkd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match args.mode {
        Mode::Version => {
            println!("lmkd-rs {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Mode::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Mode::CheckConfig(path) => match config::check_config_file(&path) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lmkd: {e}");
                ExitCode::FAILURE
            }
        },
        Mode::Request(cmd) => request(&args, cmd),
        Mode::Daemon => daemon(args),
    }
}

/// Loads the configuration; `--socket` overrides the file.
fn load_config(args: &Args) -> Result<Config, String> {
    let props = props::system();
    let (mut cfg, _warnings) =
        Config::load(args.config.as_deref(), props.as_ref()).map_err(|e| e.to_string())?;
    if let Some(s) = &args.socket {
        cfg.socket_path = s.clone();
    }
    Ok(cfg)
}

fn daemon(args: Args) -> ExitCode {
    protect::limit_malloc_arenas();
    logging::init(false);
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            log::error!("configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::set_debug(cfg.debug);
    let mut opts = Options::new(args.config.clone(), props::system());
    opts.dry_run = args.dry_run;
    opts.control = args.control.clone();
    let mut d = match Daemon::new(cfg, opts) {
        Ok(d) => d,
        Err(e) => {
            log::error!("start-up failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let p = protect::protect_self();
    log::info!(
        "lmkd-rs {} running{} (memory locked: {}, oom_score_adj -1000: {}, priority raised: {})",
        env!("CARGO_PKG_VERSION"),
        if args.dry_run { " in dry-run mode" } else { "" },
        p.locked,
        p.oom_adj,
        p.priority
    );
    match d.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--reinit` / `--boot_completed`: one command, one reply.
fn request(args: &Args, cmd: proto::Command) -> ExitCode {
    let path = match &args.socket {
        Some(p) => p.clone(),
        None if std::path::Path::new("/dev/socket/lmkd").exists() && args.config.is_none() => {
            PathBuf::from("/dev/socket/lmkd")
        }
        None => match load_config(args) {
            Ok(c) => c.socket_path,
            Err(e) => {
                eprintln!("lmkd: configuration: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let name = if cmd == proto::Command::UpdateProps {
        "reinit"
    } else {
        "boot_completed"
    };
    let conn = match client::Client::connect(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lmkd --{name}: is the daemon running? {e}");
            return ExitCode::FAILURE;
        }
    };
    match conn.request(&cmd, CLIENT_TIMEOUT) {
        Ok(0) => {
            println!("lmkd --{name}: done");
            ExitCode::SUCCESS
        }
        Ok(1) if name == "boot_completed" => {
            println!("lmkd --{name}: already handled");
            ExitCode::SUCCESS
        }
        Ok(-1) if name == "reinit" => {
            eprintln!("lmkd --{name}: the daemon rejected the new configuration and kept the old one (see its log)");
            ExitCode::FAILURE
        }
        Ok(-1) => {
            eprintln!("lmkd --{name}: the daemon says boot is not complete yet");
            ExitCode::FAILURE
        }
        Ok(v) => {
            eprintln!("lmkd --{name}: unexpected reply {v}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("lmkd --{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
