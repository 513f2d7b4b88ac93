//! The config loader (`proxy_core::Config::from_text`: parse, then validate) on arbitrary text:
//! never panics, every refusal has a message, and an accepted config survives the round trip
//! `GET /1/config` and `PUT /1/config` make (serialize, then load again) unchanged, apart from
//! the unknown keys, which are not written back (nor, so, the warning that names them).
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy_core::Config;

fuzz_target!(|data: &[u8]| {
    // What a reload does with the bytes of a file or a request body.
    let text = String::from_utf8_lossy(data);
    match Config::from_text(&text) {
        Ok(mut config) => {
            let written = serde_json::to_string(&config).expect("a config serializes");
            let mut again = Config::from_text(&written).expect("a written config loads again");
            config.unknown_keys.clear();
            again.unknown_keys.clear();
            config.ignored_keys.clear();
            again.ignored_keys.clear();
            assert_eq!(config, again);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
