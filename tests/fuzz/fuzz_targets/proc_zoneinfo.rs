#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir tests/fuzz proc_zoneinfo`; the body is
//! `targets::proc_zoneinfo`, shared with tests/fuzz_stable.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::proc_zoneinfo(data));
