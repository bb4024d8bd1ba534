//! The key table's vocabulary: what kind of value a key holds, which
//! properties set it, and the `config_keys!` macro that turns one row per
//! key into the field, its default and its name-based accessors.

use std::fmt;
use std::path::PathBuf;

use super::{KEYS, LOWMEM_MIN_OOM_SCORE_FLOOR};

// adj-like values: the oom_score_adj range plus lmkd's 1001 ("never").
pub(super) const ADJ_MIN: i64 = -1000;
pub(super) const ADJ_MAX: i64 = 1001;

/// Which properties set a key (besides the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Prop {
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
pub(super) enum Kind {
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

pub(super) const fn int(min: i64, max: i64) -> Kind {
    Kind::Int {
        min,
        max,
        clamp: false,
    }
}
pub(super) const fn clamped(min: i64, max: i64) -> Kind {
    Kind::Int {
        min,
        max,
        clamp: true,
    }
}
pub(super) const FLAG: Kind = Kind::Bool;
pub(super) const PATH: Kind = Kind::Path;
pub(super) const UIDS: Kind = Kind::Uids;

pub(super) struct KeySpec {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
    pub(super) prop: Prop,
    /// Lives in [`Startup`](super::Startup): a reload keeps the running value.
    pub(super) startup: bool,
}

/// A key's value, independent of the field's Rust type (public as
/// [`Value`](super::Value): the control socket shows values in force).
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Bool(bool),
    Int(i64),
    Path(PathBuf),
    Uids(Vec<u32>),
}

/// Conversion between a field's Rust type and [`Val`]. `get` is `None` for an
/// unset optional key (its default is derived from other keys).
pub(super) trait Field {
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
                    $( stringify!($r) => $crate::config::key::Field::get(&self.$r), )*
                    $( stringify!($s) => $crate::config::key::Field::get(&self.startup.$s), )*
                    _ => None,
                }
            }

            /// Store a value whose type and range were already checked against its spec.
            fn put(&mut self, name: &str, v: Val) {
                match name {
                    $( stringify!($r) => $crate::config::key::Field::put(&mut self.$r, v), )*
                    $( stringify!($s) => $crate::config::key::Field::put(&mut self.startup.$s, v), )*
                    // Unreachable by construction (callers go through KEYS);
                    // ignoring is safer than panicking in a daemon.
                    other => log::error!("internal: no config field for {other} = {v}"),
                }
            }
        }
    };
}

pub(super) fn spec(name: &str) -> Option<&'static KeySpec> {
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

pub(super) fn write_toml_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
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
pub(super) fn check(spec: &KeySpec, v: &Val) -> Result<(), String> {
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

pub(super) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Bool => "a boolean",
        Kind::Int { .. } => "an integer",
        Kind::Path => "a string (an absolute path)",
        Kind::Uids => "an array of integers (uids)",
    }
}

/// lmkd's floor for `lowmem_min_oom_score`; returns the value to store.
pub(super) fn apply_floor(name: &str, v: Val) -> Val {
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
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let v = Val::Path(PathBuf::from("/a\"b\\c"));
        assert_eq!(v.to_string(), r#""/a\"b\\c""#);
    }
}
