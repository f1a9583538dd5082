#![no_main]
// The generic report_id,drug,event[,strata] CSV for signal detection.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("pairs.csv");
    if std::fs::write(&path, data).is_ok() {
        let _ = trellis_signal::pairs_csv::read_pairs_csv(&path, &Default::default());
    }
});
