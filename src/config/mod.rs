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
//! Each key is one row of the `config_keys!` table below: the row gives the
//! field, its default, its range, which properties set it and whether a reload
//! may change it. Keys that shape start-up live in [`Startup`], which a reload
//! keeps whole ([`Config::reloaded`]).
//!
//! Nothing here runs on the kill path; allocation is fine.

mod error;
mod file;
#[macro_use]
mod key;
mod property;

use std::path::{Path, PathBuf};

use crate::props::PropertySource;
pub use error::{ConfigError, Excerpt, Location};
use file::read_config;
pub use key::Val as Value;
use key::{check, clamped, int, KeySpec, Prop, Val, ADJ_MAX, ADJ_MIN, FLAG, PATH, UIDS};
use property::PROP_LAYERS;
pub use property::{parse_bool_prop, parse_int_prop};

/// Property holding lmkd's low-RAM device flag.
pub const LOW_RAM_PROP: &str = "ro.config.low_ram";
/// Property turning per-app memcg handling on (default: the low-RAM flag).
pub const PER_APP_MEMCG_PROP: &str = "ro.config.per_app_memcg";
/// Prefix of the read-only (build time) lmkd properties.
pub const RO_PREFIX: &str = "ro.lmk.";
/// Prefix of the server-pushed (device_config) lmkd properties; wins over `ro.lmk.`.
pub const PERSIST_PREFIX: &str = "persist.device_config.lmkd_native.";

/// lmkd never lets the low-memory path reach below perceptible apps (200).
pub const LOWMEM_MIN_OOM_SCORE_FLOOR: i32 = 201;

// One row per key: `name: type = default, range, properties;`. Rows under
// `startup` become fields of `Startup`. Row order is the order of the key
// list, of `to_toml` and of applying properties (so `thrashing_limit` lands
// before `thrashing_limit_critical` is checked against it).
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
        /// Ours: the `some` trigger fires at this much stall per window when
        /// it is below `psi_partial_stall_ms`. Until the stall reaches
        /// `psi_partial_stall_ms`, only the swap-is-low rows may kill (with
        /// swap low, anon memory has nowhere to go: waiting only adds
        /// stall). 0: off (lmkd's single threshold).
        psi_early_stall_ms: u32 = 50, int(0, 1000), Prop::File;
        /// Ours: with the early trigger on, the rows it holds back may
        /// kill once the stall since an early event reaches
        /// `psi_partial_stall_ms` by the daemon's own count, before the
        /// kernel's next trigger check (a tenth of the window later)
        /// delivers lmkd's event (lmkd waits for the event: false).
        anticipate_partial_trigger: bool = true, FLAG, Prop::File;
        /// Ours: while swap is low, the kernel reclaiming in an allocating
        /// task counts as free memory below min (lmkd compares free memory
        /// alone: false).
        direct_reclaim_below_min: bool = true, FLAG, Prop::File;
        /// Ours: while the last victim has not exited, for at most this
        /// long after its kill (ms), direct reclaim alone does not count
        /// as below min: its memory is on its way back. 0: only the first
        /// re-check after a kill leaves it out.
        direct_reclaim_exit_wait_ms: u32 = 500, int(0, 10_000), Prop::File;
        /// Ours: with swap low, kill before free memory reaches the low
        /// watermark when, falling at the rate it last fell, it would reach
        /// it sooner than the last victim took to exit, looking at most
        /// this far ahead (ms). 0: off (lmkd waits for the breach).
        kill_ahead_ms: u32 = 200, int(0, 1000), Prop::File;
        /// Ours: for this long after a kill (ms), while free memory is
        /// below "high", re-check every 10 ms (lmkd re-checks when its
        /// victim has died, then every 100 ms: 0).
        fast_after_kill_ms: u32 = 300, int(0, 1000), Prop::File;
        /// Ours: how long the highest zone watermark reading stays in
        /// force, in ms (lmkd keeps one reading for 60 s); 0 takes each
        /// reading as it comes.
        watermark_hold_ms: u32 = 60_000, int(0, 600_000), Prop::File;
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
        max_procs: u32 = 1024, int(16, 65_536), Prop::File;
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
        /// Per-app memcg soft limits and kill stats (`ro.config.per_app_memcg`,
        /// default on for low-RAM devices; see `memcg`).
        per_app_memcg: bool = false, FLAG, Prop::Named(PER_APP_MEMCG_PROP);
        /// Parent of the per-app groups `uid_<uid>/pid_<pid>/` (tests point it
        /// at groups of their own).
        memcg_apps_root: PathBuf = PathBuf::from("/dev/memcg/apps"), PATH, Prop::File;
    }
}

impl Config {
    /// lmkd's defaults for a low-RAM device (`ro.config.low_ram` true):
    /// react earlier to partial stalls, treat less refaulting as thrashing,
    /// and use the per-app memcgs.
    pub fn low_ram() -> Config {
        let mut c = Config {
            low_ram: true,
            psi_partial_stall_ms: 200,
            thrashing_limit: 30,
            thrashing_limit_decay: 50,
            ..Config::default()
        };
        c.startup.per_app_memcg = true;
        c
    }

    fn for_device(low_ram: bool) -> Config {
        if low_ram {
            Config::low_ram()
        } else {
            Config::default()
        }
    }

    /// `psi_early_stall_ms` when it is in effect, else 0: it must be below
    /// `psi_partial_stall_ms` (so lmkd's trigger is on too), and the PSI
    /// rows must decide (the legacy minfree table has no gate).
    pub fn early_stall_ms(&self) -> u32 {
        let (early, partial) = (self.psi_early_stall_ms, self.psi_partial_stall_ms);
        if early > 0 && early < partial && !self.use_minfree_levels {
            early
        } else {
            0
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

    /// Keys whose value in force differs in `new`, in table order, as
    /// (name, old, new) in TOML syntax: what a reload logs.
    pub fn changes(&self, new: &Config) -> Vec<(&'static str, String, String)> {
        KEYS.iter()
            .filter_map(|k| {
                let (old, now) = (self.effective(k.name)?, new.effective(k.name)?);
                (old != now).then(|| (k.name, old.to_string(), now.to_string()))
            })
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

    /// A key's value in force (derived defaults resolved); None for an
    /// unknown name.
    pub fn value(&self, name: &str) -> Option<Value> {
        self.effective(name)
    }

    /// Sets one live-tunable key (see [`Config::live_key_names`]) from its
    /// text form, read as its property is but strictly: a value a property
    /// would clamp or cut short is refused. `self` is unchanged on error.
    pub fn set_key(&mut self, name: &str, raw: &str) -> Result<(), ConfigError> {
        let spec = key::spec(name)
            .filter(|s| s.prop == Prop::Lmk && !s.startup)
            .ok_or_else(|| ConfigError::UnknownKey {
                at: Location::default(),
                key: name.to_string(),
            })?;
        let before = self.clone();
        match self.apply_prop(spec, raw) {
            Ok(None) => Ok(()),
            Ok(Some(note)) => {
                *self = before;
                Err(ConfigError::bad_value(name, raw, note))
            }
            Err(allowed) => Err(ConfigError::bad_value(name, raw, allowed)),
        }
    }

    /// Keys a running daemon may change without a restart from outside its
    /// file: the tuning properties that are not start-up keys.
    pub fn live_key_names() -> impl Iterator<Item = &'static str> {
        KEYS.iter()
            .filter(|k| k.prop == Prop::Lmk && !k.startup)
            .map(|k| k.name)
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
    use key::Kind;

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
                "watchdog_timeout_ms",
                "per_app_memcg",
                "memcg_apps_root"
            ]
        );
    }

    #[test]
    fn set_key_is_strict_and_live_only() {
        let mut c = Config::default();
        c.set_key("thrashing_limit", "40").unwrap();
        assert_eq!(c.thrashing_limit, 40);
        let before = c.clone();
        // A property would clamp 5000 to 1000 or read "7ms" as 7: refused.
        for (k, v) in [("thrashing_limit", "5000"), ("kill_timeout_ms", "7ms")] {
            let e = c.set_key(k, v).unwrap_err();
            assert_eq!(e.key(), Some(k), "{e}");
        }
        // Start-up keys and file-only keys are not live, even with a property.
        for k in ["use_psi", "max_procs", "allowed_uids", "nope"] {
            assert!(c.set_key(k, "1").is_err(), "{k}");
        }
        assert_eq!(c, before, "a refused set changed the configuration");
        assert!(Config::live_key_names().all(|k| !Config::startup_key_names().any(|s| s == k)));
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
        Config::low_ram().validate().unwrap();
    }
}
