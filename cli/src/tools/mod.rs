//! Code shared by the small CTDB tools (`ltdbtool`, `ping_pong`, `onnode`).
//!
//! Each tool is its own binary and pulls this directory in with `#[path]`
//! rather than through the `ctdb_cli` library, so the tools stay
//! independent of the `ctdb` admin tool. Not every binary uses every item,
//! hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod error;
pub mod getopt;
#[allow(unsafe_code)]
pub mod sys;

/// The text of an OS error without Rust's " (os error N)" suffix, i.e.
/// what C's `strerror()`/`perror()` print.
pub fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}

/// Program name as invoked (`argv[0]`), which the C tools put in their
/// messages.
pub fn argv0(args: &[std::ffi::OsString], default: &str) -> String {
    args.first()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_else(|| default.to_string())
}
