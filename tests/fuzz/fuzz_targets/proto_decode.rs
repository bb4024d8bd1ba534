#![no_main]
//! `cargo +nightly fuzz run --fuzz-dir tests/fuzz proto_decode`; the body is
//! `targets::proto_decode`, shared with tests/fuzz_stable.rs.

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::proto_decode(data));
