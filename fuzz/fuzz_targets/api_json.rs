#![no_main]
// JSON request bodies of the API: refused with a message, never a panic.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<trellis_server::api::SaveItems>(data);
    let _ = serde_json::from_slice::<trellis_server::api::NewSubject>(data);
    let _ = serde_json::from_slice::<trellis_server::api::SignRequest>(data);
});
