//! ODM files from other tools: reading, building the study design and writing back
//! must never panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(imported) = trellis_odm::read_bytes(data) {
        let _ = trellis_odm::to_string(&imported.odm);
        for study in &imported.odm.studies {
            for mdv in &study.metadata_versions {
                let _ = trellis_edc::StudyDesign::build(study, &mdv.oid);
            }
        }
    }
});
