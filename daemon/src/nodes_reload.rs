//! GET_NODES_FILE and RELOAD_NODES_FILE: the nodes file read again from
//! disk, and the node table, the membership and the node-to-node
//! transport brought in line with it (`ctdb reloadnodes`).
//!
//! Why a module of its own: the node table is read everywhere (routing,
//! broadcasts, node maps) but changes only here, and the change touches
//! three owners — the identity's nodes file, the membership's flags and
//! the transport's connections — which must agree afterwards.
//!
//! Behaviour, as upstream's `ctdb_control_reload_nodes_file` (4.17):
//! * a node whose slot has the same address keeps its entry and its
//!   connections; a new node (or a changed address) starts
//!   `DISCONNECTED | UNHEALTHY` and is connected to; a node now deleted is
//!   `DELETED` and its connections are torn down;
//! * the recovery daemon is told with a `CTDB_SRVID_RELOAD_NODES` message
//!   to this node (ours shares the table; clients that registered the
//!   srvid get it);
//! * the checks are the tool's (`ctdb reloadnodes`: same file on every
//!   node, deleted nodes disconnected, no changed addresses); the daemon
//!   only refuses a file it cannot read or in which this node is no
//!   longer itself (upstream would exit).
//!
//! A daemon started as a cluster of one has no transport: it takes the new
//! table, but connecting to nodes added later needs a restart (logged).

use ctdb_config::Nodes;
use ctdb_protocol::types::{srvid, NodeMap};

use crate::db::OutMessage;
use crate::state::Daemon;

/// The nodes file as it is on disk now (GET_NODES_FILE reads it afresh,
/// as upstream does, so `ctdb reloadnodes` can compare every node's file
/// with its own before reloading).
pub fn read_nodes_file(d: &Daemon) -> Result<Nodes, String> {
    let path = d.id.nodes.borrow().path.clone();
    Nodes::load(&path).map_err(|e| format!("Failed to load nodes file \"{}\": {e}", path.display()))
}

/// GET_NODES_FILE's node map: the file on disk, every node's flags 0
/// (deleted ones `DELETED`).
pub fn nodes_file_map(d: &Daemon) -> Result<NodeMap, String> {
    let nodes = read_nodes_file(d)?;
    let id = crate::state::Identity {
        pnn: d.pnn(),
        nodes: std::cell::RefCell::new(nodes),
    };
    Ok(id.node_map(|_| 0))
}

/// RELOAD_NODES_FILE.
pub fn reload(d: &Daemon) -> Result<(), String> {
    let new = read_nodes_file(d)?;
    let me = d.pnn();
    let old_addr = d.id.addr(me);
    match new.get(me) {
        Some(e) if !e.deleted && Some(e.addr) == old_addr => {}
        Some(e) if e.deleted => {
            return Err(format!("this node ({me}) is deleted in the new nodes file"))
        }
        Some(e) => {
            return Err(format!(
                "this node ({me}) has address {} in the new nodes file, not {}",
                e.addr,
                old_addr.map(|a| a.to_string()).unwrap_or_default()
            ))
        }
        None => {
            return Err(format!(
                "this node ({me}) is missing from the new nodes file"
            ))
        }
    }
    let ips: Vec<Option<std::net::IpAddr>> = new
        .entries
        .iter()
        .map(|e| (!e.deleted).then_some(e.addr))
        .collect();
    let names: Vec<Option<String>> = ips.iter().map(|a| a.map(|a| a.to_string())).collect();
    let fresh = d.node.borrow_mut().membership.reload(names);
    for pnn in &fresh {
        tracing::info!("Node {pnn} is new or changed in the nodes file");
    }
    match d.peers.get() {
        Some(p) => p.set_nodes(&ips).map_err(|e| e.to_string())?,
        None if ips
            .iter()
            .enumerate()
            .any(|(i, a)| a.is_some() && i as u32 != me) =>
        {
            tracing::error!(
                "nodes file now names other nodes, but this ctdbd started alone: restart it to connect"
            );
        }
        None => {}
    }
    // Connections to nodes that were torn down fail their pending
    // controls through the transport's Disconnected events.
    *d.id.nodes.borrow_mut() = new;
    tracing::info!("Reloaded the nodes file ({} slots)", ips.len());
    d.deliver(&OutMessage {
        pnn: me,
        srvid: srvid::RELOAD_NODES,
        data: Vec::new(),
    });
    Ok(())
}
