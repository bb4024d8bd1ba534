//! Scenario files: which apps run, how they use memory, how their adj moves
//! over time, and what counts as a pass.
//!
//! Parsing is strict on purpose: a typo in a scenario silently falling back
//! to a default would make a bench run measure something else than intended.
//! Unknown keys are rejected by serde; every value is range-checked here and
//! the error names the key (with its app) and the offending value.

use serde::Deserialize;
use std::fmt;

/// Longest process name the kernel keeps in `comm` (and lmkd reports).
pub const NAME_MAX: usize = 15;
/// Upper bound for any time value in a scenario (10 minutes).
const TIME_MAX_MS: u64 = 600_000;
/// Upper bound for a run's length: a day, for long soaks.
const DURATION_MAX_MS: u64 = 86_400_000;
/// Upper bound for `end_after_deaths` when apps restart (cycles of a soak).
const CYCLES_MAX: u64 = 1_000_000;
/// Upper bound for sizes given in MiB (64 GiB).
const MB_MAX: u64 = 65_536;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The run stops after this long even if nothing happened.
    pub duration_ms: u64,
    /// Stop early once this many apps have died (then wait `grace_ms`).
    #[serde(default)]
    pub end_after_deaths: Option<u32>,
    /// Time left after the end condition for late notifications to arrive.
    #[serde(default = "default_grace_ms")]
    pub grace_ms: u64,
    /// Percentage of each anonymous page filled with pseudo-random bytes;
    /// the rest stays zero. Sets how well zram compresses app memory.
    #[serde(default = "default_fill_percent")]
    pub fill_percent: u32,
    /// File (or block device) that file-backed working sets are mapped from.
    #[serde(default)]
    pub data_file: Option<String>,
    /// A second connection sends PROCPRIO for every live app (its current
    /// adj) back to back for the whole run: a protocol storm next to the
    /// memory pressure.
    #[serde(default)]
    pub storm: bool,
    #[serde(default)]
    pub criteria: Criteria,
    #[serde(rename = "app")]
    pub apps: Vec<App>,
}

fn default_grace_ms() -> u64 {
    2000
}

fn default_fill_percent() -> u32 {
    50
}

fn default_tick_ms() -> u64 {
    1
}

/// Pass/fail rules; every rule is off unless the scenario turns it on.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    /// Kills must come in non-increasing adj order.
    #[serde(default)]
    pub descending_adj: bool,
    /// The kernel OOM killer must not fire during the run.
    #[serde(default)]
    pub no_kernel_oom: bool,
    /// Every daemon kill must carry a stats packet with a known reason.
    #[serde(default)]
    pub reason_on_every_kill: bool,
    /// No app may die while it is the foreground app (adj <= 0).
    #[serde(default)]
    pub foreground_survives: bool,
    /// Every death must hit an app at this adj or above.
    #[serde(default)]
    pub min_victim_adj: Option<i32>,
    /// At least this many apps must have been killed by the daemon.
    #[serde(default)]
    pub min_daemon_kills: u32,
    /// At least one daemon kill must give a thrashing reason (2, 4, 5, 7).
    #[serde(default)]
    pub thrashing_reason: bool,
    /// Every death of a restarting app (one pressure cycle) must be a daemon
    /// kill, and the run must reach `end_after_deaths` before `duration_ms`
    /// (a cycle nobody relieves stalls the run until then).
    #[serde(default)]
    pub every_cycle_relieved: bool,
    /// The daemon's descriptor count and anonymous RSS must not grow;
    /// judged by tests/vm/report.py from the guest's records, the driver
    /// only passes the flag on in its result.
    #[serde(default)]
    pub steady_daemon: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    pub name: String,
    /// Number of copies (named `<name>-<i>` when more than one).
    #[serde(default = "one")]
    pub count: u32,
    /// Launch time, from the start of the run.
    #[serde(default)]
    pub start_ms: u64,
    /// Anonymous memory touched per tick, in KiB.
    #[serde(default)]
    pub anon_kb_per_tick: u64,
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Stop growing at this much anonymous memory (0: until killed).
    #[serde(default)]
    pub anon_max_mb: u64,
    /// Size of the file-backed working set, in MiB.
    #[serde(default)]
    pub file_mb: u64,
    /// Where the working set starts in `data_file`, in MiB.
    #[serde(default)]
    pub file_offset_mb: u64,
    /// File pages read per tick, cycling through the working set.
    #[serde(default)]
    pub file_pages_per_tick: u64,
    /// Launch a new process this long after each death (same name, uid and
    /// timeline): every life is one pressure cycle.
    #[serde(default)]
    pub restart_ms: Option<u64>,
    /// The adj timeline, relative to the app's launch.
    pub adj: Vec<Step>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub at_ms: u64,
    /// Either a number or one of the AMS state names (see [`state_adj`]).
    pub adj: AdjValue,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum AdjValue {
    Num(i64),
    State(String),
}

/// The adj ActivityManager gives each process state. "cached" is the first
/// cached slot; scenarios wanting a specific cached slot give a number.
pub fn state_adj(state: &str) -> Option<i32> {
    Some(match state {
        "foreground" => 0,
        "visible" => 100,
        "perceptible" => 200,
        "service" => 500,
        "previous" => 700,
        "cached" => 900,
        _ => return None,
    })
}

/// A scenario error: which key, what value, what was expected.
#[derive(Debug, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// One launched process: an app copy with its resolved timeline.
#[derive(Debug, Clone)]
pub struct AppSpec {
    pub name: String,
    pub uid: u32,
    pub start_ms: u64,
    pub anon_kb_per_tick: u64,
    pub tick_ms: u64,
    pub anon_max_mb: u64,
    pub file_mb: u64,
    pub file_offset_mb: u64,
    pub file_pages_per_tick: u64,
    pub restart_ms: Option<u64>,
    /// (time since launch, adj), strictly increasing times, first at 0.
    pub timeline: Vec<(u64, i32)>,
}

fn bad(key: &str, value: impl fmt::Display, allowed: &str) -> ScenarioError {
    ScenarioError(format!("{key} = {value}: {allowed}"))
}

fn range(key: &str, v: u64, lo: u64, hi: u64) -> Result<(), ScenarioError> {
    if v < lo || v > hi {
        return Err(bad(key, v, &format!("must be in {lo}..={hi}")));
    }
    Ok(())
}

impl Scenario {
    /// Parses and validates a scenario from TOML text.
    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text).map_err(|e| ScenarioError(e.to_string()))?;
        s.validate()?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), ScenarioError> {
        if self.name.is_empty() || self.name.len() > 64 {
            return Err(bad(
                "name",
                format!("{:?}", self.name),
                "must be 1..=64 bytes",
            ));
        }
        range("duration_ms", self.duration_ms, 1000, DURATION_MAX_MS)?;
        range("grace_ms", self.grace_ms, 0, 60_000)?;
        range("fill_percent", self.fill_percent.into(), 0, 100)?;
        if self.apps.is_empty() {
            return Err(ScenarioError(
                "app: a scenario needs at least one [[app]]".into(),
            ));
        }
        let total: u64 = self.apps.iter().map(|a| u64::from(a.count)).sum();
        range("app (total count)", total, 1, 256)?;
        let restarts = self.apps.iter().any(|a| a.restart_ms.is_some());
        if let Some(n) = self.end_after_deaths {
            range(
                "end_after_deaths",
                n.into(),
                1,
                if restarts { CYCLES_MAX } else { total },
            )?;
        }
        if self.criteria.every_cycle_relieved && (!restarts || self.end_after_deaths.is_none()) {
            return Err(bad(
                "criteria.every_cycle_relieved",
                true,
                "needs end_after_deaths and an app with restart_ms",
            ));
        }
        if let Some(a) = self.criteria.min_victim_adj {
            if !(-1000..=1000).contains(&a) {
                return Err(bad("criteria.min_victim_adj", a, "must be in -1000..=1000"));
            }
        }
        range(
            "criteria.min_daemon_kills",
            self.criteria.min_daemon_kills.into(),
            0,
            total,
        )?;
        let mut names = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let k = |field: &str| format!("app[{i}] ({}).{field}", app.name);
            let valid_name = !app.name.is_empty()
                && app.name.len() <= NAME_MAX
                && app
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !valid_name {
                return Err(bad(
                    &format!("app[{i}].name"),
                    format!("{:?}", app.name),
                    &format!("must be 1..={NAME_MAX} characters from [A-Za-z0-9._-]"),
                ));
            }
            if !names.insert(app.name.as_str()) {
                return Err(bad(&k("name"), format!("{:?}", app.name), "is used twice"));
            }
            range(&k("count"), app.count.into(), 1, 64)?;
            if app.count > 1 && app.name.len() + 3 > NAME_MAX {
                return Err(bad(
                    &k("name"),
                    format!("{:?}", app.name),
                    "too long for numbered copies (max 12)",
                ));
            }
            range(&k("start_ms"), app.start_ms, 0, TIME_MAX_MS)?;
            range(&k("anon_kb_per_tick"), app.anon_kb_per_tick, 0, 65_536)?;
            range(&k("tick_ms"), app.tick_ms, 1, 10_000)?;
            range(&k("anon_max_mb"), app.anon_max_mb, 0, MB_MAX)?;
            range(&k("file_mb"), app.file_mb, 0, MB_MAX)?;
            range(&k("file_offset_mb"), app.file_offset_mb, 0, MB_MAX)?;
            range(
                &k("file_pages_per_tick"),
                app.file_pages_per_tick,
                0,
                65_536,
            )?;
            if let Some(r) = app.restart_ms {
                range(&k("restart_ms"), r, 0, TIME_MAX_MS)?;
            }
            if app.file_mb > 0 && self.data_file.is_none() {
                return Err(bad(
                    &k("file_mb"),
                    app.file_mb,
                    "needs a top-level data_file to map",
                ));
            }
            if app.file_mb == 0 && app.file_pages_per_tick > 0 {
                return Err(bad(
                    &k("file_pages_per_tick"),
                    app.file_pages_per_tick,
                    "needs file_mb > 0",
                ));
            }
            if app.adj.is_empty() {
                return Err(bad(&k("adj"), "[]", "needs at least one step at at_ms = 0"));
            }
            let mut last: Option<u64> = None;
            for (j, st) in app.adj.iter().enumerate() {
                let sk = |f: &str| format!("app[{i}] ({}).adj[{j}].{f}", app.name);
                range(&sk("at_ms"), st.at_ms, 0, TIME_MAX_MS)?;
                match last {
                    None if st.at_ms != 0 => {
                        return Err(bad(&sk("at_ms"), st.at_ms, "the first step must be at 0"))
                    }
                    Some(p) if st.at_ms <= p => {
                        return Err(bad(
                            &sk("at_ms"),
                            st.at_ms,
                            &format!("must be after the previous step ({p})"),
                        ))
                    }
                    _ => {}
                }
                last = Some(st.at_ms);
                resolve_adj(&st.adj)
                    .map_err(|allowed| bad(&sk("adj"), show_adj(&st.adj), allowed))?;
            }
        }
        Ok(())
    }

    /// Runs `n` cycles instead of the scenario's `end_after_deaths`, with
    /// the run's time budget scaled to match (`--cycles`, for long soaks).
    pub fn set_cycles(&mut self, n: u32) -> Result<(), ScenarioError> {
        let Some(old) = self.end_after_deaths else {
            return Err(bad("--cycles", n, "needs a scenario with end_after_deaths"));
        };
        if !self.apps.iter().any(|a| a.restart_ms.is_some()) {
            return Err(bad("--cycles", n, "needs an app with restart_ms"));
        }
        range("--cycles", n.into(), 1, CYCLES_MAX)?;
        let per_cycle = self.duration_ms.div_ceil(u64::from(old).max(1));
        self.duration_ms = (per_cycle * u64::from(n)).clamp(1000, DURATION_MAX_MS);
        self.end_after_deaths = Some(n);
        Ok(())
    }

    /// Expands counts into one spec per process; uids are 10000 + index so
    /// the daemon's stats packets (which carry a uid, not a pid) can be
    /// matched to an app.
    pub fn specs(&self) -> Vec<AppSpec> {
        let mut out = Vec::new();
        for app in &self.apps {
            for c in 0..app.count {
                let name = if app.count > 1 {
                    format!("{}-{c}", app.name)
                } else {
                    app.name.clone()
                };
                out.push(AppSpec {
                    name,
                    uid: 10_000 + out.len() as u32,
                    start_ms: app.start_ms,
                    anon_kb_per_tick: app.anon_kb_per_tick,
                    tick_ms: app.tick_ms,
                    anon_max_mb: app.anon_max_mb,
                    file_mb: app.file_mb,
                    file_offset_mb: app.file_offset_mb,
                    file_pages_per_tick: app.file_pages_per_tick,
                    restart_ms: app.restart_ms,
                    timeline: app
                        .adj
                        .iter()
                        .map(|s| (s.at_ms, resolve_adj(&s.adj).unwrap_or(0)))
                        .collect(),
                });
            }
        }
        out
    }
}

fn show_adj(v: &AdjValue) -> String {
    match v {
        AdjValue::Num(n) => n.to_string(),
        AdjValue::State(s) => format!("{s:?}"),
    }
}

fn resolve_adj(v: &AdjValue) -> Result<i32, &'static str> {
    match v {
        AdjValue::Num(n) if (-1000..=1000).contains(n) => Ok(*n as i32),
        AdjValue::Num(_) => Err("must be in -1000..=1000"),
        AdjValue::State(s) => state_adj(s)
            .ok_or("must be a number or one of foreground, visible, perceptible, service, previous, cached"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        name = "t"
        duration_ms = 5000
        [criteria]
        descending_adj = true
        [[app]]
        name = "a"
        anon_kb_per_tick = 1024
        adj = [{ at_ms = 0, adj = "foreground" }, { at_ms = 100, adj = 950 }]
    "#;

    fn err(text: &str) -> String {
        Scenario::parse(text).unwrap_err().0
    }

    #[test]
    fn good_scenario_parses() {
        let s = Scenario::parse(GOOD).unwrap();
        let specs = s.specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].timeline, vec![(0, 0), (100, 950)]);
        assert_eq!(specs[0].tick_ms, 1);
        assert_eq!(s.grace_ms, 2000);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&GOOD.replace("duration_ms = 5000", "duration_ms = 5000\nduraton = 3"));
        assert!(e.contains("duraton"), "{e}");
        let e = err(&GOOD
            .replace("tick_ms", "x")
            .replace("anon_kb_per_tick = 1024", "anon_kb_per_tik = 1"));
        assert!(e.contains("anon_kb_per_tik"), "{e}");
        let e = err(&GOOD.replace("descending_adj = true", "descending = true"));
        assert!(e.contains("descending"), "{e}");
    }

    #[test]
    fn impossible_values_are_named() {
        let e = err(&GOOD.replace("adj = 950", "adj = 1001"));
        assert!(
            e.contains("app[0] (a).adj[1].adj") && e.contains("1001"),
            "{e}"
        );
        let e = err(&GOOD.replace("\"foreground\"", "\"fg\""));
        assert!(e.contains("adj[0].adj") && e.contains("fg"), "{e}");
        let e = err(&GOOD.replace("duration_ms = 5000", "duration_ms = 10"));
        assert!(e.contains("duration_ms = 10"), "{e}");
        let e = err(&GOOD.replace(
            "anon_kb_per_tick = 1024",
            "anon_kb_per_tick = 1024\ntick_ms = 0",
        ));
        assert!(e.contains("tick_ms = 0"), "{e}");
        let e = err(&GOOD.replace("at_ms = 100", "at_ms = 0"));
        assert!(e.contains("adj[1].at_ms = 0"), "{e}");
        let e = err(&GOOD.replace("anon_kb_per_tick = 1024", "file_mb = 10"));
        assert!(e.contains("file_mb = 10") && e.contains("data_file"), "{e}");
        let e = err(&GOOD.replace("name = \"a\"", "name = \"a-very-long-app-name\""));
        assert!(e.contains("app[0].name"), "{e}");
        let e = err(&GOOD.replace("descending_adj = true", "min_victim_adj = 2000"));
        assert!(e.contains("criteria.min_victim_adj = 2000"), "{e}");
    }

    #[test]
    fn cycles_need_a_restarting_app_and_scale_the_budget() {
        let soak = GOOD
            .replace(
                "duration_ms = 5000",
                "duration_ms = 5000\nend_after_deaths = 1\nstorm = true",
            )
            .replace("descending_adj = true", "every_cycle_relieved = true");
        let e = err(&soak);
        assert!(
            e.contains("every_cycle_relieved") && e.contains("restart_ms"),
            "{e}"
        );
        // Once apps restart, more deaths than apps are allowed.
        let soak = soak
            .replace("end_after_deaths = 1", "end_after_deaths = 20")
            .replace(
                "anon_kb_per_tick = 1024",
                "anon_kb_per_tick = 1024\nrestart_ms = 500",
            );
        let mut s = Scenario::parse(&soak).unwrap();
        assert!(s.storm);
        assert_eq!(s.specs()[0].restart_ms, Some(500));
        s.set_cycles(200).unwrap();
        assert_eq!((s.end_after_deaths, s.duration_ms), (Some(200), 50_000));
        let e = Scenario::parse(GOOD).unwrap().set_cycles(3).unwrap_err().0;
        assert!(e.contains("--cycles = 3"), "{e}");
        let e = err(&GOOD.replace(
            "duration_ms = 5000",
            "duration_ms = 5000\nend_after_deaths = 2",
        ));
        assert!(e.contains("end_after_deaths = 2"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err(&GOOD.replace("duration_ms = 5000", "duration_ms = \"long\""));
        assert!(e.contains("duration_ms"), "{e}");
    }

    #[test]
    fn shipped_scenarios_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vm/scenarios");
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "toml") {
                let text = std::fs::read_to_string(&p).unwrap();
                Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            }
        }
    }
}
