#![no_main]
// Exported checkpoints and key files come back from outside the database.
libfuzzer_sys::fuzz_target!(|data: &str| {
    let key = trellis_audit::CheckpointKey::from_seed([7; 32]);
    let _ = trellis_audit::Checkpoint::parse_and_verify(data, &key.public_key());
    let _ = trellis_audit::CheckpointKey::from_file_text(data);
    let _ = trellis_audit::parse_public_key(data);
});
