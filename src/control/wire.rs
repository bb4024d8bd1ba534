//! The control protocol: one JSON object per line each way over a unix
//! stream socket. A request names its command in `cmd`; the reply is one
//! object with one key naming what it carries (or `error`). `kills` with
//! `follow` keeps the connection and sends one `kill` object per new kill.
//!
//! ```text
//! > {"cmd":"config_set","key":"thrashing_limit","value":"50"}
//! < {"applied":{"key":"thrashing_limit","value":50,"persisted":false,...}}
//! ```

use serde::{Deserialize, Serialize};

/// Bumped when a reply changes shape incompatibly.
pub const PROTOCOL: u32 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", try_from = "RequestFields")]
pub enum Request {
    Status,
    Procs,
    Kills {
        #[serde(default)]
        follow: bool,
    },
    Stats,
    ConfigGet {
        #[serde(default)]
        key: Option<String>,
    },
    ConfigSet {
        key: String,
        value: String,
    },
    Reload,
    /// Recorded evaluations with serials above `after` (0: all the ring
    /// holds).
    Evals {
        #[serde(default)]
        after: u64,
    },
}

/// A request as it arrives: every field any command takes, checked
/// against its command by `Request::try_from`. Read this way rather than
/// as a tagged enum (which buffers the whole object first), the daemon
/// runs a fraction of the parsing code, and code run after start-up stays
/// in memory (`residency`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFields {
    cmd: String,
    follow: Option<bool>,
    key: Option<String>,
    value: Option<String>,
    after: Option<u64>,
}

/// What a command is: its name in `cmd`, the optional fields it takes,
/// those it needs, and how it is built from them. One row per command, so
/// a command cannot be half-added.
pub struct Command {
    pub name: &'static str,
    takes: &'static [&'static str],
    needs: &'static [&'static str],
    make: fn(RequestFields) -> Request,
}

/// The commands.
pub const COMMANDS: [Command; 8] = [
    Command::plain("status", |_| Request::Status),
    Command::plain("procs", |_| Request::Procs),
    Command::optional("kills", &["follow"], |f| Request::Kills {
        follow: f.follow.unwrap_or(false),
    }),
    Command::plain("stats", |_| Request::Stats),
    Command::optional("config_get", &["key"], |f| Request::ConfigGet {
        key: f.key,
    }),
    Command {
        name: "config_set",
        takes: &["key", "value"],
        needs: &["key", "value"],
        make: |f| Request::ConfigSet {
            key: f.key.unwrap_or_default(),
            value: f.value.unwrap_or_default(),
        },
    },
    Command::plain("reload", |_| Request::Reload),
    Command::optional("evals", &["after"], |f| Request::Evals {
        after: f.after.unwrap_or(0),
    }),
];

impl Command {
    /// A command without fields.
    const fn plain(name: &'static str, make: fn(RequestFields) -> Request) -> Command {
        Command {
            name,
            takes: &[],
            needs: &[],
            make,
        }
    }

    /// A command whose fields are all optional.
    const fn optional(
        name: &'static str,
        takes: &'static [&'static str],
        make: fn(RequestFields) -> Request,
    ) -> Command {
        Command {
            name,
            takes,
            needs: &[],
            make,
        }
    }
}

impl TryFrom<RequestFields> for Request {
    type Error = String;

    fn try_from(f: RequestFields) -> Result<Request, String> {
        let Some(c) = COMMANDS.iter().find(|c| c.name == f.cmd) else {
            let known: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
            return Err(format!(
                "unknown command {:?} (known: {})",
                f.cmd,
                known.join(", ")
            ));
        };
        let given = [
            ("follow", f.follow.is_some()),
            ("key", f.key.is_some()),
            ("value", f.value.is_some()),
            ("after", f.after.is_some()),
        ];
        for (name, present) in given {
            if present && !c.takes.contains(&name) {
                return Err(format!("command {:?} takes no field {name:?}", c.name));
            }
            if !present && c.needs.contains(&name) {
                return Err(format!("command {:?} needs the field {name:?}", c.name));
            }
        }
        Ok((c.make)(f))
    }
}

impl Request {
    /// Whether the request changes the daemon (root and system only).
    pub fn changes(&self) -> bool {
        matches!(self, Request::ConfigSet { .. } | Request::Reload)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Procs(Vec<ProcRow>),
    Kills(Vec<Kill>),
    /// One new kill on a following connection.
    Kill(Kill),
    Stats(Stats),
    Config(Vec<ConfigItem>),
    Applied(Applied),
    Reloaded(Reloaded),
    Evals(Evals),
    Error(ErrorReply),
}

/// Why a request failed; the names are stable (scripts match on them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The peer's uid may not do this.
    Denied,
    /// Not a request this daemon understands.
    BadRequest,
    UnknownKey,
    /// A known key that cannot change while running.
    NotLive,
    BadValue,
    /// The core did not answer in time, or another change is pending.
    Busy,
    /// The core refused (a reload whose new configuration is bad).
    Rejected,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ErrorReply {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub protocol: u32,
    pub pid: u32,
    pub uptime_ms: u64,
    pub config_file: Option<String>,
    pub pressure: PressureInfo,
    pub table_used: u64,
    pub table_capacity: u64,
    pub kills_total: u64,
    pub kills_by_reason: Vec<Count>,
    pub kills_by_band: Vec<Count>,
    pub dropped_notes: u64,
    pub config: Vec<ConfigItem>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PressureInfo {
    /// The PSI file the triggers are on.
    pub psi_path: String,
    pub partial_stall_ms: u32,
    /// The early `some` trigger's threshold, armed beside lmkd's; 0: none
    /// (absent from older daemons).
    #[serde(default)]
    pub early_stall_ms: u32,
    pub complete_stall_ms: u32,
    /// Averages read now (percent); None when the file cannot be read.
    pub now: Option<PsiNow>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PsiNow {
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub some_avg300: f64,
    pub full_avg10: f64,
    pub full_avg60: f64,
    pub full_avg300: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcRow {
    pub pid: i32,
    pub uid: i32,
    pub adj: i32,
    /// "app" or "service".
    #[serde(rename = "type")]
    pub ptype: String,
    /// Peer pid of the registering client, -1 when it has gone.
    pub owner: i32,
    pub name: String,
    /// None when the process is gone or unreadable.
    pub rss_kb: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Kill {
    pub serial: u64,
    /// CLOCK_MONOTONIC of the signal.
    pub time_ms: u64,
    pub pid: i32,
    pub name: String,
    pub uid: i32,
    pub adj: i32,
    pub min_adj: i32,
    pub reason: String,
    pub reason_code: i32,
    pub free_kb: i64,
    pub free_swap_kb: i64,
    pub thrashing_pct: i32,
    pub rss_kb: u64,
    pub swap_kb: u64,
    pub event_to_signal_us: u64,
    pub signal_to_exit_us: Option<u64>,
    pub reap_us: Option<u64>,
    pub dry_run: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Histogram {
    pub count: u64,
    pub mean_us: u64,
    /// Non-empty buckets: values below `below_us` (and at least the
    /// previous bucket's bound).
    pub buckets: Vec<Bucket>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Bucket {
    pub below_us: u64,
    pub count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stats {
    pub uptime_ms: u64,
    pub event_to_signal: Histogram,
    pub signal_to_exit: Histogram,
    pub reap: Histogram,
    pub pressure_events: Vec<Count>,
    pub commands: Vec<Count>,
    pub refused_commands: u64,
    pub refused_connections: u64,
    pub dropped_notes: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConfigItem {
    pub key: String,
    pub value: serde_json::Value,
    /// "default", "file", "property" or "live" (set over this socket).
    pub source: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Applied {
    pub key: String,
    pub value: serde_json::Value,
    /// Always false: `config set` lasts until the next reload or restart.
    pub persisted: bool,
    pub note: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reloaded {
    pub config_generation: u64,
}

/// A batch of recorded evaluations.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Evals {
    /// The configuration in force now, as TOML.
    pub config_toml: String,
    pub config_generation: u64,
    /// System page size, bytes.
    pub page_size: u64,
    /// Evaluations the ring holds at most.
    pub ring: u64,
    /// Evaluations published so far (the newest serial).
    pub total: u64,
    /// Evaluations after `after` that had left the ring already.
    pub lost: u64,
    /// Records in serial order, each `crate::record::EVAL_WORDS` words.
    pub records: Vec<Vec<u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_from_their_documented_form() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"config_set","key":"a","value":"1"}"#).unwrap();
        assert_eq!(
            r,
            Request::ConfigSet {
                key: "a".into(),
                value: "1".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"kills"}"#).unwrap();
        assert_eq!(r, Request::Kills { follow: false });
        let r: Request = serde_json::from_str(r#"{"cmd":"evals","after":5}"#).unwrap();
        assert_eq!(r, Request::Evals { after: 5 });
        assert!(!r.changes(), "shell may record");
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"shutdown"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"config_set","key":"a"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"kills","follow":1}"#).is_err());
    }

    /// Each command's documented form, with every optional field, reads
    /// back as what it was written from.
    #[test]
    fn every_request_round_trips() {
        let all = [
            Request::Status,
            Request::Procs,
            Request::Kills { follow: true },
            Request::Stats,
            Request::ConfigGet {
                key: Some("debug".into()),
            },
            Request::ConfigGet { key: None },
            Request::ConfigSet {
                key: "a".into(),
                value: "1".into(),
            },
            Request::Reload,
            Request::Evals { after: 9 },
        ];
        for r in all {
            let text = serde_json::to_string(&r).unwrap();
            let cmd = serde_json::from_str::<serde_json::Value>(&text).unwrap()["cmd"].clone();
            assert!(
                COMMANDS.iter().any(|c| c.name == cmd.as_str().unwrap()),
                "{text}"
            );
            assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r, "{text}");
        }
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let err = |text: &str| {
            serde_json::from_str::<Request>(text)
                .unwrap_err()
                .to_string()
        };
        let e = err(r#"{"cmd":"shutdown"}"#);
        assert!(
            e.contains(r#"unknown command "shutdown" (known: status, procs"#),
            "{e}"
        );
        let e = err(r#"{"cmd":"status","after":3}"#);
        assert!(
            e.contains(r#"command "status" takes no field "after""#),
            "{e}"
        );
        let e = err(r#"{"cmd":"config_set","key":"a"}"#);
        assert!(
            e.contains(r#"command "config_set" needs the field "value""#),
            "{e}"
        );
        let e = err(r#"{"cmd":"evals","afterr":3}"#);
        assert!(e.contains("unknown field `afterr`"), "{e}");
        let e = err(r#"{"after":3}"#);
        assert!(e.contains("missing field `cmd`"), "{e}");
        let e = err(r#"{"cmd":"evals","after":-1}"#);
        assert!(e.contains("invalid value: integer `-1`"), "{e}");
    }
}
