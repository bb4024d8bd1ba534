//! lmkd-rs: a low memory killer daemon for Android, speaking lmkd's protocol.
//!
//! Reading order follows one pressure event: `psi` wakes the `daemon` loop,
//! `snapshot` reads memory state, `policy` decides, `victim` picks from the
//! `table`, `reaper` kills, `report` tells subscribers and the log.

pub mod config;
pub mod proto;
pub mod props;
pub mod logging;
pub mod table;
pub mod snapshot;
pub mod policy;
pub mod client;
pub mod commands;
pub mod psi;
pub mod reaper;
pub mod report;
pub mod ring;
pub mod server;
pub mod sys;
pub mod victim;
pub mod watchdog;
pub mod daemon;
pub mod protect;
