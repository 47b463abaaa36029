//! Traverses: TRAVERSE_START(_EXT) from a client (`ctdb catdb`, smbd's
//! traverses) and TRAVERSE_ALL(_EXT) from the node that runs one.
//!
//! A client registers a srvid, sends TRAVERSE_START_EXT {db_id, reqid,
//! srvid, withemptyrecords} and gets status 0 at once; the records then
//! arrive as REQ_MESSAGEs to that srvid, each a `rec_data` {reqid, key,
//! header||data}, and a `rec_data` with the reqid and empty key and data
//! ends the traverse. Volatile databases send only records this node is
//! dmaster of, and without `withemptyrecords` only records with data beyond
//! the header (upstream's `ctdb_traverse_local_fn`). With a single node the
//! whole traverse happens here: every active node is this node.

use ctdb_engine::ltdb::{LtdbHeader, LTDB_HEADER_SIZE};
use ctdb_engine::Walk;
use ctdb_protocol::types::RecData;
use ctdb_protocol::{Opcode, Wire};

use ctdb_protocol::constants::CTDB_BROADCAST_ACTIVE;
use ctdb_protocol::types::{TraverseAll, TraverseAllExt};

use super::{ControlCtx, ControlOutcome, Databases, Db, OutControl, OutMessage};

/// A client's traverse in progress over several nodes.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub client_reqid: u32,
    pub srvid: u64,
    pub ends_seen: u32,
    pub ends_expected: u32,
    pub records: u32,
    /// When TRAVERSE_ALL went out: TraverseTimeout ends the traverse
    /// with what arrived (a node that died meanwhile never answers).
    pub started: std::time::Instant,
}

impl Db {
    /// The records a traverse of this node sends, as `rec_data` encodings
    /// with `reqid`, in traverse order.
    fn traverse_local(
        &mut self,
        pnn: u32,
        reqid: u32,
        withempty: bool,
    ) -> Result<Vec<Vec<u8>>, ctdb_engine::Error> {
        let volatile = self.volatile();
        let mut out = Vec::new();
        self.h.traverse_read(|k, v| {
            if volatile {
                if !withempty && v.len() <= LTDB_HEADER_SIZE {
                    return Walk::Continue;
                }
                match LtdbHeader::parse(v) {
                    Some(h) if h.dmaster == pnn => {}
                    _ => return Walk::Continue,
                }
            }
            out.push(RecData::new(reqid, k, v).to_bytes());
            Walk::Continue
        })?;
        Ok(out)
    }
}

impl Databases {
    pub(crate) fn traverse_start(
        &mut self,
        ctx: &ControlCtx,
        db_id: u32,
        reqid: u32,
        srvid: u64,
        withempty: bool,
    ) -> ControlOutcome {
        if !ctx.from_client {
            tracing::error!("No client found");
            return ControlOutcome::fail();
        }
        let pnn = self.pnn();
        let allow_unhealthy = self.config().allow_unhealthy_db_read;
        let Some(db) = self.find_mut(db_id) else {
            return ControlOutcome::fail();
        };
        if let Some(r) = &db.unhealthy {
            if !allow_unhealthy {
                tracing::error!(
                    "db({}) unhealty in ctdb_control_traverse_start: {r}",
                    db.name
                );
                return ControlOutcome::fail();
            }
            tracing::warn!(
                "warn: db({}) unhealty in ctdb_control_traverse_start: {r}",
                db.name
            );
        }
        if db.volatile() && self.active_nodes > 1 {
            return self.traverse_start_cluster(db_id, reqid, srvid, withempty);
        }
        let Some(db) = self.find_mut(db_id) else {
            return ControlOutcome::fail();
        };
        tracing::info!("Starting traverse on DB {} (id {reqid})", db.name);
        let recs = match db.traverse_local(pnn, reqid, withempty) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("traverse of {} failed: {e}", db.name);
                // Upstream's child fails: the traverse ends with what was
                // sent; the client sees the end marker.
                Vec::new()
            }
        };
        let n = recs.len();
        let mut msgs: Vec<OutMessage> = recs
            .into_iter()
            .map(|data| OutMessage { pnn, srvid, data })
            .collect();
        msgs.push(OutMessage {
            pnn,
            srvid,
            data: RecData::new(reqid, &[], &[]).to_bytes(),
        });
        tracing::info!(
            "Ending traverse on DB {} (id {reqid}), records {n}",
            db.name
        );
        ControlOutcome {
            messages_after: msgs,
            ..Default::default()
        }
    }

    /// A volatile traverse over several nodes: TRAVERSE_ALL(_EXT) to every
    /// active node; their TRAVERSE_DATA records are relayed to the client
    /// (see [`Databases::traverse_data`]).
    fn traverse_start_cluster(
        &mut self,
        db_id: u32,
        client_reqid: u32,
        srvid: u64,
        withempty: bool,
    ) -> ControlOutcome {
        let pnn = self.pnn();
        let reqid = self.next_reqid;
        self.next_reqid = self.next_reqid.wrapping_add(1).max(1);
        let data = if withempty {
            TraverseAllExt {
                db_id,
                reqid,
                pnn,
                client_reqid,
                srvid,
                withemptyrecords: true,
            }
            .to_bytes()
        } else {
            TraverseAll {
                db_id,
                reqid,
                pnn,
                client_reqid,
                srvid,
            }
            .to_bytes()
        };
        let opcode = if withempty {
            Opcode::TraverseAllExt
        } else {
            Opcode::TraverseAll
        };
        self.traverses.insert(
            reqid,
            Pending {
                client_reqid,
                srvid,
                ends_seen: 0,
                ends_expected: self.active_nodes,
                records: 0,
                started: std::time::Instant::now(),
            },
        );
        tracing::info!("Starting traverse on DB 0x{db_id:08x} (id {reqid})");
        ControlOutcome {
            controls_after: vec![OutControl {
                destnode: CTDB_BROADCAST_ACTIVE,
                opcode,
                data,
            }],
            ..Default::default()
        }
    }

    /// The TRAVERSE_ALL of traverse `reqid` went to `nodes` nodes (the
    /// vnn map's count may still include a node that has died since).
    pub(crate) fn traverse_sent_to(&mut self, reqid: u32, nodes: u32) {
        if let Some(p) = self.traverses.get_mut(&reqid) {
            p.ends_expected = nodes.max(1);
        }
    }

    /// Ends every cluster traverse older than `timeout` as upstream's
    /// TraverseTimeout does: the client gets its end marker after the
    /// records that did arrive.
    pub(crate) fn expire_traverses(&mut self, timeout: std::time::Duration) -> Vec<OutMessage> {
        let pnn = self.pnn();
        let old: Vec<u32> = self
            .traverses
            .iter()
            .filter(|(_, p)| p.started.elapsed() >= timeout)
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::new();
        for id in old {
            if let Some(p) = self.traverses.remove(&id) {
                tracing::error!(
                    "Traverse (id {id}) timed out with {} of {} nodes done, records {}",
                    p.ends_seen,
                    p.ends_expected,
                    p.records
                );
                out.push(OutMessage {
                    pnn,
                    srvid: p.srvid,
                    data: RecData::new(p.client_reqid, &[], &[]).to_bytes(),
                });
            }
        }
        out
    }

    /// TRAVERSE_DATA: one record (or an end marker) of a traverse we
    /// started, relayed to the client's srvid with the client's reqid; the
    /// client gets one end marker once every node has sent its own.
    pub(crate) fn traverse_data(&mut self, d: &RecData<'_>) -> ControlOutcome {
        let pnn = self.pnn();
        let Some(p) = self.traverses.get_mut(&d.reqid) else {
            // The traverse may have ended or been killed already.
            return ControlOutcome::fail();
        };
        let end = d.key.is_empty() && d.data.is_empty();
        if end {
            p.ends_seen = p.ends_seen.saturating_add(1);
            if p.ends_seen < p.ends_expected {
                return ControlOutcome::ok();
            }
        } else {
            p.records = p.records.wrapping_add(1);
        }
        let msg = OutMessage {
            pnn,
            srvid: p.srvid,
            data: RecData::new(p.client_reqid, d.key, d.data).to_bytes(),
        };
        if end {
            tracing::info!("Ending traverse (id {}), records {}", d.reqid, p.records);
            self.traverses.remove(&d.reqid);
        }
        ControlOutcome {
            messages_after: vec![msg],
            ..Default::default()
        }
    }

    /// TRAVERSE_ALL(_EXT) from node `pnn`: this node's records go back to
    /// it as TRAVERSE_DATA controls, then an empty record ends our part.
    pub(crate) fn traverse_all(
        &mut self,
        db_id: u32,
        reqid: u32,
        srcpnn: u32,
        withempty: bool,
    ) -> ControlOutcome {
        let pnn = self.pnn();
        let Some(db) = self.find_mut(db_id) else {
            tracing::error!("Unknown database 0x{db_id:08x} in traverse_all");
            return ControlOutcome::fail();
        };
        let recs = match db.traverse_local(pnn, reqid, withempty) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("traverse of {} failed: {e}", db.name);
                return ControlOutcome::fail();
            }
        };
        let mut ctrls: Vec<OutControl> = recs
            .into_iter()
            .map(|data| OutControl {
                destnode: srcpnn,
                opcode: Opcode::TraverseData,
                data,
            })
            .collect();
        ctrls.push(OutControl {
            destnode: srcpnn,
            opcode: Opcode::TraverseData,
            data: RecData::new(reqid, &[], &[]).to_bytes(),
        });
        ControlOutcome {
            controls_after: ctrls,
            ..Default::default()
        }
    }
}
