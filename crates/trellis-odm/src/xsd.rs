//! Validation against the official ODM 1.3.2 schema, for tests.
//!
//! The schema set ships in the PyPI package `odmlib` 0.2.1; it is installed once with
//! pip into a cache directory and checked with libxml2's `xmllint --nonet`. Where
//! either tool is missing the check reports itself skipped, loudly, unless
//! `TRELLIS_REQUIRE_XSD=1` (set by `.ci/run`), which turns a skip into a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

const ODMLIB: &str = "odmlib==0.2.1";
const SCHEMA_IN_PACKAGE: &str = "odmlib/schemas/odm/1.3.2/ODM1-3-2.xsd";

#[derive(Debug)]
pub enum Outcome {
    Valid,
    /// xmllint's messages, one per line, naming line numbers in the document.
    Invalid(String),
    /// The validator or schema could not be set up; the reason says which.
    Unavailable(String),
}

/// Where the schema is: `TRELLIS_ODM_SCHEMA_DIR` (a directory holding ODM1-3-2.xsd), or
/// odmlib installed under `cache_dir` on first use.
fn schema(cache_dir: &Path) -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("TRELLIS_ODM_SCHEMA_DIR") {
        let xsd = Path::new(&dir).join("ODM1-3-2.xsd");
        return if xsd.is_file() {
            Ok(xsd)
        } else {
            Err(format!(
                "TRELLIS_ODM_SCHEMA_DIR={dir} holds no ODM1-3-2.xsd"
            ))
        };
    }
    let install = cache_dir.join("odmlib-0.2.1");
    let xsd = install.join(SCHEMA_IN_PACKAGE);
    if xsd.is_file() {
        return Ok(xsd);
    }
    // Install beside, then rename, so concurrent test processes never see half a tree.
    let staging = cache_dir.join(format!("odmlib-staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .ok_or("no python3 to install the ODM schema package with pip")?;
    let out = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
        ])
        .arg(&staging)
        .arg(ODMLIB)
        .output()
        .map_err(|e| format!("running pip: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pip install {ODMLIB} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match std::fs::rename(&staging, &install) {
        Ok(()) => {}
        // Another process finished first; its copy is as good.
        Err(_) if xsd.is_file() => {
            let _ = std::fs::remove_dir_all(&staging);
        }
        Err(e) => return Err(format!("moving the schema into place: {e}")),
    }
    if xsd.is_file() {
        Ok(xsd)
    } else {
        Err(format!("{ODMLIB} has no {SCHEMA_IN_PACKAGE}"))
    }
}

/// Validates `xml` against ODM1-3-2.xsd.
pub fn validate(xml: &[u8], cache_dir: &Path) -> Outcome {
    static SCHEMA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let xsd = match SCHEMA.get_or_init(|| schema(cache_dir)) {
        Ok(x) => x.clone(),
        Err(e) => return Outcome::Unavailable(e.clone()),
    };
    let child = Command::new("xmllint")
        .args(["--nonet", "--noout", "--schema"])
        .arg(&xsd)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Unavailable(format!(
                "xmllint (Debian package libxml2-utils) could not be run: {e}"
            ));
        }
    };
    if let Some(mut stdin) = child.stdin.take()
        && let Err(e) = stdin.write_all(xml)
    {
        return Outcome::Unavailable(format!("writing to xmllint: {e}"));
    }
    match child.wait_with_output() {
        Ok(out) if out.status.success() => Outcome::Valid,
        Ok(out) => Outcome::Invalid(String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(e) => Outcome::Unavailable(format!("waiting for xmllint: {e}")),
    }
}

/// For tests: panics if `xml` is invalid, and if the validator is unavailable while
/// `TRELLIS_REQUIRE_XSD=1`; otherwise prints a loud skip notice.
pub fn assert_valid(xml: &[u8], what: &str, cache_dir: &Path) {
    match validate(xml, cache_dir) {
        Outcome::Valid => {}
        Outcome::Invalid(messages) => {
            panic!("{what} is not valid ODM 1.3.2:\n{messages}")
        }
        Outcome::Unavailable(reason) => {
            if std::env::var("TRELLIS_REQUIRE_XSD").is_ok_and(|v| v == "1") {
                panic!(
                    "ODM schema validation required (TRELLIS_REQUIRE_XSD=1) but unavailable: {reason}"
                );
            }
            eprintln!(
                "\n*** SKIPPED: ODM 1.3.2 schema validation of {what}: {reason}.\n*** Install python3-pip and libxml2-utils, or set TRELLIS_ODM_SCHEMA_DIR.\n"
            );
        }
    }
}
