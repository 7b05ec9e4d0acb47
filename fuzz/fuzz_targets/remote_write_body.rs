#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arrowmon_fuzz::targets::remote_write_body(data));
