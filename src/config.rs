//! Configuration: lmkd's property names plus our own keys.
//!
//! Sources, later wins: built-in defaults (lmkd's; low-RAM ones when
//! `ro.config.low_ram` is set) < TOML file < `ro.lmk.<name>` <
//! `persist.device_config.lmkd_native.<name>`. Every value is range-checked;
//! errors name the key, the value and what is allowed.
//!
//! The file is strict (a mistake there is an error: the operator wrote it and
//! wants to know). Properties are read as lmkd reads them (libcutils'
//! `property_get_int*`/`property_get_bool`): integers in base 0 (`0x1f`,
//! `017`, `15`) up to the first non-digit, lmkd's clamping where lmkd clamps,
//! and a value that is still not usable is logged and skipped (the previous
//! value stays), because lmkd must come up on a device whatever someone typed
//! into `adb shell setprop`.
//!
//! One quirk copied from lmkd on purpose: `lowmem_min_oom_score` below 201
//! (perceptible apps and above) is raised to 201 on load, so no configuration
//! can make the low-memory path kill perceptible or foreground apps.
//!
//! Each key is one row of the [`config_keys!`] table below: the row gives the
//! field, its default, its range, which properties set it and whether a reload
//! may change it. Keys that shape start-up live in [`Startup`], which a reload
//! keeps whole ([`Config::reloaded`]).
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

// adj-like values: the oom_score_adj range plus lmkd's 1001 ("never").
const ADJ_MIN: i64 = -1000;
const ADJ_MAX: i64 = 1001;

/// Which properties set a key (besides the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prop {
    /// File only: our own keys shape start-up, not tuning.
    File,
    /// `ro.lmk.<name>`, then `persist.device_config.lmkd_native.<name>`.
    Lmk,
    /// `ro.lmk.<name>` only (lmkd reads it directly, not through device_config).
    RoLmk,
    /// One property of another name.
    Named(&'static str),
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Bool,
    /// Inclusive range. With `clamp`, a property value outside it is moved
    /// into it (lmkd clamps these); otherwise it is refused. The file is
    /// always strict.
    Int {
        min: i64,
        max: i64,
        clamp: bool,
    },
    /// Non-empty absolute path.
    Path,
    /// Non-empty list of uids.
    Uids,
}

const fn int(min: i64, max: i64) -> Kind {
    Kind::Int {
        min,
        max,
        clamp: false,
    }
}
const fn clamped(min: i64, max: i64) -> Kind {
    Kind::Int {
        min,
        max,
        clamp: true,
    }
}
const FLAG: Kind = Kind::Bool;
const PATH: Kind = Kind::Path;
const UIDS: Kind = Kind::Uids;

struct KeySpec {
    name: &'static str,
    kind: Kind,
    prop: Prop,
    /// Lives in [`Startup`]: a reload keeps the running value.
    startup: bool,
}

/// A key's value, independent of the field's Rust type.
#[derive(Clone, Debug, PartialEq)]
enum Val {
    Bool(bool),
    Int(i64),
    Path(PathBuf),
    Uids(Vec<u32>),
}

/// Conversion between a field's Rust type and [`Val`]. `get` is `None` for an
/// unset optional key (its default is derived from other keys).
trait Field {
    fn get(&self) -> Option<Val>;
    /// Store a value whose type and range were already checked.
    fn put(&mut self, v: Val);
}

macro_rules! int_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn get(&self) -> Option<Val> {
                // Saturate rather than wrap: an absurd value must still fail
                // the range check.
                Some(Val::Int(i64::try_from(*self).unwrap_or(i64::MAX)))
            }
            fn put(&mut self, v: Val) {
                if let Val::Int(i) = v {
                    // Every range fits its field, so the fallback is never taken.
                    *self = <$t>::try_from(i).unwrap_or_default();
                }
            }
        }
    )*};
}
int_field!(i32, u32, u64);

impl Field for bool {
    fn get(&self) -> Option<Val> {
        Some(Val::Bool(*self))
    }
    fn put(&mut self, v: Val) {
        if let Val::Bool(b) = v {
            *self = b;
        }
    }
}

impl Field for PathBuf {
    fn get(&self) -> Option<Val> {
        Some(Val::Path(self.clone()))
    }
    fn put(&mut self, v: Val) {
        if let Val::Path(p) = v {
            *self = p;
        }
    }
}

impl Field for Vec<u32> {
    fn get(&self) -> Option<Val> {
        Some(Val::Uids(self.clone()))
    }
    fn put(&mut self, v: Val) {
        if let Val::Uids(u) = v {
            *self = u;
        }
    }
}

impl<T: Field + Default> Field for Option<T> {
    fn get(&self) -> Option<Val> {
        self.as_ref().and_then(Field::get)
    }
    fn put(&mut self, v: Val) {
        let mut t = T::default();
        t.put(v);
        *self = Some(t);
    }
}

/// Generates, from one row per key: the field (in [`Config`] or
/// [`Startup`]), its default, the key table (name, range, properties,
/// start-up flag) and the name-based accessors the loaders use.
macro_rules! config_keys {
    (
        reload { $( $(#[$ra:meta])* $r:ident : $rt:ty = $rd:expr, $rk:expr, $rp:expr; )* }
        startup { $( $(#[$sa:meta])* $s:ident : $st:ty = $sd:expr, $sk:expr, $sp:expr; )* }
    ) => {
        /// The daemon's whole configuration. Field names are lmkd's property
        /// names where lmkd has one (so `ro.lmk.kill_timeout_ms` maps to
        /// `kill_timeout_ms`). Ranges are listed in `init/lmkd.toml` and
        /// enforced by [`Config::validate`].
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            $( $(#[$ra])* pub $r: $rt, )*
            /// Keys that take effect only at start-up.
            pub startup: Startup,
        }

        /// Keys that shape start-up (allocation, bound socket, opened files,
        /// threads, the monitor chosen): a reload keeps them whole.
        #[derive(Clone, Debug, PartialEq)]
        pub struct Startup {
            $( $(#[$sa])* pub $s: $st, )*
        }

        impl Default for Config {
            /// lmkd's defaults for a normal (not low-RAM) device.
            fn default() -> Self {
                Config { $( $r: $rd, )* startup: Startup::default() }
            }
        }

        impl Default for Startup {
            fn default() -> Self {
                Startup { $( $s: $sd, )* }
            }
        }

        /// In row order; properties are applied in this order, so
        /// `thrashing_limit` lands before `thrashing_limit_critical` is checked.
        const KEYS: &[KeySpec] = &[
            $( KeySpec { name: stringify!($r), kind: $rk, prop: $rp, startup: false }, )*
            $( KeySpec { name: stringify!($s), kind: $sk, prop: $sp, startup: true }, )*
        ];

        impl Config {
            fn get(&self, name: &str) -> Option<Val> {
                match name {
                    $( stringify!($r) => Field::get(&self.$r), )*
                    $( stringify!($s) => Field::get(&self.startup.$s), )*
                    _ => None,
                }
            }

            /// Store a value whose type and range were already checked against its spec.
            fn put(&mut self, name: &str, v: Val) {
                match name {
                    $( stringify!($r) => Field::put(&mut self.$r, v), )*
                    $( stringify!($s) => Field::put(&mut self.startup.$s, v), )*
                    // Unreachable by construction (callers go through KEYS);
                    // ignoring is safer than panicking in a daemon.
                    other => log::error!("internal: no config field for {other} = {v}"),
                }
            }
        }
    };
}

config_keys! {
    reload {
        /// `ro.config.low_ram`: selects the low-RAM defaults and, with
        /// `use_minfree_levels`, the default of `use_new_strategy`.
        low_ram: bool = false, FLAG, Prop::Named(LOW_RAM_PROP);
        /// vmpressure level strategy: the minimum adj killed on a "low",
        /// "medium" and "critical" event (1001: none).
        low: i32 = 1001, int(ADJ_MIN, ADJ_MAX), Prop::Lmk;
        medium: i32 = 800, int(ADJ_MIN, ADJ_MAX), Prop::Lmk;
        critical: i32 = 0, int(ADJ_MIN, ADJ_MAX), Prop::Lmk;
        /// vmpressure level strategy: raise a medium event to critical when
        /// the system is swapping hard (memory pressure above `upgrade_pressure`).
        critical_upgrade: bool = false, FLAG, Prop::Lmk;
        /// Memory pressure (percent) above which a level is upgraded; 100: never.
        upgrade_pressure: u32 = 100, int(0, 100), Prop::Lmk;
        /// Memory pressure (percent) below which an event is ignored; 100: never.
        downgrade_pressure: u32 = 100, int(0, 100), Prop::Lmk;
        debug: bool = false, FLAG, Prop::Lmk;
        kill_heaviest_task: bool = false, FLAG, Prop::Lmk;
        /// 0: the next kill does not wait for the previous victim (as lmkd).
        kill_timeout_ms: u32 = 100, int(0, 60_000), Prop::Lmk;
        use_minfree_levels: bool = false, FLAG, Prop::Lmk;
        swap_free_low_percentage: u32 = 10, clamped(0, 100), Prop::Lmk;
        /// 0 disables the partial-stall trigger (as lmkd).
        psi_partial_stall_ms: u32 = 70, int(0, 1000), Prop::Lmk;
        /// 0 disables the complete-stall trigger (as lmkd).
        psi_complete_stall_ms: u32 = 700, int(0, 1000), Prop::Lmk;
        /// Percent of the file cache refaulted per window; can exceed 100.
        thrashing_limit: u32 = 100, clamped(0, 1000), Prop::Lmk;
        thrashing_limit_decay: u32 = 10, clamped(0, 100), Prop::Lmk;
        /// Default: 3 x `thrashing_limit`.
        thrashing_limit_critical: Option<u32> = None, clamped(0, 3000), Prop::Lmk;
        swap_util_max: u32 = 100, clamped(0, 100), Prop::Lmk;
        /// Up to 1 TiB in kB.
        filecache_min_kb: u64 = 0, int(0, 1 << 30), Prop::Lmk;
        /// Compared with PSI `full avg10` (a percentage); 100 can never be
        /// exceeded: off.
        stall_limit_critical: u32 = 100, int(0, 100), Prop::Lmk;
        pressure_after_kill_min_score: i32 = 0, int(ADJ_MIN, ADJ_MAX), Prop::Lmk;
        /// Accepted over the adj range, then raised to the floor (module doc).
        lowmem_min_oom_score: i32 = 701, int(ADJ_MIN, ADJ_MAX), Prop::Lmk;
        /// 0: off.
        direct_reclaim_threshold_ms: u32 = 0, int(0, 60_000), Prop::Lmk;
        /// Multiplier on reclaimable memory when estimating free swap; 0: use
        /// SwapFree alone.
        swap_compression_ratio: u32 = 1, int(0, 100), Prop::Lmk;
        delay_monitors_until_boot: bool = false, FLAG, Prop::Lmk;
        /// Ours: LOW_MEM waits while the inactive file cache alone covers the
        /// high watermark (lmkd does not wait: false).
        wait_for_inactive_file: bool = false, FLAG, Prop::File;
        /// Peer uids allowed to talk to the daemon.
        allowed_uids: Vec<u32> = vec![0, 1000], UIDS, Prop::File;
    }
    startup {
        /// Use PSI monitors; false: vmpressure events (lmkd reads it at start).
        use_psi: bool = true, FLAG, Prop::Lmk;
        /// Kill on zone watermarks, swap and thrashing (the PSI strategy)
        /// rather than by vmpressure level and minfree. Default: low RAM or
        /// not `use_minfree_levels` (see [`Config::use_new_strategy`]).
        use_new_strategy: Option<bool> = None, FLAG, Prop::Lmk;
        /// Send kill statistics (LMK_STAT_KILL_OCCURRED) to subscribers.
        log_stats: bool = true, FLAG, Prop::RoLmk;
        /// Capacity of the process table (fixed at start-up).
        max_procs: u32 = 4096, int(16, 65_536), Prop::File;
        /// Socket to bind when init did not pass one in `ANDROID_SOCKET_lmkd`.
        socket_path: PathBuf = PathBuf::from("/run/lmkd.sock"), PATH, Prop::File;
        /// PSI file to put triggers on (system-wide or a cgroup2 `memory.pressure`).
        psi_path: PathBuf = PathBuf::from("/proc/pressure/memory"), PATH, Prop::File;
        /// Root of procfs (tests point it at fixtures).
        proc_root: PathBuf = PathBuf::from("/proc"), PATH, Prop::File;
        /// Memory cgroup (v1) whose vmpressure events stand in for PSI on
        /// kernels without it.
        vmpressure_memcg: PathBuf = PathBuf::from("/sys/fs/cgroup/memory"), PATH, Prop::File;
        /// A stuck core handler older than this makes the watchdog kill
        /// (the watchdog thread is started with it).
        watchdog_timeout_ms: u32 = 2000, int(500, 60_000), Prop::File;
    }
}

fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
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

/// Check one value against its key's range. `Err` is the "what is allowed" text.
fn check(spec: &KeySpec, v: &Val) -> Result<(), String> {
    match (spec.kind, v) {
        (Kind::Bool, Val::Bool(_)) => Ok(()),
        (Kind::Int { min, max, .. }, Val::Int(i)) if (min..=max).contains(i) => Ok(()),
        (Kind::Int { min, max, .. }, Val::Int(_)) => {
            Err(format!("must be between {min} and {max}"))
        }
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

/// A line of the file and a 1-based column on it (in characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt {
    pub text: String,
    pub column: usize,
}

impl Excerpt {
    /// The line holding byte `offset` of `text`.
    fn at(text: &str, offset: usize) -> Excerpt {
        let offset = offset.min(text.len());
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line = text[start..end].trim_end_matches('\r');
        let before = &text[start..offset];
        Excerpt {
            text: line.to_string(),
            column: before.chars().count() + 1,
        }
    }
}

impl fmt::Display for Excerpt {
    /// The line, then a caret under the column (tabs kept so it lines up).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pad: String = self
            .text
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "    {}\n    {pad}^", self.text)
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
    Syntax {
        at: Location,
        message: String,
        /// The offending line and where on it, when the parser said.
        excerpt: Option<Excerpt>,
    },
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
            ConfigError::Syntax {
                at,
                message,
                excerpt: None,
            } => write!(f, "{at}invalid TOML: {message}"),
            ConfigError::Syntax {
                at,
                message,
                excerpt: Some(x),
            } => {
                // `path:line:column:` as compilers write it, then the line.
                let at = at.to_string();
                let at = at.strip_suffix(": ").unwrap_or(&at);
                write!(f, "{at}:{}: invalid TOML: {message}\n{x}", x.column)
            }
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
        (Kind::Int { min, max, .. }, DeValue::Integer(i)) => {
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
            excerpt: e.span().map(|s| Excerpt::at(text, s.start)),
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
    /// table order; keys with derived defaults (`thrashing_limit_critical`,
    /// `use_new_strategy`) are shown resolved. Parsing it back gives the same
    /// configuration (with those keys made explicit).
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# lmkd-rs effective configuration\n");
        for spec in KEYS {
            if let Some(v) = self.effective(spec.name) {
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

/// A boolean property as libcutils' `property_get_bool` reads it: exactly
/// these spellings, case and spaces significant; anything else is no value.
pub fn parse_bool_prop(s: &str) -> Option<bool> {
    match s {
        "1" | "y" | "yes" | "on" | "true" => Some(true),
        "0" | "n" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// An integer property as libcutils' `property_get_int*` reads it
/// (`strtoimax` in base 0): leading white space, a sign, then `0x` hex, `0`
/// octal or decimal, up to the first character that is not a digit of that
/// base. Returns the value and the rest it ignored; `None` when no digit was
/// read or the value overflows (lmkd then uses the default).
pub fn parse_int_prop(s: &str) -> Option<(i64, &str)> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .filter(|h| h.starts_with(|c: char| c.is_ascii_hexdigit()));
    let (radix, digits) = match hex {
        Some(h) => (16, h),
        None if t.starts_with('0') => (8, t),
        None => (10, t),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let magnitude = i128::from(u64::from_str_radix(&digits[..end], radix).ok()?);
    let v = i64::try_from(if neg { -magnitude } else { magnitude }).ok()?;
    Some((v, &digits[end..]))
}

impl KeySpec {
    /// The property read for this key at `layer` (0: build time, 1:
    /// device_config, which wins), if any.
    fn property(&self, layer: usize) -> Option<String> {
        match (self.prop, layer) {
            (Prop::Lmk | Prop::RoLmk, 0) => Some(format!("{RO_PREFIX}{}", self.name)),
            (Prop::Lmk, 1) => Some(format!("{PERSIST_PREFIX}{}", self.name)),
            (Prop::Named(name), 0) => Some(name.to_string()),
            _ => None,
        }
    }
}

const PROP_LAYERS: usize = 2;

impl Config {
    /// lmkd's defaults for a low-RAM device (`ro.config.low_ram` true):
    /// react earlier to partial stalls and treat less refaulting as thrashing.
    pub fn low_ram() -> Config {
        Config {
            low_ram: true,
            psi_partial_stall_ms: 200,
            thrashing_limit: 30,
            thrashing_limit_decay: 50,
            ..Config::default()
        }
    }

    fn for_device(low_ram: bool) -> Config {
        if low_ram {
            Config::low_ram()
        } else {
            Config::default()
        }
    }

    /// `thrashing_limit_critical`, defaulting to 3 x `thrashing_limit`.
    pub fn thrashing_limit_critical(&self) -> u32 {
        self.thrashing_limit_critical
            .unwrap_or(self.thrashing_limit.saturating_mul(3))
    }

    /// `use_new_strategy`, defaulting as lmkd's does: on for low-RAM devices
    /// and whenever minfree levels are not used.
    pub fn use_new_strategy(&self) -> bool {
        self.startup
            .use_new_strategy
            .unwrap_or(self.low_ram || !self.use_minfree_levels)
    }

    /// A key's value with derived defaults resolved (what is in force).
    fn effective(&self, name: &str) -> Option<Val> {
        match name {
            "thrashing_limit_critical" => Some(Val::Int(self.thrashing_limit_critical().into())),
            "use_new_strategy" => Some(Val::Bool(self.use_new_strategy())),
            _ => self.get(name),
        }
    }

    /// Check every key against its range, plus the cross-key rules:
    /// `lowmem_min_oom_score >= 201` (loaders clamp, so only a hand-built
    /// Config can fail this) and `thrashing_limit_critical >= thrashing_limit`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for spec in KEYS {
            // An unset optional key takes a derived default, in range
            // whenever the keys it derives from are.
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
    /// unchanged and the reason is returned. `Ok(Some(note))`: applied, but
    /// not exactly as written (clamped, trailing text ignored), as lmkd would.
    fn apply_prop(&mut self, spec: &KeySpec, raw: &str) -> Result<Option<String>, String> {
        let mut note = None;
        let val = match spec.kind {
            Kind::Bool => Val::Bool(
                parse_bool_prop(raw)
                    .ok_or("expected a boolean (1/0, y/n, yes/no, on/off, true/false)")?,
            ),
            Kind::Int { min, max, clamp } => {
                let (n, rest) = parse_int_prop(raw).ok_or("expected an integer")?;
                if !rest.is_empty() {
                    note = Some(format!("read as {n}; {rest:?} after the number is ignored"));
                }
                if clamp && !(min..=max).contains(&n) {
                    let c = n.clamp(min, max);
                    note = Some(format!("{n} is outside {min}..={max}, using {c}"));
                    Val::Int(c)
                } else {
                    Val::Int(n)
                }
            }
            Kind::Path | Kind::Uids => return Err("not settable by property".into()),
        };
        check(spec, &val)?;
        let before = self.clone();
        self.put(spec.name, apply_floor(spec.name, val));
        if let Err(e) = self.validate() {
            *self = before;
            return Err(e.to_string());
        }
        Ok(note)
    }

    /// Layered load: defaults (low-RAM ones if `ro.config.low_ram`, or when
    /// that is unset the file's `low_ram`, is true) < `file` (only the keys
    /// it sets; any problem is an error) < `ro.lmk.*` <
    /// `persist.device_config.lmkd_native.*`. A bad property value is skipped
    /// (the previous value stays); the returned warnings, also logged, name
    /// the property, its value and why. Our own keys are file-only.
    pub fn load(
        file: Option<&Path>,
        props: &dyn PropertySource,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let low_ram = props.get(LOW_RAM_PROP).and_then(|v| parse_bool_prop(&v));
        let text = file.map(read_config).transpose()?;
        let with_file = |low_ram: bool| -> Result<Config, ConfigError> {
            let mut cfg = Config::for_device(low_ram);
            if let (Some(path), Some(text)) = (file, &text) {
                cfg.apply_toml(text, Some(path))
                    .map_err(|e| e.in_file(path))?;
                cfg.validate().map_err(|e| e.in_file(path))?;
            }
            Ok(cfg)
        };
        let mut cfg = with_file(low_ram.unwrap_or(false))?;
        if low_ram.is_none() && cfg.low_ram {
            cfg = with_file(true)?;
        }
        let mut warnings = Vec::new();
        for layer in 0..PROP_LAYERS {
            for spec in KEYS {
                let Some(name) = spec.property(layer) else {
                    continue;
                };
                // Unset and empty are the same thing for Android properties.
                let Some(raw) = props.get(&name).filter(|v| !v.is_empty()) else {
                    continue;
                };
                let w = match cfg.apply_prop(spec, &raw) {
                    Ok(None) => continue,
                    Ok(Some(note)) => format!("property {name}={raw:?}: {note}"),
                    Err(why) => format!("ignoring property {name}={raw:?}: {why}"),
                };
                log::warn!("{w}");
                warnings.push(w);
            }
        }
        Ok((cfg, warnings))
    }

    /// Start-up keys (in [`Startup`]) whose value in force differs in `new`.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        KEYS.iter()
            .filter(|k| k.startup && self.effective(k.name) != new.effective(k.name))
            .map(|k| k.name)
            .collect()
    }

    /// What a reload puts in force: `new`, with the running start-up keys
    /// kept whole; plus the start-up keys `new` wanted to change (for a
    /// warning: they take effect at the next start).
    pub fn reloaded(&self, mut new: Config) -> (Config, Vec<&'static str>) {
        let kept = self.restart_only_changes(&new);
        new.startup = self.startup.clone();
        (new, kept)
    }

    /// All key names, in table order.
    pub fn key_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter().map(|k| k.name)
    }

    /// Start-up key names (changed only by a restart).
    pub fn startup_key_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter().filter(|k| k.startup).map(|k| k.name)
    }

    /// Keys read from both `ro.lmk.<key>` and
    /// `persist.device_config.lmkd_native.<key>` (the ones device_config
    /// may push, each needing an init trigger).
    pub fn property_key_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter().filter(|k| k.prop == Prop::Lmk).map(|k| k.name)
    }

    /// Every property read, lowest precedence first, with its key.
    pub fn property_names() -> Vec<(String, &'static str)> {
        (0..PROP_LAYERS)
            .flat_map(|layer| {
                KEYS.iter()
                    .filter_map(move |k| Some((k.property(layer)?, k.name)))
            })
            .collect()
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
        let mut cfg = Config::default();
        for spec in KEYS {
            assert!(cfg.effective(spec.name).is_some(), "{}", spec.name);
            // put reaches the field the row names.
            let v = match spec.kind {
                Kind::Bool => Val::Bool(cfg.effective(spec.name) != Some(Val::Bool(true))),
                Kind::Int { min, .. } => Val::Int(min),
                Kind::Path => Val::Path(PathBuf::from("/elsewhere")),
                Kind::Uids => Val::Uids(vec![4242]),
            };
            cfg.put(spec.name, v.clone());
            assert_eq!(cfg.get(spec.name), Some(v), "{}", spec.name);
        }
        assert_eq!(
            Config::startup_key_names().collect::<Vec<_>>(),
            [
                "use_psi",
                "use_new_strategy",
                "log_stats",
                "max_procs",
                "socket_path",
                "psi_path",
                "proc_root",
                "vmpressure_memcg",
                "watchdog_timeout_ms"
            ]
        );
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::low_ram().validate().unwrap();
    }

    #[test]
    fn int_props_read_as_strtoimax_base_0() {
        assert_eq!(parse_int_prop("42"), Some((42, "")));
        assert_eq!(parse_int_prop(" -7 "), Some((-7, " ")));
        assert_eq!(parse_int_prop("0x10"), Some((16, "")));
        assert_eq!(parse_int_prop("0X1f"), Some((31, "")));
        assert_eq!(parse_int_prop("010"), Some((8, "")));
        assert_eq!(parse_int_prop("09"), Some((0, "9")));
        assert_eq!(parse_int_prop("0x"), Some((0, "x")));
        assert_eq!(parse_int_prop("+5ms"), Some((5, "ms")));
        assert_eq!(parse_int_prop("1e3"), Some((1, "e3")));
        assert_eq!(parse_int_prop(""), None);
        assert_eq!(parse_int_prop("-"), None);
        assert_eq!(parse_int_prop("x1"), None);
        assert_eq!(parse_int_prop("99999999999999999999"), None);
        assert_eq!(parse_int_prop("-9223372036854775808"), Some((i64::MIN, "")));
    }

    #[test]
    fn bool_props() {
        for t in ["1", "true", "yes", "on", "y"] {
            assert_eq!(parse_bool_prop(t), Some(true));
        }
        for f in ["0", "false", "no", "off", "n"] {
            assert_eq!(parse_bool_prop(f), Some(false));
        }
        for none in ["maybe", "TRUE", " 1", "2"] {
            assert_eq!(parse_bool_prop(none), None, "{none:?}");
        }
    }

    #[test]
    fn line_numbers() {
        assert_eq!(line_of("a\nb\nc", Some(4..5)), Some(3));
        assert_eq!(line_of("a", Some(100..101)), Some(1));
        assert_eq!(line_of("a", None), None);
    }

    #[test]
    fn excerpt_points_at_the_column() {
        let x = Excerpt::at("a = 1\nbb = = 2\n", 11);
        assert_eq!(x.text, "bb = = 2");
        assert_eq!(x.column, 6);
        assert_eq!(x.to_string(), "    bb = = 2\n         ^");
    }

    #[test]
    fn strings_are_escaped() {
        let v = Val::Path(PathBuf::from("/a\"b\\c"));
        assert_eq!(v.to_string(), r#""/a\"b\\c""#);
    }
}
