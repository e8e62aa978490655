//! Every name the committed header declares is the library's own (`rr_*` or `RR_*`).
//!
//! cbindgen reads the whole crate and emits any `pub const` or `#[repr(C)]` item of the
//! Rust core too; such a leak would put names like `ERROR` or `RAW` into every C program
//! that includes rr.h. This test names the leak; `cbindgen.toml` `[export] exclude` (or
//! `pub(crate)` in the core) fixes it.

fn header() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/rr.h");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The leading identifier of `text`.
fn identifier(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// The last identifier of `text`.
fn last_identifier(text: &str) -> &str {
    text.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).find(|s| !s.is_empty()).unwrap_or("")
}

/// The names declared at the top level of the header: macros, types, functions.
fn declared_names(header: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for line in header.lines() {
        if let Some(rest) = line.strip_prefix("#define ") {
            names.push(identifier(rest));
        } else if let Some((_, rest)) = line.split_once("(*").filter(|_| line.starts_with("typedef ")) {
            names.push(identifier(rest)); // typedef void (*name)(...);
        } else if let Some(rest) = line.strip_prefix("typedef ").and_then(|rest| rest.strip_suffix(';')) {
            names.push(last_identifier(rest)); // typedef struct x x;
        } else if let Some(rest) = line.strip_prefix("} ").and_then(|rest| rest.strip_suffix(';')) {
            names.push(last_identifier(rest)); // } x; closing a typedef struct
        } else if let Some(rest) = line.strip_prefix("enum ").or_else(|| line.strip_prefix("struct ")) {
            names.push(identifier(rest));
        } else if line.starts_with(|c: char| c.is_ascii_alphabetic()) && !line.starts_with("extern") {
            if let Some((before, _)) = line.split_once('(') {
                names.push(last_identifier(before)); // a function: the name before its `(`
            }
        }
    }
    names.retain(|name| !name.is_empty());
    names
}

#[test]
fn every_declared_name_is_the_librarys() {
    let header = header();
    let names = declared_names(&header);
    assert!(names.contains(&"rr_exec"), "the scan found no functions: {names:?}");
    assert!(
        names.contains(&"rr_event_callback") && names.contains(&"rr_worker_info"),
        "the scan found no typedefs: {names:?}"
    );
    let foreign: Vec<&&str> =
        names.iter().filter(|name| !(name.starts_with("rr_") || name.starts_with("RR_"))).collect();
    assert!(foreign.is_empty(), "rr.h declares names that are not the library's: {foreign:?}");
}
