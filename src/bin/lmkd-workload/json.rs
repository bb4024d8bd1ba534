//! The result file of a run, as typed records written with serde_json
//! (tests/vm/report.py reads it; field names are its contract).

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Serialize)]
pub struct RunResult<'a> {
    pub scenario: &'a str,
    pub killer: &'a str,
    pub pass: bool,
    pub failures: &'a [String],
    pub t0_mono_ms: u64,
    pub end_ms: u64,
    pub apps: usize,
    pub daemon_connected: bool,
    pub daemon_lost_ms: Option<u64>,
    pub deaths_total: usize,
    pub daemon_kills: usize,
    pub getkillcnt: Option<i32>,
    pub kernel_oom_kills: i64,
    pub foreground_survived: bool,
    pub first_death_ms: Option<u64>,
    /// adj (as text: JSON keys are strings) -> kills.
    pub kills_per_adj: BTreeMap<String, u32>,
    pub survivors: &'a [String],
    pub deaths: Vec<Death<'a>>,
    pub unmatched_kill_notices: Vec<Notice<'a>>,
    pub unmatched_stats: usize,
    /// Ended lives of restarting apps (pressure cycles), and how many of
    /// them lmkd ended.
    pub cycles: usize,
    pub cycles_relieved: usize,
    /// PROCPRIO packets the storm connection sent (None: no storm).
    pub storm_packets: Option<u64>,
    pub storm_error: Option<&'a str>,
    /// The scenario asks report.py to check the daemon's fds and RSS.
    pub steady_daemon: bool,
}

/// One death of an app, matched to lmkd's notices when there were some.
#[derive(Serialize)]
pub struct Death<'a> {
    pub t_ms: u64,
    pub app: &'a str,
    pub pid: i32,
    pub adj: i32,
    pub cause: &'a str,
    pub reason: Option<i32>,
    pub reason_name: &'a str,
    pub rss_kb: Option<i32>,
    pub min_adj: Option<i32>,
    pub free_mem_kb: Option<i32>,
    pub free_swap_kb: Option<i32>,
    pub thrashing: Option<i32>,
}

/// A kill notice from lmkd that matches no death of ours.
#[derive(Serialize)]
pub struct Notice<'a> {
    pub t_ms: u64,
    pub pid: i32,
    pub uid: i32,
    pub reason: Option<i32>,
    pub name: &'a str,
    pub stat_t_ms: Option<u64>,
    pub stat_adj: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_serialize_with_their_field_names() {
        let n = Notice {
            t_ms: 5,
            pid: 7,
            uid: 10_000,
            reason: None,
            name: "a\"b",
            stat_t_ms: Some(6),
            stat_adj: None,
        };
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"t_ms":5,"pid":7,"uid":10000,"reason":null,"name":"a\"b","stat_t_ms":6,"stat_adj":null}"#
        );
    }
}
