//! `ctdb`, the CTDB administration tool, compatible with Samba 4.17's: the
//! same commands, options, output (plain and machine-readable), messages
//! and exit codes, talking to a daemon only through its Unix socket.
//!
//! Layout: [`options`] parses the popt-style command line, [`tool`] holds
//! the command table and the commands, [`client`] is the blocking socket
//! client, [`wire`] the packet and payload codec the tool needs, and
//! [`format`] the pure output formatting.

pub mod client;
pub mod error;
pub mod format;
pub mod local;
pub mod options;
mod sys;
pub mod tool;
pub mod wire;

pub use error::CliError;
