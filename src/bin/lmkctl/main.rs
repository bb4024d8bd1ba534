//! `lmkctl`: look at and tune a running lmkd-rs over its control socket.
//!
//!   lmkctl [--socket PATH] [--json] status
//!   lmkctl ... procs [--sort adj|rss]
//!   lmkctl ... kills [--follow]
//!   lmkctl ... stats
//!   lmkctl ... config get [KEY]
//!   lmkctl ... config set KEY=VALUE
//!   lmkctl ... reload
//!   lmkctl ... record FILE [--seconds N]
//!   lmkctl [--json] replay FILE [--config A.toml] [--vs B.toml]
//!
//! Exit codes are stable (scripts rely on them): see [`Failure::code`].

mod recording;
mod render;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use lmkd::control::wire::{ErrorKind, Request, Response};

const USAGE: &str = "usage: lmkctl [--socket PATH] [--json] COMMAND
commands:
  status                  version, uptime, configuration and where each value comes from,
                          pressure source, table use, kills by reason and adj band
  procs [--sort adj|rss]  the process table (default: most killable first)
  kills [--follow]        kill history; --follow keeps printing new kills
  stats                   latency histograms, pressure events, commands, refusals
  config get [KEY]        configuration in force
  config set KEY=VALUE    change a tuning key live (range-checked, not persisted)
  reload                  re-read the config file and properties (as lmkd --reinit)
  record FILE [--seconds N]
                          copy the daemon's recent evaluations (policy inputs and decisions)
                          into FILE, then follow new ones for N seconds (default: until ^C)
  replay FILE [--config A.toml] [--vs B.toml]
                          run the policy offline on a recording, under the recorded settings
                          (or A); with --vs, where B decides differently. It shows divergence,
                          not outcomes: memory after a kill not made is unknown
socket: --socket, else $LMKCTL_SOCKET, else /dev/socket/lmkd_ctl, else /run/lmkd.sock.ctl
exit codes: 0 ok, 2 usage, 3 cannot connect, 4 not allowed, 5 invalid key or value,
            6 daemon busy, 7 daemon rejected the change, 8 protocol error, 9 file error";

/// How long to wait for a reply (a table copy or config change included).
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why lmkctl failed; each has its own exit code.
#[derive(Debug)]
enum Failure {
    Usage(String),
    Connect(String),
    Daemon(ErrorKind, String),
    Protocol(String),
    /// Reading or writing a recording.
    Io(String),
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Connect(_) => 3,
            Failure::Daemon(ErrorKind::Denied, _) => 4,
            Failure::Daemon(
                ErrorKind::UnknownKey
                | ErrorKind::NotLive
                | ErrorKind::BadValue
                | ErrorKind::BadRequest,
                _,
            ) => 5,
            Failure::Daemon(ErrorKind::Busy, _) => 6,
            Failure::Daemon(ErrorKind::Rejected, _) => 7,
            Failure::Protocol(_) => 8,
            Failure::Io(_) => 9,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Connect(_) => "connect",
            Failure::Daemon(..) => "daemon",
            Failure::Protocol(_) => "protocol",
            Failure::Io(_) => "file",
        }
    }

    fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Connect(m) | Failure::Protocol(m) | Failure::Io(m) => m,
            Failure::Daemon(_, m) => m,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Adj,
    Rss,
}

/// What to do: one request, or a recording to make or replay.
enum Job {
    Ask(Request),
    Record {
        file: PathBuf,
        seconds: Option<u64>,
    },
    Replay {
        file: PathBuf,
        config: Option<PathBuf>,
        vs: Option<PathBuf>,
    },
}

struct Args {
    socket: PathBuf,
    json: bool,
    sort: Sort,
    job: Job,
}

fn default_socket() -> PathBuf {
    if let Some(p) = std::env::var_os("LMKCTL_SOCKET") {
        return PathBuf::from(p);
    }
    let android = PathBuf::from("/dev/socket/lmkd_ctl");
    if android.exists() {
        return android;
    }
    PathBuf::from("/run/lmkd.sock.ctl")
}

fn parse_args(argv: Vec<String>) -> Result<Args, Failure> {
    let usage = |m: String| Failure::Usage(m);
    let mut socket = None;
    let mut json = false;
    let mut sort = Sort::Adj;
    let mut follow = false;
    let (mut seconds, mut config, mut vs) = (None, None, None);
    let mut words = Vec::new();
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => json = true,
            "--follow" | "-f" => follow = true,
            "--socket" => {
                socket = Some(PathBuf::from(
                    it.next()
                        .ok_or_else(|| usage("--socket needs a path".into()))?,
                ))
            }
            "--seconds" => {
                let v = it.next().unwrap_or_default();
                seconds = Some(v.parse::<u64>().map_err(|_| {
                    usage(format!(
                        "--seconds takes a whole number of seconds, not {v:?}"
                    ))
                })?)
            }
            "--config" | "--vs" => {
                let p = PathBuf::from(
                    it.next()
                        .ok_or_else(|| usage(format!("{a} needs a TOML file")))?,
                );
                if a == "--config" {
                    config = Some(p)
                } else {
                    vs = Some(p)
                }
            }
            "--sort" => {
                sort = match it.next().as_deref() {
                    Some("adj") => Sort::Adj,
                    Some("rss") => Sort::Rss,
                    other => {
                        return Err(usage(format!(
                            "--sort takes adj or rss, not {}",
                            other.unwrap_or("nothing")
                        )))
                    }
                }
            }
            s if s.starts_with('-') => return Err(usage(format!("unknown option {s}"))),
            _ => words.push(a),
        }
    }
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let job = match w.as_slice() {
        ["record", f] => Job::Record {
            file: PathBuf::from(f),
            seconds,
        },
        ["replay", f] => Job::Replay {
            file: PathBuf::from(f),
            config: config.take(),
            vs: vs.take(),
        },
        ["record" | "replay", ..] => {
            return Err(usage(format!("{} takes one FILE", w[0])));
        }
        _ => Job::Ask(request(&w, follow)?),
    };
    if seconds.is_some() && !matches!(job, Job::Record { .. }) {
        return Err(usage("--seconds goes with record".into()));
    }
    if config.is_some() || vs.is_some() {
        return Err(usage("--config and --vs go with replay".into()));
    }
    if follow && !matches!(job, Job::Ask(Request::Kills { .. })) {
        return Err(usage("--follow goes with kills".into()));
    }
    Ok(Args {
        socket: socket.unwrap_or_else(default_socket),
        json,
        sort,
        job,
    })
}

/// The request the command words name.
fn request(w: &[&str], follow: bool) -> Result<Request, Failure> {
    let usage = |m: String| Failure::Usage(m);
    Ok(match w {
        ["status"] => Request::Status,
        ["procs"] => Request::Procs,
        ["kills"] => Request::Kills { follow },
        ["stats"] => Request::Stats,
        ["config", "get"] => Request::ConfigGet { key: None },
        ["config", "get", k] => Request::ConfigGet {
            key: Some(k.to_string()),
        },
        ["config", "set", kv] => {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| usage(format!("config set takes KEY=VALUE, not {kv:?}")))?;
            Request::ConfigSet {
                key: k.trim().to_string(),
                value: v.trim().to_string(),
            }
        }
        ["reload"] => Request::Reload,
        [] => return Err(usage("no command given".into())),
        other => return Err(usage(format!("unknown command {:?}", other.join(" ")))),
    })
}

/// A connection to the control socket.
struct Conn {
    out: UnixStream,
    lines: BufReader<UnixStream>,
}

impl Conn {
    fn open(path: &PathBuf) -> Result<Conn, Failure> {
        let s = UnixStream::connect(path).map_err(|e| {
            Failure::Connect(format!(
                "cannot connect to {} (is lmkd-rs running with its control socket?): {e}",
                path.display()
            ))
        })?;
        let lines = BufReader::new(
            s.try_clone()
                .map_err(|e| Failure::Connect(format!("socket: {e}")))?,
        );
        Ok(Conn { out: s, lines })
    }

    fn send(&mut self, r: &Request) -> Result<(), Failure> {
        let mut line = serde_json::to_vec(r).map_err(|e| Failure::Protocol(e.to_string()))?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(|e| Failure::Protocol(format!("sending the request: {e}")))
    }

    /// The next reply; `timeout` None waits for ever (following kills).
    fn recv(&mut self, timeout: Option<Duration>) -> Result<Response, Failure> {
        let _ = self.out.set_read_timeout(timeout);
        let mut line = String::new();
        match self.lines.read_line(&mut line) {
            Ok(0) => Err(Failure::Protocol("the daemon closed the connection".into())),
            Ok(_) => match serde_json::from_str::<Response>(&line) {
                Ok(Response::Error(e)) => Err(Failure::Daemon(e.kind, e.message)),
                Ok(r) => Ok(r),
                Err(e) => Err(Failure::Protocol(format!(
                    "reply not understood ({e}): {}",
                    line.trim_end()
                ))),
            },
            Err(e) => Err(Failure::Protocol(format!("reading the reply: {e}"))),
        }
    }
}

fn run(args: &Args) -> Result<(), Failure> {
    let req = match &args.job {
        Job::Ask(r) => r,
        Job::Record { file, seconds } => {
            return recording::record(&args.socket, file, *seconds, args.json)
        }
        Job::Replay { file, config, vs } => {
            return recording::replay(file, config.as_ref(), vs.as_ref(), args.json)
        }
    };
    let mut c = Conn::open(&args.socket)?;
    // A daemon that refuses the peer may answer and close before the
    // request is out: its reply, if any, says more than the send error.
    let sent = c.send(req);
    let first = match (c.recv(Some(REPLY_TIMEOUT)), sent) {
        (Err(Failure::Protocol(_)), Err(e)) => return Err(e),
        (r, _) => r?,
    };
    let out = &mut std::io::stdout().lock();
    let follow = matches!(req, Request::Kills { follow: true });
    match first {
        Response::Procs(mut rows) => {
            match args.sort {
                Sort::Adj => rows.sort_by(|a, b| b.adj.cmp(&a.adj).then(a.pid.cmp(&b.pid))),
                Sort::Rss => rows.sort_by(|a, b| b.rss_kb.cmp(&a.rss_kb).then(a.pid.cmp(&b.pid))),
            }
            emit(out, args.json, &rows, || render::procs(&rows))?;
        }
        Response::Kills(kills) if follow => {
            if args.json {
                for k in &kills {
                    json_line(out, k)?;
                }
            } else {
                write_out(out, &render::kills_header())?;
                for k in &kills {
                    write_out(out, &render::kill_row(k))?;
                }
            }
            loop {
                match c.recv(None)? {
                    Response::Kill(k) if args.json => json_line(out, &k)?,
                    Response::Kill(k) => write_out(out, &render::kill_row(&k))?,
                    other => return Err(unexpected(&other)),
                }
            }
        }
        Response::Kills(kills) => emit(out, args.json, &kills, || render::kills(&kills))?,
        Response::Status(s) => emit(out, args.json, &s, || render::status(&s))?,
        Response::Stats(s) => emit(out, args.json, &s, || render::stats(&s))?,
        Response::Config(items) => emit(out, args.json, &items, || render::config(&items))?,
        Response::Applied(a) => emit(out, args.json, &a, || {
            format!("{} = {}\n{}\n", a.key, a.value, a.note)
        })?,
        Response::Reloaded(r) => emit(out, args.json, &r, || {
            "reloaded: configuration re-read from the file and properties\n".to_string()
        })?,
        other => return Err(unexpected(&other)),
    }
    Ok(())
}

fn unexpected(r: &Response) -> Failure {
    Failure::Protocol(format!(
        "unexpected reply {}",
        serde_json::to_string(r).unwrap_or_default()
    ))
}

fn write_out(out: &mut impl Write, s: &str) -> Result<(), Failure> {
    out.write_all(s.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Protocol(format!("writing output: {e}")))
}

fn json_line<T: serde::Serialize>(out: &mut impl Write, v: &T) -> Result<(), Failure> {
    let s = serde_json::to_string(v).map_err(|e| Failure::Protocol(e.to_string()))?;
    write_out(out, &(s + "\n"))
}

fn emit<T: serde::Serialize>(
    out: &mut impl Write,
    json: bool,
    v: &T,
    human: impl FnOnce() -> String,
) -> Result<(), Failure> {
    if json {
        let s = serde_json::to_string_pretty(v).map_err(|e| Failure::Protocol(e.to_string()))?;
        write_out(out, &(s + "\n"))
    } else {
        write_out(out, &human())
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let json = argv.iter().any(|a| a == "--json");
    let result = parse_args(argv).and_then(|a| run(&a));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if json {
                let kind = match &f {
                    Failure::Daemon(k, _) => serde_json::to_value(k).unwrap_or_default(),
                    other => other.kind().into(),
                };
                let v = serde_json::json!({ "error": { "kind": kind, "message": f.message() } });
                println!("{v}");
            } else {
                eprintln!("lmkctl: {}", f.message());
                if matches!(f, Failure::Usage(_)) {
                    eprintln!("{USAGE}");
                }
            }
            ExitCode::from(f.code())
        }
    }
}
