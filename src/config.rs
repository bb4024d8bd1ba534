//! Configuration: lmkd's property names plus our own keys.
//!
//! Sources, later wins: built-in defaults (lmkd's; low-RAM ones when
//! `ro.config.low_ram` is set) < TOML file < `ro.lmk.<name>` <
//! `persist.device_config.lmkd_native.<name>`. Every value is range-checked;
//! errors name the key, the value and what is allowed.
//!
//! The file is strict (a mistake there is an error: the operator wrote it and
//! wants to know), properties are lenient (a bad `setprop` is logged and
//! skipped, the previous value stays), because lmkd must come up on a device
//! whatever someone typed into `adb shell setprop`.
//!
//! One quirk copied from lmkd on purpose: `lowmem_min_oom_score` below 201
//! (perceptible apps and above) is raised to 201 on load, so no configuration
//! can make the low-memory path kill perceptible or foreground apps.
//!
//! Nothing here runs on the kill path; allocation is fine.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::props::PropertySource;

/// Property holding lmkd's low-RAM device flag.
pub const LOW_RAM_PROP: &str = "ro.config.low_ram";
/// Prefix of the read-only (build time) lmkd properties.
pub const RO_PREFIX: &str = "ro.lmk.";
/// Prefix of the server-pushed (device_config) lmkd properties; wins over `ro.lmk.`.
pub const PERSIST_PREFIX: &str = "persist.device_config.lmkd_native.";

/// lmkd never lets the low-memory path reach below perceptible apps (200).
pub const LOWMEM_MIN_OOM_SCORE_FLOOR: i32 = 201;

/// The daemon's whole configuration. Field names are lmkd's property names
/// where lmkd has one (so `ro.lmk.kill_timeout_ms` maps to `kill_timeout_ms`).
/// Ranges are listed in `init/lmkd.toml` and enforced by [`Config::validate`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    // --- lmkd's names -------------------------------------------------
    /// Legacy vmpressure level adj cut-offs.
    pub low: i32,
    pub medium: i32,
    pub critical: i32,
    pub debug: bool,
    pub kill_heaviest_task: bool,
    pub kill_timeout_ms: u32,
    pub use_minfree_levels: bool,
    pub swap_free_low_percentage: u32,
    pub psi_partial_stall_ms: u32,
    pub psi_complete_stall_ms: u32,
    pub thrashing_limit: u32,
    pub thrashing_limit_decay: u32,
    /// Default: 3 x `thrashing_limit`.
    pub thrashing_limit_critical: Option<u32>,
    pub swap_util_max: u32,
    pub filecache_min_kb: u64,
    pub stall_limit_critical: u32,
    pub pressure_after_kill_min_score: i32,
    pub lowmem_min_oom_score: i32,
    pub direct_reclaim_threshold_ms: u32,
    pub swap_compression_ratio: u32,
    pub delay_monitors_until_boot: bool,
    // --- ours -----------------------------------------------------------
    /// Capacity of the process table (fixed at start-up).
    pub max_procs: u32,
    /// Socket to bind when init did not pass one in `ANDROID_SOCKET_lmkd`.
    pub socket_path: PathBuf,
    /// Peer uids allowed to talk to the daemon.
    pub allowed_uids: Vec<u32>,
    /// PSI file to put triggers on (system-wide or a cgroup2 `memory.pressure`).
    pub psi_path: PathBuf,
    /// Root of procfs (tests point it at fixtures).
    pub proc_root: PathBuf,
    /// Memory cgroup (v1) whose vmpressure events stand in for PSI on
    /// kernels without it.
    pub vmpressure_memcg: PathBuf,
    /// A stuck core handler older than this makes the watchdog kill.
    pub watchdog_timeout_ms: u32,
}

impl Default for Config {
    /// lmkd's defaults for a normal (not low-RAM) device.
    fn default() -> Self {
        Config {
            low: 1001,
            medium: 800,
            critical: 0,
            debug: false,
            kill_heaviest_task: false,
            kill_timeout_ms: 100,
            use_minfree_levels: false,
            swap_free_low_percentage: 10,
            psi_partial_stall_ms: 70,
            psi_complete_stall_ms: 700,
            thrashing_limit: 100,
            thrashing_limit_decay: 10,
            thrashing_limit_critical: None,
            swap_util_max: 100,
            filecache_min_kb: 0,
            stall_limit_critical: 100,
            pressure_after_kill_min_score: 0,
            lowmem_min_oom_score: 701,
            direct_reclaim_threshold_ms: 0,
            swap_compression_ratio: 1,
            delay_monitors_until_boot: false,
            max_procs: 4096,
            socket_path: PathBuf::from("/run/lmkd.sock"),
            allowed_uids: vec![0, 1000],
            psi_path: PathBuf::from("/proc/pressure/memory"),
            proc_root: PathBuf::from("/proc"),
            vmpressure_memcg: PathBuf::from("/sys/fs/cgroup/memory"),
            watchdog_timeout_ms: 2000,
        }
    }
}

// ---------------------------------------------------------------------------
// Key table: the one place that knows each key's type, range and sources.

#[derive(Clone, Copy, Debug)]
enum Kind {
    Bool,
    /// Inclusive range.
    Int {
        min: i64,
        max: i64,
    },
    /// Non-empty absolute path.
    Path,
    /// Non-empty list of uids.
    Uids,
}

struct KeySpec {
    name: &'static str,
    kind: Kind,
    /// Also read from `ro.lmk.<name>` / `persist.device_config.lmkd_native.<name>`.
    /// Our own keys are file-only: they shape start-up, not tuning.
    prop: bool,
}

const fn int(name: &'static str, min: i64, max: i64) -> KeySpec {
    KeySpec {
        name,
        kind: Kind::Int { min, max },
        prop: true,
    }
}
const fn flag(name: &'static str) -> KeySpec {
    KeySpec {
        name,
        kind: Kind::Bool,
        prop: true,
    }
}
const fn ours(name: &'static str, kind: Kind) -> KeySpec {
    KeySpec {
        name,
        kind,
        prop: false,
    }
}

// adj-like values: the oom_score_adj range plus lmkd's 1001 ("never").
const ADJ_MIN: i64 = -1000;
const ADJ_MAX: i64 = 1001;

/// Ordered like the struct; properties are applied in this order, so
/// `thrashing_limit` lands before `thrashing_limit_critical` is checked.
const KEYS: &[KeySpec] = &[
    int("low", ADJ_MIN, ADJ_MAX),
    int("medium", ADJ_MIN, ADJ_MAX),
    int("critical", ADJ_MIN, ADJ_MAX),
    flag("debug"),
    flag("kill_heaviest_task"),
    int("kill_timeout_ms", 1, 60_000),
    flag("use_minfree_levels"),
    int("swap_free_low_percentage", 0, 100),
    int("psi_partial_stall_ms", 1, 1000),
    int("psi_complete_stall_ms", 1, 1000),
    // Percent of the file cache refaulted per window; can exceed 100.
    int("thrashing_limit", 0, 1000),
    int("thrashing_limit_decay", 0, 100),
    int("thrashing_limit_critical", 0, 3000),
    int("swap_util_max", 0, 100),
    // Up to 1 TiB in kB.
    int("filecache_min_kb", 0, 1 << 30),
    // Compared with PSI `full avg10` (a percentage); 100 can never be exceeded: off.
    int("stall_limit_critical", 0, 100),
    int("pressure_after_kill_min_score", ADJ_MIN, ADJ_MAX),
    // Accepted over the adj range, then raised to the floor (see module doc).
    int("lowmem_min_oom_score", ADJ_MIN, ADJ_MAX),
    int("direct_reclaim_threshold_ms", 0, 60_000),
    // Multiplier on reclaimable memory when estimating free swap; 0: use SwapFree alone.
    int("swap_compression_ratio", 0, 100),
    flag("delay_monitors_until_boot"),
    ours(
        "max_procs",
        Kind::Int {
            min: 16,
            max: 65_536,
        },
    ),
    ours("socket_path", Kind::Path),
    ours("allowed_uids", Kind::Uids),
    ours("psi_path", Kind::Path),
    ours("proc_root", Kind::Path),
    ours("vmpressure_memcg", Kind::Path),
    ours(
        "watchdog_timeout_ms",
        Kind::Int {
            min: 500,
            max: 60_000,
        },
    ),
];

/// Keys that shape start-up (allocation, bound socket, opened files).
const RESTART_ONLY: &[&str] = &[
    "max_procs",
    "socket_path",
    "psi_path",
    "proc_root",
    "vmpressure_memcg",
];

fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// A key's value, independent of the field's Rust type.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Bool(bool),
    Int(i64),
    Path(PathBuf),
    Uids(Vec<u32>),
}

impl fmt::Display for Val {
    /// TOML syntax, so the same text serves errors and `to_toml`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Bool(b) => write!(f, "{b}"),
            Val::Int(i) => write!(f, "{i}"),
            Val::Path(p) => write_toml_string(f, &p.to_string_lossy()),
            Val::Uids(u) => {
                f.write_str("[")?;
                for (i, uid) in u.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{uid}")?;
                }
                f.write_str("]")
            }
        }
    }
}

fn write_toml_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if c.is_control() => write!(f, "\\u{:04X}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// Convert an i64 already range-checked against the key's spec to the field
/// type (every range fits its field, so the fallback is never taken).
fn narrow<T: TryFrom<i64> + Default>(v: i64) -> T {
    T::try_from(v).unwrap_or_default()
}

impl Config {
    fn get(&self, name: &str) -> Option<Val> {
        use Val::*;
        Some(match name {
            "low" => Int(self.low.into()),
            "medium" => Int(self.medium.into()),
            "critical" => Int(self.critical.into()),
            "debug" => Bool(self.debug),
            "kill_heaviest_task" => Bool(self.kill_heaviest_task),
            "kill_timeout_ms" => Int(self.kill_timeout_ms.into()),
            "use_minfree_levels" => Bool(self.use_minfree_levels),
            "swap_free_low_percentage" => Int(self.swap_free_low_percentage.into()),
            "psi_partial_stall_ms" => Int(self.psi_partial_stall_ms.into()),
            "psi_complete_stall_ms" => Int(self.psi_complete_stall_ms.into()),
            "thrashing_limit" => Int(self.thrashing_limit.into()),
            "thrashing_limit_decay" => Int(self.thrashing_limit_decay.into()),
            "thrashing_limit_critical" => Int(self.thrashing_limit_critical().into()),
            "swap_util_max" => Int(self.swap_util_max.into()),
            // Saturate rather than wrap: an absurd value must still fail the range check.
            "filecache_min_kb" => Int(i64::try_from(self.filecache_min_kb).unwrap_or(i64::MAX)),
            "stall_limit_critical" => Int(self.stall_limit_critical.into()),
            "pressure_after_kill_min_score" => Int(self.pressure_after_kill_min_score.into()),
            "lowmem_min_oom_score" => Int(self.lowmem_min_oom_score.into()),
            "direct_reclaim_threshold_ms" => Int(self.direct_reclaim_threshold_ms.into()),
            "swap_compression_ratio" => Int(self.swap_compression_ratio.into()),
            "delay_monitors_until_boot" => Bool(self.delay_monitors_until_boot),
            "max_procs" => Int(self.max_procs.into()),
            "socket_path" => Path(self.socket_path.clone()),
            "allowed_uids" => Uids(self.allowed_uids.clone()),
            "psi_path" => Path(self.psi_path.clone()),
            "proc_root" => Path(self.proc_root.clone()),
            "vmpressure_memcg" => Path(self.vmpressure_memcg.clone()),
            "watchdog_timeout_ms" => Int(self.watchdog_timeout_ms.into()),
            _ => return None,
        })
    }

    /// Store a value whose type and range were already checked against `spec`.
    fn put(&mut self, name: &str, v: Val) {
        match (name, v) {
            ("low", Val::Int(i)) => self.low = narrow(i),
            ("medium", Val::Int(i)) => self.medium = narrow(i),
            ("critical", Val::Int(i)) => self.critical = narrow(i),
            ("debug", Val::Bool(b)) => self.debug = b,
            ("kill_heaviest_task", Val::Bool(b)) => self.kill_heaviest_task = b,
            ("kill_timeout_ms", Val::Int(i)) => self.kill_timeout_ms = narrow(i),
            ("use_minfree_levels", Val::Bool(b)) => self.use_minfree_levels = b,
            ("swap_free_low_percentage", Val::Int(i)) => self.swap_free_low_percentage = narrow(i),
            ("psi_partial_stall_ms", Val::Int(i)) => self.psi_partial_stall_ms = narrow(i),
            ("psi_complete_stall_ms", Val::Int(i)) => self.psi_complete_stall_ms = narrow(i),
            ("thrashing_limit", Val::Int(i)) => self.thrashing_limit = narrow(i),
            ("thrashing_limit_decay", Val::Int(i)) => self.thrashing_limit_decay = narrow(i),
            ("thrashing_limit_critical", Val::Int(i)) => {
                self.thrashing_limit_critical = Some(narrow(i))
            }
            ("swap_util_max", Val::Int(i)) => self.swap_util_max = narrow(i),
            ("filecache_min_kb", Val::Int(i)) => self.filecache_min_kb = narrow(i),
            ("stall_limit_critical", Val::Int(i)) => self.stall_limit_critical = narrow(i),
            ("pressure_after_kill_min_score", Val::Int(i)) => {
                self.pressure_after_kill_min_score = narrow(i)
            }
            ("lowmem_min_oom_score", Val::Int(i)) => self.lowmem_min_oom_score = narrow(i),
            ("direct_reclaim_threshold_ms", Val::Int(i)) => {
                self.direct_reclaim_threshold_ms = narrow(i)
            }
            ("swap_compression_ratio", Val::Int(i)) => self.swap_compression_ratio = narrow(i),
            ("delay_monitors_until_boot", Val::Bool(b)) => self.delay_monitors_until_boot = b,
            ("max_procs", Val::Int(i)) => self.max_procs = narrow(i),
            ("socket_path", Val::Path(p)) => self.socket_path = p,
            ("allowed_uids", Val::Uids(u)) => self.allowed_uids = u,
            ("psi_path", Val::Path(p)) => self.psi_path = p,
            ("proc_root", Val::Path(p)) => self.proc_root = p,
            ("vmpressure_memcg", Val::Path(p)) => self.vmpressure_memcg = p,
            ("watchdog_timeout_ms", Val::Int(i)) => self.watchdog_timeout_ms = narrow(i),
            // Unreachable by construction (callers go through KEYS); ignoring
            // is safer than panicking in a daemon.
            (other, v) => log::error!("internal: no config field for {other} = {v}"),
        }
    }
}

/// Check one value against its key's range. `Err` is the "what is allowed" text.
fn check(spec: &KeySpec, v: &Val) -> Result<(), String> {
    match (spec.kind, v) {
        (Kind::Bool, Val::Bool(_)) => Ok(()),
        (Kind::Int { min, max }, Val::Int(i)) if (min..=max).contains(i) => Ok(()),
        (Kind::Int { min, max }, Val::Int(_)) => Err(format!("must be between {min} and {max}")),
        (Kind::Path, Val::Path(p)) if p.as_os_str().is_empty() => {
            Err("must be a non-empty absolute path".into())
        }
        (Kind::Path, Val::Path(p)) if !p.is_absolute() => Err("must be an absolute path".into()),
        (Kind::Path, Val::Path(_)) => Ok(()),
        (Kind::Uids, Val::Uids(u)) if u.is_empty() => {
            Err("must list at least one uid (an empty list would lock every client out)".into())
        }
        (Kind::Uids, Val::Uids(_)) => Ok(()),
        (kind, _) => Err(format!("must be {}", kind_name(kind))),
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "a boolean",
        Kind::Int { .. } => "an integer",
        Kind::Path => "a string (an absolute path)",
        Kind::Uids => "an array of integers (uids)",
    }
}

/// lmkd's floor for `lowmem_min_oom_score`; returns the value to store.
fn apply_floor(name: &str, v: Val) -> Val {
    match v {
        Val::Int(i) if name == "lowmem_min_oom_score" && i < LOWMEM_MIN_OOM_SCORE_FLOOR.into() => {
            log::info!(
                "lowmem_min_oom_score = {i} raised to {LOWMEM_MIN_OOM_SCORE_FLOOR} \
                 (perceptible apps are never low-memory victims)"
            );
            Val::Int(LOWMEM_MIN_OOM_SCORE_FLOOR.into())
        }
        v => v,
    }
}

// ---------------------------------------------------------------------------
// Errors

/// Where in a file a problem was found (both parts optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub path: Option<PathBuf>,
    /// 1-based.
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), Some(l)) => write!(f, "{}:{l}: ", p.display()),
            (Some(p), None) => write!(f, "{}: ", p.display()),
            (None, Some(l)) => write!(f, "line {l}: "),
            (None, None) => Ok(()),
        }
    }
}

/// A configuration that cannot be used. Every variant about a key names it.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not TOML at all.
    Syntax { at: Location, message: String },
    /// A key we do not know (typo, or a table).
    UnknownKey { at: Location, key: String },
    /// A known key with a value of the wrong TOML type.
    WrongType {
        at: Location,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// Right type, not allowed (out of range, relative path, ...).
    BadValue {
        at: Location,
        key: String,
        value: String,
        allowed: String,
    },
}

impl ConfigError {
    /// The key the error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::WrongType { key, .. }
            | ConfigError::BadValue { key, .. } => Some(key),
            ConfigError::Io { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    fn location_mut(&mut self) -> Option<&mut Location> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Syntax { at, .. }
            | ConfigError::UnknownKey { at, .. }
            | ConfigError::WrongType { at, .. }
            | ConfigError::BadValue { at, .. } => Some(at),
        }
    }

    fn in_file(mut self, path: &Path) -> Self {
        if let Some(at) = self.location_mut() {
            at.path.get_or_insert_with(|| path.to_path_buf());
        }
        self
    }

    fn bad_value(key: &str, value: impl fmt::Display, allowed: String) -> Self {
        ConfigError::BadValue {
            at: Location::default(),
            key: key.to_string(),
            value: value.to_string(),
            allowed,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Syntax { at, message } => write!(f, "{at}invalid TOML: {message}"),
            ConfigError::UnknownKey { at, key } => write!(f, "{at}unknown key \"{key}\""),
            ConfigError::WrongType {
                at,
                key,
                expected,
                found,
            } => {
                write!(f, "{at}key \"{key}\": expected {expected}, found {found}")
            }
            ConfigError::BadValue {
                at,
                key,
                value,
                allowed,
            } => {
                write!(f, "{at}{key} = {value}: {allowed}")
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// TOML

fn line_of(text: &str, span: Option<Range<usize>>) -> Option<usize> {
    let start = span?.start.min(text.len());
    Some(
        text.as_bytes()[..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1,
    )
}

fn toml_type_name(v: &toml::de::DeValue<'_>) -> &'static str {
    use toml::de::DeValue;
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Outcome of reading a TOML value as a key's kind.
enum Conv {
    Ok(Val),
    /// Right type, but the number does not fit (text as written, what is allowed).
    TooBig(String, String),
    /// (expected, found)
    Mismatch(&'static str, &'static str),
}

fn toml_val(kind: Kind, v: &toml::de::DeValue<'_>) -> Conv {
    use toml::de::DeValue;
    match (kind, v) {
        (Kind::Bool, DeValue::Boolean(b)) => Conv::Ok(Val::Bool(*b)),
        (Kind::Int { min, max }, DeValue::Integer(i)) => {
            match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Conv::Ok(Val::Int(n)),
                Err(_) => Conv::TooBig(i.to_string(), format!("must be between {min} and {max}")),
            }
        }
        (Kind::Path, DeValue::String(s)) => Conv::Ok(Val::Path(PathBuf::from(s.as_ref()))),
        (Kind::Uids, DeValue::Array(items)) => {
            let mut uids = Vec::with_capacity(items.len());
            for item in items.iter() {
                let DeValue::Integer(i) = item.get_ref() else {
                    return Conv::Mismatch(kind_name(kind), element_name(item.get_ref()));
                };
                match u32::from_str_radix(i.as_str(), i.radix()) {
                    Ok(uid) => uids.push(uid),
                    Err(_) => {
                        return Conv::TooBig(
                            format!("[.., {i}, ..]"),
                            format!("uids must be between 0 and {}", u32::MAX),
                        )
                    }
                }
            }
            Conv::Ok(Val::Uids(uids))
        }
        _ => Conv::Mismatch(kind_name(kind), toml_type_name(v)),
    }
}

fn element_name(v: &toml::de::DeValue<'_>) -> &'static str {
    use toml::de::DeValue;
    match v {
        DeValue::String(_) => "an array containing a string",
        DeValue::Float(_) => "an array containing a float",
        DeValue::Boolean(_) => "an array containing a boolean",
        DeValue::Datetime(_) => "an array containing a datetime",
        DeValue::Array(_) => "an array containing an array",
        DeValue::Table(_) => "an array containing a table",
        DeValue::Integer(_) => "an array containing an integer",
    }
}

impl Config {
    /// Apply the keys present in `text` on top of `self` (strict: the first
    /// problem, in file order, is the error). Does not run `validate`.
    fn apply_toml(&mut self, text: &str, path: Option<&Path>) -> Result<(), ConfigError> {
        let at = |line| Location {
            path: path.map(Path::to_path_buf),
            line,
        };
        let table = toml::de::DeTable::parse(text).map_err(|e| ConfigError::Syntax {
            at: at(line_of(text, e.span())),
            message: e.message().trim_end().to_string(),
        })?;
        // The map is sorted by key; report problems in file order instead.
        let mut entries: Vec<_> = table.get_ref().iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        for (key, value) in entries {
            let name: &str = key.get_ref();
            let line = line_of(text, Some(key.span()));
            let Some(spec) = spec(name) else {
                return Err(ConfigError::UnknownKey {
                    at: at(line),
                    key: name.to_string(),
                });
            };
            let val = match toml_val(spec.kind, value.get_ref()) {
                Conv::Ok(v) => v,
                Conv::TooBig(value, allowed) => {
                    return Err(ConfigError::BadValue {
                        at: at(line),
                        key: name.to_string(),
                        value,
                        allowed,
                    })
                }
                Conv::Mismatch(expected, found) => {
                    return Err(ConfigError::WrongType {
                        at: at(line),
                        key: name.to_string(),
                        expected,
                        found,
                    })
                }
            };
            if let Err(allowed) = check(spec, &val) {
                return Err(ConfigError::BadValue {
                    at: at(line),
                    key: name.to_string(),
                    value: val.to_string(),
                    allowed,
                });
            }
            self.put(name, apply_floor(name, val));
        }
        Ok(())
    }

    /// Parse a TOML config: keys not in the text keep their default. Unknown
    /// keys, wrong types and out-of-range values are errors naming the key.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let mut cfg = Config::default();
        cfg.apply_toml(s, None)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`Config::from_toml_str`] on a file; errors carry the path.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config(path)?;
        let mut cfg = Config::default();
        cfg.apply_toml(&text, Some(path))
            .map_err(|e| e.in_file(path))?;
        cfg.validate().map_err(|e| e.in_file(path))?;
        Ok(cfg)
    }

    /// The effective configuration as TOML, one `key = value` per key, in
    /// struct order; `thrashing_limit_critical` is shown resolved. Parsing it
    /// back gives the same configuration (with that key made explicit).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# lmkd-rs effective configuration\n");
        for spec in KEYS {
            if let Some(v) = self.get(spec.name) {
                out.push_str(&format!("{} = {v}\n", spec.name));
            }
        }
        out
    }
}

fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })
}

// ---------------------------------------------------------------------------
// Defaults, validation, properties

/// Android's boolean property spellings (as `GetBoolProperty` reads them).
pub fn parse_bool_prop(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "y" | "yes" | "on" | "true" => Some(true),
        "0" | "n" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// Decimal (optionally signed) or `0x` hex, as properties are usually written.
fn parse_int_prop(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let magnitude = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) => {
            body.parse().ok()?
        }
        None => return None,
    };
    Some(if neg { -magnitude } else { magnitude })
}

impl Config {
    /// lmkd's defaults for a low-RAM device (`ro.config.low_ram` true):
    /// react earlier to partial stalls and treat less refaulting as thrashing.
    pub fn low_ram() -> Config {
        Config {
            psi_partial_stall_ms: 200,
            thrashing_limit: 30,
            thrashing_limit_decay: 50,
            ..Config::default()
        }
    }

    /// `thrashing_limit_critical`, defaulting to 3 x `thrashing_limit`.
    pub fn thrashing_limit_critical(&self) -> u32 {
        self.thrashing_limit_critical
            .unwrap_or(self.thrashing_limit.saturating_mul(3))
    }

    /// Check every key against its range, plus the cross-key rules:
    /// `lowmem_min_oom_score >= 201` (loaders clamp, so only a hand-built
    /// Config can fail this) and `thrashing_limit_critical >= thrashing_limit`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for spec in KEYS {
            // Only an explicit critical limit is checked; the derived one is
            // in range whenever thrashing_limit is.
            if spec.name == "thrashing_limit_critical" && self.thrashing_limit_critical.is_none() {
                continue;
            }
            let Some(v) = self.get(spec.name) else {
                continue;
            };
            check(spec, &v).map_err(|allowed| ConfigError::bad_value(spec.name, &v, allowed))?;
        }
        if self.lowmem_min_oom_score < LOWMEM_MIN_OOM_SCORE_FLOOR {
            return Err(ConfigError::bad_value(
                "lowmem_min_oom_score",
                self.lowmem_min_oom_score,
                format!(
                    "must be between {LOWMEM_MIN_OOM_SCORE_FLOOR} and {ADJ_MAX} \
                     (loaders raise lower values to {LOWMEM_MIN_OOM_SCORE_FLOOR})"
                ),
            ));
        }
        if let Some(crit) = self.thrashing_limit_critical {
            if crit < self.thrashing_limit {
                return Err(ConfigError::bad_value(
                    "thrashing_limit_critical",
                    crit,
                    format!(
                        "must be at least thrashing_limit ({})",
                        self.thrashing_limit
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Apply one property value for `spec`; on any problem `self` is
    /// unchanged and the reason is returned.
    fn apply_prop(&mut self, spec: &KeySpec, raw: &str) -> Result<(), String> {
        let val = match spec.kind {
            Kind::Bool => Val::Bool(parse_bool_prop(raw).ok_or("expected a boolean")?),
            Kind::Int { .. } => Val::Int(parse_int_prop(raw).ok_or("expected an integer")?),
            Kind::Path | Kind::Uids => return Err("not settable by property".into()),
        };
        check(spec, &val)?;
        let before = self.clone();
        self.put(spec.name, apply_floor(spec.name, val));
        if let Err(e) = self.validate() {
            *self = before;
            return Err(e.to_string());
        }
        Ok(())
    }

    /// Layered load: defaults (low-RAM ones if `ro.config.low_ram` is true) <
    /// `file` (only the keys it sets; any problem is an error) < `ro.lmk.*` <
    /// `persist.device_config.lmkd_native.*`. A bad property value is skipped
    /// (the previous value stays); the returned warnings, also logged, name
    /// the property, its value and why. Our own keys are file-only.
    pub fn load(
        file: Option<&Path>,
        props: &dyn PropertySource,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let low_ram = props
            .get(LOW_RAM_PROP)
            .and_then(|v| parse_bool_prop(&v))
            .unwrap_or(false);
        let mut cfg = if low_ram {
            Config::low_ram()
        } else {
            Config::default()
        };
        if let Some(path) = file {
            let text = read_config(path)?;
            cfg.apply_toml(&text, Some(path))
                .map_err(|e| e.in_file(path))?;
            cfg.validate().map_err(|e| e.in_file(path))?;
        }
        let mut warnings = Vec::new();
        for prefix in [RO_PREFIX, PERSIST_PREFIX] {
            for spec in KEYS.iter().filter(|k| k.prop) {
                let name = format!("{prefix}{}", spec.name);
                // Unset and empty are the same thing for Android properties.
                let Some(raw) = props.get(&name).filter(|v| !v.trim().is_empty()) else {
                    continue;
                };
                if let Err(why) = cfg.apply_prop(spec, &raw) {
                    let w = format!("ignoring property {name}={raw:?}: {why}");
                    log::warn!("{w}");
                    warnings.push(w);
                }
            }
        }
        Ok((cfg, warnings))
    }

    /// Keys whose new value only takes effect after a restart: they size the
    /// preallocated table or name things opened at start-up.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        RESTART_ONLY
            .iter()
            .copied()
            .filter(|k| self.get(k) != new.get(k))
            .collect()
    }

    /// Sets one tuning key (a key also read from properties) from its text
    /// form, checked as a property value is; `self` is unchanged on error.
    pub fn set_key(&mut self, name: &str, raw: &str) -> Result<(), ConfigError> {
        let spec = spec(name)
            .filter(|s| s.prop)
            .ok_or_else(|| ConfigError::UnknownKey {
                at: Location::default(),
                key: name.to_string(),
            })?;
        self.apply_prop(spec, raw)
            .map_err(|allowed| ConfigError::bad_value(name, raw, allowed))
    }

    /// All key names, in struct order.
    pub fn key_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter().map(|k| k.name)
    }

    /// Keys also read from `ro.lmk.*` / `persist.device_config.lmkd_native.*`.
    pub fn property_key_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter().filter(|k| k.prop).map(|k| k.name)
    }
}

/// `lmkd --check-config FILE`: load `path` with the system's properties
/// (as the daemon would) and return the effective configuration as TOML,
/// with any property warnings as leading comments.
pub fn check_config_file(path: &Path) -> Result<String, ConfigError> {
    let props = crate::props::system();
    let (cfg, warnings) = Config::load(Some(path), &*props)?;
    let mut out = String::new();
    for w in warnings {
        out.push_str(&format!("# warning: {w}\n"));
    }
    out.push_str(&cfg.to_toml());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_field() {
        let cfg = Config::default();
        for spec in KEYS {
            assert!(cfg.get(spec.name).is_some(), "{}", spec.name);
        }
        for k in RESTART_ONLY {
            assert!(spec(k).is_some(), "{k}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::low_ram().validate().unwrap();
    }

    #[test]
    fn int_props() {
        assert_eq!(parse_int_prop("42"), Some(42));
        assert_eq!(parse_int_prop(" -7 "), Some(-7));
        assert_eq!(parse_int_prop("0x10"), Some(16));
        assert_eq!(parse_int_prop("1e3"), None);
        assert_eq!(parse_int_prop(""), None);
        assert_eq!(parse_int_prop("-"), None);
        assert_eq!(parse_int_prop("99999999999999999999"), None);
    }

    #[test]
    fn bool_props() {
        for t in ["1", "true", "yes", "on", "y"] {
            assert_eq!(parse_bool_prop(t), Some(true));
        }
        for f in ["0", "false", "no", "off", "n"] {
            assert_eq!(parse_bool_prop(f), Some(false));
        }
        assert_eq!(parse_bool_prop("maybe"), None);
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", Some(4..5)), Some(3));
        assert_eq!(line_of("a", Some(100..101)), Some(1));
        assert_eq!(line_of("a", None), None);
    }

    #[test]
    fn strings_are_escaped() {
        let v = Val::Path(PathBuf::from("/a\"b\\c"));
        assert_eq!(v.to_string(), r#""/a\"b\\c""#);
    }
}
