#![no_main]
// FAERS quarterly extracts: the input is split at 0xFF bytes into DEMO, DRUG and REAC files.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let mut parts = data.split(|b| *b == 0xFF);
    for name in ["DEMO24Q1.txt", "DRUG24Q1.txt", "REAC24Q1.txt"] {
        if std::fs::write(dir.path().join(name), parts.next().unwrap_or_default()).is_err() {
            return;
        }
    }
    let _ =
        trellis_signal::faers::read_faers(&[dir.path().to_path_buf()], &Default::default(), false);
});
