//! CDISC ODM 1.3.x for Trellis: study definitions (metadata) and clinical data.
//!
//! - [`read`] reads files written by other tools (REDCap, OpenClinica, CDISC examples,
//!   other EDCs): lenient about what is unambiguous, explicit about what it does not
//!   import, refusing what it cannot understand. Nothing in a refused file is used.
//! - [`write`] writes strictly valid ODM 1.3.2, streaming clinical data.
//! - [`values`] checks a value against its item's data type, length and precision.
//! - [`xsd`] validates output against the official schema in tests.
//!
//! Apart from [`xsd`] (test support that runs pip and xmllint), the crate does no I/O
//! of its own beyond the `Write` it is given.

pub mod model;
pub mod read;
pub mod values;
pub mod write;
pub mod xsd;

pub use model::*;
pub use read::{
    Diagnostic, Imported, Rejected, Severity, check_clinical_data, read_bytes, read_str,
};
pub use write::{Header, OdmWriter, to_string, write_odm};
