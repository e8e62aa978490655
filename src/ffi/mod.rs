//! The C interface: every `extern "C"` function of `include/rr.h` lives here.
//!
//! One file per C type (`rr_server`, `rr_config`, `rr_payload`, ...), plus the plumbing
//! they share: `handle` (casting opaque pointers, NULL checks), `panic` (the boundary
//! that keeps panics from crossing into C), `input` (borrowing C buffers and strings),
//! `cstring` (NUL-terminated output strings) and `call_gate` (waiting for calls in
//! flight before a server is freed). This module knows nothing of processes: it
//! translates between C conventions and the safe Rust core, and nothing else.
//!
//! The header is generated from these files by cbindgen (`cbindgen.toml`), so the `///`
//! comments of exported items are the C documentation: they say who owns each pointer,
//! what NULL does, which statuses come back and whether a call blocks.
//!
//! Functions are `#[no_mangle]` rather than `#[unsafe(no_mangle)]` because the crate's
//! minimum Rust was 1.80 when they were written; cbindgen 0.29 reads both.

#![allow(non_camel_case_types)]
// The safety contract of every export is written for C programmers in its `///` docs
// (which become the header); a separate `# Safety` section would repeat it.
#![allow(clippy::missing_safety_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

#[macro_use]
mod panic;
#[macro_use]
mod handle;
mod call_gate;
mod cstring;
mod input;
#[cfg(test)]
mod test_support;

pub mod config;
pub mod error;
pub mod event;
pub mod payload;
pub mod queue;
pub mod server;
pub mod stats;
pub mod status;
pub mod stream;
pub mod string;
pub mod version;
pub mod worker;
pub mod worker_info;
