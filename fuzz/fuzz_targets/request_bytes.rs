#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ebb_testkit::fuzz::request_bytes(data));
