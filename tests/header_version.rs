//! The version macros of the committed header (`RR_VERSION_*`, written by hand in
//! cbindgen.toml because cbindgen cannot read Cargo.toml) and `rr_version()` must both
//! say the version in Cargo.toml. A release that bumps one and not the other fails here.

use std::ffi::CStr;

fn header() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/rr.h");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The value of `#define NAME value` in the header.
fn define(header: &str, name: &str) -> String {
    let prefix = format!("#define {name} ");
    let lines: Vec<&str> = header.lines().filter_map(|line| line.strip_prefix(&prefix)).collect();
    assert_eq!(lines.len(), 1, "rr.h should define {name} exactly once");
    lines[0].trim().to_string()
}

#[test]
fn header_macros_match_cargo_version() {
    let header = header();
    assert_eq!(
        define(&header, "RR_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MAJOR"),
        "update cbindgen.toml and run `make header`"
    );
    assert_eq!(
        define(&header, "RR_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        "update cbindgen.toml and run `make header`"
    );
    assert_eq!(
        define(&header, "RR_VERSION_PATCH"),
        env!("CARGO_PKG_VERSION_PATCH"),
        "update cbindgen.toml and run `make header`"
    );
}

#[test]
fn rr_version_matches_cargo_version() {
    let version = unsafe { CStr::from_ptr(roadrunner::ffi::version::rr_version()) };
    assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}
