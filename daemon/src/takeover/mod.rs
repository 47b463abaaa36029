//! Public addresses and their failover, as Samba's ctdbd 4.17 does it
//! (`ctdb_takeover.c`, `ctdb_takeover_helper.c`, `ipalloc*.c` and the
//! takeover parts of `ctdb_recoverd.c`).
//!
//! Why its own module: three roles meet here and each has a file:
//!
//! * [`table`]: this node's public addresses (`$CTDB_BASE/public_addresses`,
//!   ADD_PUBLIC_IP, DEL_PUBLIC_IP, RELOAD_PUBLIC_IPS), its interfaces with
//!   their link state and reference counts, and the TCP connections
//!   ("tickles") clients registered for each address;
//! * [`node`]: the controls a node answers about them (GET_PUBLIC_IPS,
//!   GET_PUBLIC_IP_INFO, GET_IFACES, SET_IFACE_LINK_STATE, TAKEOVER_IP,
//!   RELEASE_IP, IPREALLOCATED, the tickle controls...), running the
//!   `takeip`/`releaseip`/`updateip`/`ipreallocated` events with upstream's
//!   arguments;
//! * [`run`]: the recovery daemon's side: on every node, the check that
//!   asks for a takeover run when this node could host an unhosted address
//!   or its interfaces changed, and DISABLE_TAKEOVER_RUNS; on the leader,
//!   the takeover run itself (gather known and available addresses from
//!   the nodes, allocate with [`ipalloc`], RELEASE_IP everywhere, then
//!   TAKEOVER_IP, then IPREALLOCATED), after a recovery, on a TAKEOVER_RUN
//!   message (`ctdb ipreallocate` and the commands that end with it) and
//!   after a failed run;
//! * [`arp`]: the gratuitous ARP / unsolicited neighbour advertisement a
//!   node sends after taking an address over.
//!
//! # Test mode
//!
//! As upstream with `CTDB_TEST_MODE` (`do_checkpublicip` false): the
//! daemon never asks the kernel whether it holds an address, every
//! TAKEOVER_IP of an assigned address runs `takeip` again, a RELEASE_IP of
//! an address not on an interface here is redundant (no event), and no
//! ARP or tickle ACK is sent. Addresses are only ever put on interfaces by
//! the event scripts (upstream's `10.interface`), which test set-ups do
//! not install.

pub mod arp;
pub mod ipalloc;
pub mod node;
pub mod run;
pub mod table;

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::Instant;

use ctdb_protocol::types::SrvidMessage;

pub use table::IpTable;

/// The daemon's public-address state (a field of [`crate::state::Daemon`]).
#[derive(Default)]
pub struct Takeover {
    /// This node's addresses and interfaces.
    pub table: RefCell<IpTable>,
    /// The public addresses file (RELOAD_PUBLIC_IPS reads it again).
    pub path: Option<PathBuf>,
    /// `--public-interface`: for lines that name none.
    pub default_iface: Option<String>,
    /// Upstream's `do_checkpublicip`: false in test mode.
    pub check_public_ip: bool,
    /// `[failover] disabled`.
    pub failover_disabled: bool,
    /// The recovery daemon's takeover state.
    pub recd: RefCell<RecdState>,
    /// A takeover run is going on here (this node leads it).
    pub in_progress: Cell<bool>,
    /// TCP_CLIENT registrations by client id (dropped when it goes).
    pub client_conns:
        RefCell<std::collections::HashMap<u32, Vec<ctdb_protocol::types::Connection>>>,
}

/// What the recovery daemon keeps between takeover runs.
#[derive(Default)]
pub struct RecdState {
    /// TAKEOVER_RUN requests waiting for the next run (answered after it).
    pub requests: Vec<SrvidMessage>,
    /// A run is due (after a recovery, or the last one failed).
    pub need_run: bool,
    /// DISABLE_TAKEOVER_RUNS / DISABLE_IP_CHECK: disabled until then.
    pub disabled_until: Option<Instant>,
    /// REBALANCE_NODE: nodes LCP2 may move addresses onto.
    pub force_rebalance: Vec<u32>,
    /// The interfaces (name, link) seen by the last check.
    pub last_ifaces: Option<Vec<(String, bool)>>,
}

impl Takeover {
    /// The state for a daemon whose public addresses are `addrs` (already
    /// parsed; interfaces are checked here, as upstream does at start).
    pub fn new(
        path: PathBuf,
        addrs: &ctdb_config::PublicAddresses,
        default_iface: Option<String>,
        test_mode: bool,
        failover_disabled: bool,
    ) -> Result<Takeover, String> {
        let mut table = IpTable::default();
        for a in &addrs.addresses {
            table
                .add(a.addr, a.mask, &a.ifaces, &table::iface_exists)
                .map_err(|e| {
                    format!(
                        "public address {}/{} (line {}): {e}",
                        a.addr, a.mask, a.line
                    )
                })?;
        }
        Ok(Takeover {
            table: RefCell::new(table),
            path: Some(path),
            default_iface,
            check_public_ip: !test_mode,
            failover_disabled,
            ..Default::default()
        })
    }

    /// Whether takeover runs are disabled now (clearing an expired
    /// disable).
    pub fn runs_disabled(&self) -> bool {
        let mut r = self.recd.borrow_mut();
        match r.disabled_until {
            Some(t) if Instant::now() >= t => {
                tracing::info!("Reenabling takeover runs after timeout");
                r.disabled_until = None;
                false
            }
            Some(_) => true,
            None => false,
        }
    }
}
