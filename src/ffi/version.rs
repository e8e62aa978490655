//! `rr_version`: the library's version, as a string for programs that load it at run
//! time. (The header's `RR_VERSION_*` macros, which give the version a program was
//! compiled against, are written in `cbindgen.toml`; `tests/header_version.rs` checks
//! that both agree with `Cargo.toml`.)

use std::ffi::c_char;

/// The version, NUL-terminated, taken from Cargo.toml when the library is built.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The version of the loaded library, `"MAJOR.MINOR.PATCH"` (compare it with the
/// `RR_VERSION_*` macros of the header the program was compiled with). Static: never
/// NULL, do not free it.
#[no_mangle]
pub extern "C" fn rr_version() -> *const c_char {
    ffi_boundary!({ VERSION.as_ptr().cast() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_is_cargos() {
        let version = unsafe { std::ffi::CStr::from_ptr(super::rr_version()) };
        assert_eq!(version.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
