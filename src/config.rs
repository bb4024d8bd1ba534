//! Configuration: lmkd's property names plus our own keys.
//!
//! Sources, later wins: built-in defaults (lmkd's; low-RAM ones when
//! `ro.config.low_ram` is set) < TOML file < `ro.lmk.<name>` <
//! `persist.device_config.lmkd_native.<name>`. Every value is range-checked;
//! errors name the key, the value and what is allowed.

use std::path::PathBuf;

/// The daemon's whole configuration. Field names are lmkd's property names
/// where lmkd has one (so `ro.lmk.kill_timeout_ms` maps to `kill_timeout_ms`).
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
            watchdog_timeout_ms: 2000,
        }
    }
}

impl Config {
    /// `thrashing_limit_critical`, defaulting to 3 x `thrashing_limit`.
    pub fn thrashing_limit_critical(&self) -> u32 {
        self.thrashing_limit_critical.unwrap_or(self.thrashing_limit * 3)
    }
}
