//! `appliance.toml` as an operator (or a script) may write it: any text is
//! refused with a message or gives a config that passes its own
//! validation; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use settings::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml_str(text) {
        Ok(config) => assert!(config.validate().is_ok()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
