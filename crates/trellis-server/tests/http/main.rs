//! HTTP-level tests of the server on a temporary SQLite database with the demo installation.
#![allow(clippy::unwrap_used)]

mod app;
mod authz_matrix;
mod data_entry;
mod edc_api;
mod flows;
mod odm_import;
mod sdv;
mod study_admin;
