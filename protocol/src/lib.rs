//! The CTDB wire format of Samba 4.17, byte for byte: packet header and
//! operations, every control with its input and output, every marshalled
//! type. This crate does no I/O; it turns bytes into values and back.
//!
//! Decoding borrows from the receive buffer; encoding appends to a reusable
//! buffer. Any byte string decodes to a value or a [`ProtocolError`].

#![forbid(unsafe_code)]

pub mod error;
pub mod types;
pub mod wire;

pub use error::ProtocolError;
pub use wire::{Put, Reader, Wire};
