//! Helpers shared by the multi-node and interoperability tests: start a
//! local CTDB cluster of real daemons on loopback addresses (any ctdbd
//! binary: Debian's today, ours when it runs), drive it with any `ctdb` CLI,
//! and stop every process it started, by pid.
//!
//! ```no_run
//! use std::time::Duration;
//! use ctdb_tests::{Cluster, DEBIAN_CTDB, DEBIAN_CTDBD};
//!
//! let mut cluster = Cluster::create_on_free_addresses(3, DEBIAN_CTDBD).unwrap();
//! cluster.start_all().unwrap();
//! cluster.wait_all_ok(DEBIAN_CTDB.as_ref(), Duration::from_secs(60)).unwrap();
//! let out = cluster.ctdb(0, DEBIAN_CTDB.as_ref(), &["status"]).unwrap();
//! print!("{}", out.stdout);
//! // dropping `cluster` stops every daemon and removes its directory
//! ```

pub mod addr;
pub mod cluster;
pub mod error;
pub mod must_show;
pub mod netns;
pub mod procs;
pub mod samba;
pub mod smbbench;
pub mod sys;

pub use addr::AddrLease;
pub use cluster::{
    cli_from_env, ctdbd_from_env, unique_dir, CliOutput, Cluster, ClusterSpec, StatusSummary,
    DEBIAN_CTDB, DEBIAN_CTDBD, DEBIAN_HELPER_DIR,
};
pub use error::{HarnessError, Result};
