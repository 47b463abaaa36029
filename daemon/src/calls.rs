//! Record calls between nodes: a client's REQ_CALL for a record whose
//! dmaster is another node, and the REQ_CALL / REPLY_CALL / REQ_DMASTER /
//! REPLY_DMASTER / REPLY_ERROR packets other nodes send (record
//! migration, upstream's `ctdb_call.c`). Tunnels too.
//!
//! Placeholder until migration lands: calls are served locally as on a
//! one-node cluster.

use std::rc::Rc;

use crate::state::Daemon;

/// A client packet that this module serves itself (a REQ_CALL that needs
/// another node); `false` to let the local path serve it.
pub fn client_call(_d: &Rc<Daemon>, _client: u32, _pkt: &[u8]) -> bool {
    false
}

/// A call or dmaster packet from node `from`.
pub fn peer_packet(_d: &Rc<Daemon>, from: u32, bytes: Vec<u8>) {
    tracing::debug!(
        "call packet ({} bytes) from node {from} dropped: migration not wired",
        bytes.len()
    );
}

/// A REQ_TUNNEL from node `from`.
pub fn peer_tunnel(_d: &Rc<Daemon>, from: u32, bytes: Vec<u8>) {
    tracing::debug!(
        "tunnel packet ({} bytes) from node {from} dropped",
        bytes.len()
    );
}

/// Node `pnn` died: calls waiting on it must be retried or failed.
pub fn node_dead(_d: &Daemon, _pnn: u32) {}
