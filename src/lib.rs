//! lmkd-rs: a low memory killer daemon for Android, speaking lmkd's protocol.
//!
//! Reading order follows one pressure event: `psi` wakes the `daemon` loop,
//! which hands it to the `machine` as an input; `snapshot` reads memory
//! state, `policy` decides, `victim` picks from the `table`, the machine
//! signals it and `kill` tracks the kill, whose name read and memory release
//! `reaper` carries out; `report` tells subscribers and the log.

pub mod client;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod history;
pub mod kill;
pub mod loader;
pub mod logging;
pub mod machine;
pub mod memcg;
pub mod policy;
pub mod props;
pub mod protect;
pub mod proto;
pub mod psi;
pub mod reaper;
pub mod record;
pub mod report;
pub mod residency;
pub mod ring;
pub mod server;
pub mod snapshot;
pub mod sys;
pub mod table;
pub mod token;
pub mod victim;
pub mod watchdog;
