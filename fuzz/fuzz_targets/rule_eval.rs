#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| arrowmon_fuzz::targets::rule_eval(data));
