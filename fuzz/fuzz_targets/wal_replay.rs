#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arrowmon_fuzz::targets::wal_replay(data));
