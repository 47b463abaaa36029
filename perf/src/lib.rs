//! Library side of ctdb-perf: the blocking CTDB client, the local-cluster
//! driver and the helpers shared by the test programs in `src/bin`
//! (Rust versions of the client programs upstream's INTEGRATION suite runs:
//! fetch_ring, message_ring, transaction_loop, ...).
//!
//! Why a library: the harness binary and every test program must drive the
//! daemons with exactly the same client code.

#![deny(unsafe_code)]

pub mod client;
pub mod cluster;
pub mod error;
#[allow(unsafe_code)]
pub mod sys;
pub mod testprog;
