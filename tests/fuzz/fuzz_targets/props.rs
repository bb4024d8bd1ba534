#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir tests/fuzz props`; the body is
//! `targets::props`, shared with tests/fuzz_stable.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::props(data));
