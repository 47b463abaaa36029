//! REQ_CALL from a local client on the node that is dmaster (on a one-node
//! cluster: every record).
//!
//! The `ctdb` tool's and smbd's fetch-lock look at the record in the file
//! themselves; when this node is not recorded as its dmaster (new record,
//! or one last written by another node) they send REQ_CALL with
//! CTDB_NULL_FUNC and CTDB_IMMEDIATE_MIGRATION, wait for REPLY_CALL and look
//! again. So the call must leave the record in the file with
//! `dmaster = this node`, as upstream's `daemon_request_call_from_client` →
//! `ctdb_call_local` does: fetch under the chain lock (a missing record is
//! created with the initial header and stored through the server rules,
//! which bump its rsn), run the call function, store the record back
//! (another rsn increment), unlock, reply. A new record therefore ends up
//! with rsn 2, dmaster = pnn, flags 0 and empty data, just as with Debian's
//! ctdbd; the tool then writes its value under its own chain lock.

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_protocol::constants::CTDB_WANT_READONLY;
use ctdb_protocol::constants::{CTDB_FETCH_FUNC, CTDB_FETCH_WITH_HEADER_FUNC, CTDB_NULL_FUNC};
use ctdb_protocol::ReqCall;

use ctdb_engine::Database;
use ctdb_protocol::types::DB_FLAGS_READONLY;

use super::ltdb::{Env, Records};
use super::{Databases, DbStats};

/// What to do with a REQ_CALL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// Send REPLY_CALL with this status and data (same reqid).
    Reply { status: i32, data: Vec<u8> },
    /// The database is frozen: keep the request and hand it in again after
    /// DB_THAW.
    Defer,
    /// Another process holds the record's chain lock: hand the request in
    /// again after a short wait (upstream's lock helper would wait for the
    /// lock; blocking here would stall the whole core).
    Retry,
    /// No reply (unknown database, failed fetch; upstream logs and drops
    /// the request, the client times out).
    Drop,
}

impl Databases {
    /// Runs a client's REQ_CALL (local clients: upstream counts hops and
    /// hot keys only for calls that arrive from other nodes, see
    /// [`Databases::count_remote_call`]).
    pub fn handle_call(&mut self, call: &ReqCall<'_>) -> CallOutcome {
        let Some((db, env)) = self.db_and_env(call.db_id) else {
            tracing::error!("Unknown database in request. db_id==0x{:08x}", call.db_id);
            return CallOutcome::Drop;
        };
        if db.frozen {
            // Upstream's non-blocking chain lock fails against the freeze
            // (also during the recovery transaction) and the call waits.
            return CallOutcome::Defer;
        }
        if let Some(r) = &db.unhealthy {
            tracing::warn!(
                "warn: db({}) unhealty in daemon_request_call_from_client(): {r}",
                db.name
            );
        }
        let mut rec = Records {
            h: &mut db.h,
            name: &db.name,
            flags: db.flags,
            delete_queue: &mut db.delete_queue,
        };
        run_call(&mut rec, &mut db.stats, db.ro_tdb.as_ref(), &env, call)
    }

    /// The header and data of a record as this node's ctdbd sees it
    /// (without creating anything); for tests and tools.
    pub fn peek_record(&mut self, db_id: u32, key: &[u8]) -> Option<(LtdbHeader, Vec<u8>)> {
        let db = self.find_mut(db_id)?;
        let v = db.h.fetch(key).ok()??;
        let (h, d) = LtdbHeader::split(&v)?;
        Some((h, d.to_vec()))
    }
}

/// `daemon_request_call_from_client` + `ctdb_call_local` on one database
/// handle (all chains on the control core, or one data core's partition):
/// chain lock, fetch (creating the record as lmaster), run the call
/// function, store back through the server rules, unlock.
pub(crate) fn run_call(
    rec: &mut Records<'_>,
    stats: &mut DbStats,
    ro_tdb: Option<&Database>,
    env: &Env<'_>,
    call: &ReqCall<'_>,
) -> CallOutcome {
    let pnn = env.pnn;
    let key = call.key;
    // Chain lock without waiting: a busy chain means the caller retries
    // (counted as a contended lock, as upstream's lock helper would be).
    match rec.h.chainlock_nonblock(key) {
        Ok(true) => {}
        Ok(false) => {
            stats.lock_busy();
            return CallOutcome::Retry;
        }
        Err(e) => {
            tracing::error!("db {}: chain lock failed: {e}", rec.name);
            return CallOutcome::Drop;
        }
    }
    let readonly_db = rec.flags & DB_FLAGS_READONLY != 0;
    let out = (|| {
        let (mut header, data) = match rec.fetch(env, key) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("Unable to fetch record: {e}");
                return CallOutcome::Drop;
            }
        };
        let mut flags = call.flags;
        if flags & CTDB_WANT_READONLY != 0 && !readonly_db {
            flags &= !CTDB_WANT_READONLY;
        }
        if header.flags.contains(RecordFlags::RO_REVOKE_COMPLETE) {
            header.flags.remove(RecordFlags::RO_FLAGS);
            stats.ro_revokes = stats.ro_revokes.wrapping_add(1);
            if let Err(e) = rec.store(env, key, &mut header, &data) {
                tracing::error!("Failed to write header with cleared REVOKE flag: {e}");
                return CallOutcome::Drop;
            }
            if let Some(ro) = ro_tdb {
                if let Ok(mut h) = ro.handle() {
                    let _ = h.delete(key);
                }
            }
        }
        if header.dmaster != pnn {
            // Only another node can be dmaster; with none reachable, this
            // node (the lmaster) takes the record over.
            tracing::warn!(
                "db {}: record dmaster is node {}, taking it over",
                rec.name,
                header.dmaster
            );
            header.dmaster = pnn;
        }
        let mut callid = call.callid;
        let readonly_fetch = flags & CTDB_WANT_READONLY != 0;
        if readonly_fetch {
            callid = CTDB_FETCH_WITH_HEADER_FUNC;
        }
        // ctdb_call_local: run the function on the current header and
        // data, then store the (unchanged) record back.
        let reply = match callid {
            CTDB_NULL_FUNC => Some(Vec::new()),
            CTDB_FETCH_FUNC => Some(data.clone()),
            CTDB_FETCH_WITH_HEADER_FUNC => Some(header.with_data(&data)),
            other => {
                tracing::error!("Unknown call id {other}");
                None
            }
        };
        let Some(mut reply) = reply else {
            // Upstream ignores the failure and replies status 0 with no
            // data, without storing.
            return CallOutcome::Reply {
                status: 0,
                data: Vec::new(),
            };
        };
        if let Err(e) = rec.store(env, key, &mut header, &data) {
            tracing::error!("ctdb_call tdb_store failed: {e}");
        }
        if readonly_fetch && call.callid == CTDB_FETCH_FUNC && reply.len() >= LTDB_HEADER_SIZE {
            reply.drain(..LTDB_HEADER_SIZE);
        }
        CallOutcome::Reply {
            status: 0,
            data: reply,
        }
    })();
    if let Err(e) = rec.h.chainunlock(key) {
        tracing::error!("ctdb_ltdb_unlock() failed: {e}");
    }
    out
}
