//! lmkd's legacy minfree mode (`use_minfree_levels`): the LMK_TARGET table
//! of (minfree, adj) levels decides, from free memory and file cache alone.

use super::{poll_interval, Decision, Figures, Kill, KillReason, State, Tunables};
use crate::proto::TargetTable;
use crate::snapshot::Snapshot;

/// Legacy minfree mode. totalreserve is taken as the high watermark sum
/// (each populated zone's high + its largest protection), which is what lmkd
/// derives from zoneinfo for it.
pub(super) fn decide_minfree(
    snap: &Snapshot,
    t: &Tunables,
    targets: &TargetTable,
    st: &mut State,
    mut fig: Figures,
    cycle_after_kill: bool,
) -> Decision {
    let m = &snap.mem;
    let reserve = i64::try_from(snap.wm.high_kb).unwrap_or(i64::MAX);
    fig.other_free_kb = i64::try_from(m.free_kb)
        .unwrap_or(i64::MAX)
        .saturating_sub(reserve);
    fig.other_file_kb = m
        .file_pages_kb()
        .saturating_sub(m.shmem_kb)
        .saturating_sub(m.unevictable_kb)
        .saturating_sub(m.swap_cached_kb);
    fig.max_thrashing_pct = st.max_thrashing;
    let other_file = i64::try_from(fig.other_file_kb).unwrap_or(i64::MAX);
    let page_kb = i64::try_from(t.page_kb.max(1)).unwrap_or(4);
    // Levels come in the client's order (ascending minfree from AMS); the
    // first level both figures are below sets the cut-off.
    let kill = targets
        .as_slice()
        .iter()
        .find(|l| {
            let minfree_kb = i64::from(l.minfree).saturating_mul(page_kb);
            fig.other_free_kb < minfree_kb && other_file < minfree_kb
        })
        .map(|l| Kill {
            reason: KillReason::Minfree,
            min_adj: l.adj,
        });
    Decision {
        kill,
        poll: poll_interval(fig.swap_low, cycle_after_kill),
        // Only a kill made polls on (the machine extends the window when it
        // signals); one that finds no victim is no kill.
        extend_poll: false,
        figures: fig,
    }
}
