#![no_main]
// SAS XPORT v5 files from sponsors and other tools.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = trellis_stats::xport::read_xport(data);
});
