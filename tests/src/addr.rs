//! Handing out blocks of loopback addresses so that clusters started by
//! tests running at the same time (threads of one test binary, or several
//! binaries) never share a node address.
//!
//! A block is 127.0.X.1 ..= 127.0.X.N for one X. Ownership is a directory
//! `ctdb-tests-lo-X` in the temp dir (mkdir is atomic) holding the owner's
//! pid; a block whose owner process is gone is taken over.

use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::error::{HarnessError, Result};
use crate::procs;

/// Third octets handed out; 127.0.0.x is left to people running clusters by
/// hand (scripts/local-cluster uses it).
const FIRST_OCTET: u8 = 100;
const LAST_OCTET: u8 = 250;

/// A reserved block of loopback addresses, released on drop.
#[derive(Debug)]
pub struct AddrLease {
    first: Ipv4Addr,
    lock_dir: PathBuf,
}

/// Whether no daemon listens on the CTDB port of the block's first
/// addresses (a daemon of a killed test run can outlive its lease).
fn port_free(octet: u8) -> bool {
    (1..=3)
        .all(|host| std::net::TcpListener::bind((Ipv4Addr::new(127, 0, octet, host), 4379)).is_ok())
}

impl AddrLease {
    /// Reserve a free block 127.0.X.1.. (up to 254 nodes).
    pub fn reserve() -> Result<AddrLease> {
        let tmp = std::env::temp_dir();
        let me = std::process::id();
        // Start at an offset derived from our pid to make collisions (and
        // the retries they cause) rare.
        let span = u32::from(LAST_OCTET - FIRST_OCTET) + 1;
        let start = me % span;
        for k in 0..span {
            let octet = FIRST_OCTET + ((start + k) % span) as u8;
            let lock_dir = tmp.join(format!("ctdb-tests-lo-{octet}"));
            if fs::create_dir(&lock_dir).is_ok() {
                if fs::write(lock_dir.join("pid"), me.to_string()).is_err() || !port_free(octet) {
                    let _ = fs::remove_dir_all(&lock_dir);
                    continue;
                }
                return Ok(AddrLease {
                    first: Ipv4Addr::new(127, 0, octet, 1),
                    lock_dir,
                });
            }
            // Taken: take it over if its owner is dead.
            let owner = fs::read_to_string(lock_dir.join("pid"))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = owner {
                if pid != me && !procs::is_alive(pid) {
                    let _ = fs::remove_dir_all(&lock_dir);
                    if fs::create_dir(&lock_dir).is_ok()
                        && fs::write(lock_dir.join("pid"), me.to_string()).is_ok()
                        && port_free(octet)
                    {
                        return Ok(AddrLease {
                            first: Ipv4Addr::new(127, 0, octet, 1),
                            lock_dir,
                        });
                    }
                }
            }
        }
        Err(HarnessError::NoAddresses(format!(
            "all blocks 127.0.{FIRST_OCTET}.0 to 127.0.{LAST_OCTET}.0 are reserved \
             (see {}/ctdb-tests-lo-*)",
            tmp.display()
        )))
    }

    /// Address of the first node (127.0.X.1).
    pub fn first(&self) -> Ipv4Addr {
        self.first
    }
}

impl Drop for AddrLease {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.lock_dir);
    }
}
