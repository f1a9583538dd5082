#![no_main]
// TRELLIS_DATABASE_URL, --database-url and config files: parse or refuse, never panic.
libfuzzer_sys::fuzz_target!(|data: &str| {
    if let Ok(url) = trellis_store::DatabaseUrl::parse(data) {
        let _ = url.redacted();
    }
});
