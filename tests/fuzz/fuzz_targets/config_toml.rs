#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir tests/fuzz config_toml`; the body is
//! `targets::config_toml`, shared with tests/fuzz_stable.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::config_toml(data));
