//! Android properties the daemon publishes, set from the logging thread:
//! formatting a value and calling the property setter allocate and may
//! block on init's property service, so the core only sends a note.

use crate::props::PropertySource;
use crate::proto::TargetTable;

/// Property carrying the minfree levels AMS last sent (lmkd's format).
pub const MINFREE_LEVELS: &str = "sys.lmk.minfree_levels";

/// `"minfree:adj,..."` in the client's order, as lmkd publishes it.
pub fn minfree_levels(t: &TargetTable) -> String {
    t.as_slice()
        .iter()
        .map(|l| format!("{}:{}", l.minfree, l.adj))
        .collect::<Vec<_>>()
        .join(",")
}

/// Sets `sys.lmk.minfree_levels` from a TARGET table.
pub fn targets(props: &dyn PropertySource, t: &TargetTable) {
    if let Err(e) = props.set(MINFREE_LEVELS, &minfree_levels(t)) {
        log::warn!("setting {MINFREE_LEVELS}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_in_lmkd_format() {
        let t = TargetTable::from_slice(&crate::proto::AMS_PHONE_TARGETS[..2]).unwrap();
        assert_eq!(minfree_levels(&t), "18432:0,23040:100");
    }
}
