//! The record half of record migration: what one node does to its own
//! copy of a record, under the record's chain lock, for each step of
//! upstream's `ctdb_call.c` (`daemon_request_call_from_client`,
//! `ctdb_request_call`, `ctdb_request_dmaster`, `ctdb_reply_dmaster` /
//! `ctdb_become_dmaster`).
//!
//! Why a separate, synchronous step: the record lives on whichever core
//! owns its chain (the control core with one core, a data core's
//! partition otherwise), while the pending-call tables and the network
//! live on the control core ([`super::migrator`]). A step is an owned
//! [`RecordOp`] that can travel to the owning core, runs there without
//! waiting (a busy chain lock answers [`RecordStep::Retry`]), and comes
//! back as a [`RecordStep`] saying which packet to send. The rsn and
//! dmaster rules are the ltdb rules of [`super::ltdb`], so a record moves
//! exactly as with upstream:
//!
//! * the old dmaster stores the record with `dmaster = new` (and deletes
//!   an empty one that never carried data when it is not the lmaster);
//! * the lmaster stores it with `dmaster = new` and the sender's rsn;
//! * the new dmaster stores it with `dmaster = self` (rsn + 1) and runs
//!   the waiting call on it (another store, rsn + 1): the rsn grows with
//!   every migration.
//!
//! Read-only records (upstream's rsn arithmetic): the first delegation
//! raises the dmaster's rsn by 3 and flags it HAVE_DELEGATIONS; copies
//! carry rsn − 2 and HAVE_READONLY; a revoke sends the holders rsn − 1
//! without read-only flags, then stores REVOKE_COMPLETE with rsn + 1; the
//! next call clears the flags (another + 1). Stores of a record with
//! read-only flags never bump the rsn.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ctdb_engine::ltdb::{LtdbHeader, RecordFlags, LTDB_HEADER_SIZE};
use ctdb_engine::Database;
use ctdb_protocol::constants::{
    CTDB_CALL_FLAG_VACUUM_MIGRATION, CTDB_FETCH_FUNC, CTDB_FETCH_WITH_HEADER_FUNC, CTDB_NULL_FUNC,
    CTDB_WANT_READONLY,
};
use ctdb_protocol::types::DB_FLAGS_READONLY;

use super::ltdb::{Env, Records};
use super::{DbStats, ShardCall};

/// Where a node packet came from (for the log lines upstream writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Origin {
    pub srcnode: u32,
    pub reqid: u32,
    pub generation: u32,
}

/// One step on this node's copy of a record.
#[derive(Debug, Clone)]
pub enum RecordOp {
    /// A local client's REQ_CALL: run it when this node is dmaster, else
    /// say where to send it.
    ClientCall { call: ShardCall },
    /// A REQ_CALL from a node (or from this node: a resent call).
    RemoteCall { call: ShardCall, origin: Origin },
    /// A REQ_DMASTER at the lmaster. `call`: the call this node waits for
    /// when it is itself the new dmaster.
    ReqDmaster {
        db_id: u32,
        key: Vec<u8>,
        data: Vec<u8>,
        rsn: u64,
        record_flags: u32,
        new_dmaster: u32,
        origin: Origin,
        call: Option<ShardCall>,
    },
    /// A REPLY_DMASTER: become dmaster, then run `call` (the pending call
    /// of this reqid; `None` when there is none, the record is stored all
    /// the same).
    BecomeDmaster {
        db_id: u32,
        key: Vec<u8>,
        data: Vec<u8>,
        rsn: u64,
        record_flags: u32,
        call: Option<ShardCall>,
    },
    /// A read-only copy (`header || data` with RO_HAVE_READONLY) from the
    /// dmaster's REPLY_CALL: stored when it is newer than the local copy
    /// (upstream's `ctdb_reply_call`).
    StoreReadonly {
        db_id: u32,
        key: Vec<u8>,
        record: Vec<u8>,
    },
    /// The end of a revoke on the dmaster: with `rsn` (the record's rsn
    /// when the revoke started), mark it REVOKE_COMPLETE when every holder
    /// dropped its copy (`ok`) or clear REVOKING for a retry; with `None`,
    /// just clear a REVOKING flag no revoke of this daemon belongs to.
    FinishRevoke {
        db_id: u32,
        key: Vec<u8>,
        rsn: Option<u64>,
        ok: bool,
    },
}

impl RecordOp {
    pub fn db_id(&self) -> u32 {
        match self {
            RecordOp::ClientCall { call } | RecordOp::RemoteCall { call, .. } => call.db_id,
            RecordOp::ReqDmaster { db_id, .. }
            | RecordOp::BecomeDmaster { db_id, .. }
            | RecordOp::StoreReadonly { db_id, .. }
            | RecordOp::FinishRevoke { db_id, .. } => *db_id,
        }
    }

    pub fn key(&self) -> &[u8] {
        match self {
            RecordOp::ClientCall { call } | RecordOp::RemoteCall { call, .. } => &call.key,
            RecordOp::ReqDmaster { key, .. }
            | RecordOp::BecomeDmaster { key, .. }
            | RecordOp::StoreReadonly { key, .. }
            | RecordOp::FinishRevoke { key, .. } => key,
        }
    }

    /// The step for a database this node does not have.
    pub fn unknown_db(&self) -> RecordStep {
        let db_id = self.db_id();
        match self {
            RecordOp::RemoteCall { .. } | RecordOp::ReqDmaster { .. } => RecordStep::Error {
                status: -1,
                msg: format!("Unknown database in request. db_id==0x{db_id:08x}"),
            },
            RecordOp::ClientCall { .. } => {
                tracing::error!("Unknown database in request. db_id==0x{db_id:08x}");
                RecordStep::Drop
            }
            RecordOp::BecomeDmaster { .. } => {
                tracing::error!("Unknown db_id 0x{db_id:x} in ctdb_reply_dmaster");
                RecordStep::Drop
            }
            RecordOp::StoreReadonly { .. } | RecordOp::FinishRevoke { .. } => {
                tracing::error!("Unknown db_id 0x{db_id:x} for a read-only record step");
                RecordStep::Drop
            }
        }
    }
}

/// What a [`RecordOp`] asks the control core to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStep {
    /// The chain is locked by someone else: run the op again shortly.
    Retry,
    /// The database is frozen: run the op again after the thaw.
    Defer,
    /// Nothing to send (logged).
    Drop,
    /// The call ran here: REPLY_CALL with this status and data (for a
    /// local client's read-only FETCH already without the record header).
    Reply { status: i32, data: Vec<u8> },
    /// A client's call for a record this node is not dmaster of: send
    /// REQ_CALL to `dest` with these (possibly adjusted) flags and call id.
    Forward { dest: u32, flags: u32, callid: u32 },
    /// Pass a node's REQ_CALL on to `dest` with this hop count.
    Redirect { dest: u32, hopcount: u32 },
    /// This node gave the record away: REQ_DMASTER to the lmaster.
    ReqDmaster {
        lmaster: u32,
        rsn: u64,
        record_flags: u32,
        data: Vec<u8>,
    },
    /// REPLY_DMASTER to the new dmaster `dest`.
    ReplyDmaster {
        dest: u32,
        rsn: u64,
        record_flags: u32,
        data: Vec<u8>,
    },
    /// REPLY_ERROR to the sender.
    Error { status: i32, msg: String },
    /// A REQ_DMASTER from a node that is not the dmaster: recovery needed.
    Recover,
    /// This node is now dmaster; the waiting call's reply, if there was
    /// a call to run.
    Became { reply: Option<(i32, Vec<u8>)> },
    /// A read-only delegation was granted to the calling node: REPLY_CALL
    /// with this `header || data` (flags RO_HAVE_READONLY) and remember
    /// the node as a holder.
    Delegated { data: Vec<u8> },
    /// The call needs the record's read-only copies revoked first: the
    /// record is now flagged REVOKING; send `update` (`header || data`)
    /// with UPDATE_RECORD to every holder, and keep the call until the
    /// revoke is over. `rsn`: the record's rsn now.
    StartRevoke { rsn: u64, update: Vec<u8> },
    /// A revoke of this record is in progress: keep the call until it is
    /// over.
    WaitRevoke,
    /// A [`RecordOp::FinishRevoke`] ran: `complete` when the record is now
    /// REVOKE_COMPLETE.
    RevokeFinished { complete: bool },
    /// Nothing more to do (a read-only copy stored or found older).
    Done,
}

/// Upstream's per-database migration counter (`migratedb`): migrations
/// of each key within the current one-second window, feeding the hot
/// keys of `ctdb dbstatistics`.
#[derive(Debug, Default)]
pub struct MigrationCount {
    keys: HashMap<Vec<u8>, (Instant, u32)>,
}

/// Entries kept before old windows are dropped.
const MIGRATION_COUNT_KEYS: usize = 8192;

impl MigrationCount {
    /// Counts a migration of `key`; the count in the current window.
    pub fn increment(&mut self, key: &[u8], now: Instant) -> u32 {
        let window = Duration::from_secs(1);
        if self.keys.len() >= MIGRATION_COUNT_KEYS && !self.keys.contains_key(key) {
            self.keys
                .retain(|_, (t, _)| now.duration_since(*t) < window);
        }
        let e = self.keys.entry(key.to_vec()).or_insert((now, 0));
        if now.duration_since(e.0) < window {
            e.1 = e.1.saturating_add(1);
        } else {
            *e = (now, 1);
        }
        e.1
    }
}

/// Everything a step needs of one database handle (all chains, or one
/// data core's partition).
pub(crate) struct RecordCtx<'a> {
    pub db_id: u32,
    pub rec: Records<'a>,
    pub stats: &'a mut DbStats,
    pub ro_tdb: Option<&'a Database>,
    pub migrated: &'a mut MigrationCount,
}

/// Runs one step under the record's chain lock.
pub(crate) fn run(ctx: &mut RecordCtx<'_>, env: &Env<'_>, op: &RecordOp) -> RecordStep {
    let key = op.key().to_vec();
    match ctx.rec.h.chainlock_nonblock(&key) {
        Ok(true) => {}
        // Counted once the lock is had, with how long it took
        // (`Counter::LockWait`, from the migrator).
        Ok(false) => return RecordStep::Retry,
        Err(e) => {
            tracing::error!("db {}: chain lock failed: {e}", ctx.rec.name);
            return match op {
                RecordOp::RemoteCall { .. } => RecordStep::Error {
                    status: -1,
                    msg: "ltdb fetch failed in ctdb_request_call".into(),
                },
                _ => RecordStep::Drop,
            };
        }
    }
    let step = match op {
        RecordOp::ClientCall { call } => client_call(ctx, env, call),
        RecordOp::RemoteCall { call, origin } => remote_call(ctx, env, call, origin),
        RecordOp::ReqDmaster {
            key,
            data,
            rsn,
            record_flags,
            new_dmaster,
            origin,
            call,
            ..
        } => req_dmaster(
            ctx,
            env,
            key,
            data,
            *rsn,
            *record_flags,
            *new_dmaster,
            origin,
            call.as_ref(),
        ),
        RecordOp::BecomeDmaster {
            key,
            data,
            rsn,
            record_flags,
            call,
            ..
        } => become_dmaster(ctx, env, key, data, *rsn, *record_flags, call.as_ref()),
        RecordOp::StoreReadonly { key, record, .. } => store_readonly(ctx, env, key, record),
        RecordOp::FinishRevoke { key, rsn, ok, .. } => finish_revoke(ctx, env, key, *rsn, *ok),
    };
    if let Err(e) = ctx.rec.h.chainunlock(&key) {
        tracing::error!("ctdb_ltdb_unlock() failed with error {e}");
    }
    step
}

/// Fetch under the lock, with the read-only bookkeeping both call paths
/// start with: a finished revoke clears the record's read-only flags.
fn fetch_for_call(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
) -> Result<(LtdbHeader, Vec<u8>), String> {
    let (mut header, data) = ctx.rec.fetch(env, key).map_err(|e| e.to_string())?;
    if header.flags.contains(RecordFlags::RO_REVOKE_COMPLETE) {
        header.flags.remove(RecordFlags::RO_FLAGS);
        ctx.stats.ro_revokes = ctx.stats.ro_revokes.wrapping_add(1);
        if let Err(e) = ctx.rec.store(env, key, &mut header, &data) {
            tracing::error!("Failed to write header with cleared REVOKE flag: {e}");
            return Err(e.to_string());
        }
        if let Some(ro) = ctx.ro_tdb {
            if let Ok(mut h) = ro.handle() {
                if h.delete(key).is_err() {
                    tracing::error!("Failed to clear out trackingdb record");
                }
            }
        }
    }
    Ok((header, data))
}

/// Upstream's `ctdb_call_local` with the built-in call functions: the
/// reply, after storing the record back (which bumps the rsn when this
/// node is dmaster). `None`: unknown call id or failed store.
fn call_local(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
    header: &mut LtdbHeader,
    data: &[u8],
    callid: u32,
) -> Option<Vec<u8>> {
    let reply = match callid {
        CTDB_NULL_FUNC => Vec::new(),
        CTDB_FETCH_FUNC => data.to_vec(),
        CTDB_FETCH_WITH_HEADER_FUNC => header.with_data(data),
        other => {
            tracing::error!("Unknown call id {other}");
            return None;
        }
    };
    if let Err(e) = ctx.rec.store(env, key, header, data) {
        tracing::error!("ctdb_call tdb_store failed: {e}");
        return None;
    }
    Some(reply)
}

fn effective_flags(ctx: &RecordCtx<'_>, flags: u32) -> u32 {
    if flags & CTDB_WANT_READONLY != 0 && ctx.rec.flags & DB_FLAGS_READONLY == 0 {
        flags & !CTDB_WANT_READONLY
    } else {
        flags
    }
}

/// The read-only flags that make a write wait for a revoke.
const RO_COPIES: RecordFlags =
    RecordFlags(RecordFlags::RO_HAVE_DELEGATIONS.bits() | RecordFlags::RO_HAVE_READONLY.bits());

/// `daemon_request_call_from_client`: run it here when this node is the
/// dmaster, else forward it to the dmaster the local header names (the
/// lmaster for a record this node does not have). A write on a record
/// with read-only delegations first revokes them.
fn client_call(ctx: &mut RecordCtx<'_>, env: &Env<'_>, call: &ShardCall) -> RecordStep {
    let (mut header, data) = match fetch_for_call(ctx, env, &call.key) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("Unable to fetch record: {e}");
            return RecordStep::Drop;
        }
    };
    if header.flags.contains(RecordFlags::RO_REVOKING_READONLY) {
        return RecordStep::WaitRevoke;
    }
    let flags = effective_flags(ctx, call.flags);
    if header.dmaster == env.pnn
        && flags & CTDB_WANT_READONLY == 0
        && header.flags.intersects(RO_COPIES)
    {
        return start_revoke(ctx, env, &call.key, header, &data);
    }
    let callid = if flags & CTDB_WANT_READONLY != 0 {
        CTDB_FETCH_WITH_HEADER_FUNC
    } else {
        call.callid
    };
    if header.dmaster != env.pnn {
        if flags & CTDB_WANT_READONLY != 0 && header.flags.contains(RecordFlags::AUTOMATIC) {
            // No local record: store an empty one with the initial header
            // (rsn 0, dmaster the lmaster; written as is, not queued for
            // vacuuming). The read-only copy asked for replaces it only
            // when it is newer, so a revoke's UPDATE_RECORD that overtakes
            // the copy (it updates existing records only) still leaves no
            // stale read-only copy here.
            let placeholder = header.flags.without(RecordFlags::AUTOMATIC);
            let placeholder = LtdbHeader::new(header.rsn, header.dmaster, placeholder);
            if let Err(e) = ctx.rec.h.store(
                &call.key,
                &placeholder.with_data(&[]),
                ctdb_engine::StoreFlag::Replace,
            ) {
                tracing::warn!("db {}: cannot store an initial header: {e}", ctx.rec.name);
            }
        }
        return RecordStep::Forward {
            dest: header.dmaster,
            flags,
            callid,
        };
    }
    match call_local(ctx, env, &call.key, &mut header, &data, callid) {
        Some(mut data) => {
            // A read-only FETCH ran as FETCH_WITH_HEADER: the client gets
            // the data without the header. Decided on the effective flags
            // (WANT_READONLY is dropped above for a database without
            // read-only support, and then the reply has no header to strip).
            if flags & CTDB_WANT_READONLY != 0
                && call.callid == CTDB_FETCH_FUNC
                && data.len() >= LTDB_HEADER_SIZE
            {
                data.drain(..LTDB_HEADER_SIZE);
            }
            RecordStep::Reply { status: 0, data }
        }
        // ctdb_call_local_send ignores the failure: status 0, no data.
        None => RecordStep::Reply {
            status: 0,
            data: Vec::new(),
        },
    }
}

/// Flags the record REVOKING (so every other call on it waits) and
/// prepares the copy the holders get instead of their read-only one: no
/// read-only flags, MIGRATED_WITH_DATA, rsn one below the dmaster's
/// (upstream's `ctdb_start_revoke_ro_record`).
fn start_revoke(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
    mut header: LtdbHeader,
    data: &[u8],
) -> RecordStep {
    header.flags.insert(RecordFlags::RO_REVOKING_READONLY);
    if let Err(e) = ctx.rec.store(env, key, &mut header, data) {
        tracing::error!("Failed to store record with REVOKING set: {e}");
        return RecordStep::Drop;
    }
    let rsn = header.rsn;
    let mut update = header;
    update.flags.remove(RecordFlags(
        RecordFlags::RO_REVOKING_READONLY.bits() | RO_COPIES.bits(),
    ));
    update.flags.insert(RecordFlags::MIGRATED_WITH_DATA);
    update.rsn = rsn.wrapping_sub(1);
    RecordStep::StartRevoke {
        rsn,
        update: update.with_data(data),
    }
}

/// `ctdb_request_call`: a node's REQ_CALL.
fn remote_call(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    call: &ShardCall,
    origin: &Origin,
) -> RecordStep {
    let key = &call.key;
    let (mut header, data) = match fetch_for_call(ctx, env, key) {
        Ok(v) => v,
        Err(_) => {
            return RecordStep::Error {
                status: -1,
                msg: "ltdb fetch failed in ctdb_request_call".into(),
            }
        }
    };
    if header.flags.contains(RecordFlags::RO_REVOKING_READONLY) {
        return RecordStep::WaitRevoke;
    }
    let flags = effective_flags(ctx, call.flags);
    if header.dmaster != env.pnn && !header.flags.contains(RecordFlags::RO_HAVE_DELEGATIONS) {
        let lmaster = env.lmaster(key);
        let dest = if env.pnn == lmaster {
            header.dmaster
        } else {
            lmaster
        };
        let hopcount = call.hopcount.wrapping_add(1);
        if hopcount % 100 > 95 {
            tracing::warn!(
                "High hopcount {hopcount} dbid:{} key:0x{:08x} reqid={:08x} pnn:{} src:{} \
                 lmaster:{lmaster} header->dmaster:{} dst:{dest}",
                ctx.rec.name,
                ctdb_engine::hash::jenkins_hash(key),
                origin.reqid,
                env.pnn,
                origin.srcnode,
                header.dmaster
            );
        }
        return RecordStep::Redirect { dest, hopcount };
    }
    let readonly = flags & CTDB_WANT_READONLY != 0;
    if !readonly && header.flags.intersects(RO_COPIES) {
        return start_revoke(ctx, env, key, header, &data);
    }
    if readonly && call.callid == CTDB_FETCH_WITH_HEADER_FUNC && origin.srcnode != env.pnn {
        // A read-only delegation. The first one bumps the rsn by 3 so
        // that the copies (rsn - 2) and the revoke's update (rsn - 1)
        // are ordered below the dmaster's record; stores with read-only
        // flags leave the rsn alone.
        if !header.flags.contains(RecordFlags::RO_HAVE_DELEGATIONS) {
            header.rsn = header.rsn.wrapping_add(3);
            header.flags.insert(RecordFlags::RO_HAVE_DELEGATIONS);
            if let Err(e) = ctx.rec.store(env, key, &mut header, &data) {
                tracing::error!("Failed to store record with HAVE_DELEGATIONS set: {e}");
                return RecordStep::Drop;
            }
        }
        let mut copy = header;
        copy.rsn = copy.rsn.wrapping_sub(2);
        copy.flags.insert(RecordFlags::RO_HAVE_READONLY);
        copy.flags.remove(RecordFlags::RO_HAVE_DELEGATIONS);
        ctx.stats.ro_delegations = ctx.stats.ro_delegations.wrapping_add(1);
        return RecordStep::Delegated {
            data: copy.with_data(&data),
        };
    }
    ctx.stats.hop(call.hopcount);
    if origin.srcnode != env.pnn {
        // Migrate the record to the caller: a fetch is as expensive as a
        // migration for the client.
        if !data.is_empty() {
            header.flags.insert(RecordFlags::MIGRATED_WITH_DATA);
        }
        let lmaster = env.lmaster(key);
        if lmaster == env.pnn {
            return send_dmaster_reply(ctx, env, key, &mut header, &data, origin.srcnode);
        }
        let (rsn, record_flags) = (header.rsn, header.flags.bits());
        header.dmaster = origin.srcnode;
        if let Err(e) = ctx.rec.store(env, key, &mut header, &data) {
            tracing::error!("Failed to store record in ctdb_call_send_dmaster: {e}");
            return RecordStep::Drop;
        }
        return RecordStep::ReqDmaster {
            lmaster,
            rsn,
            record_flags,
            data,
        };
    }
    match call_local(ctx, env, key, &mut header, &data, call.callid) {
        Some(data) => RecordStep::Reply { status: 0, data },
        None => {
            tracing::error!("ctdb_call_local failed");
            RecordStep::Reply {
                status: -1,
                data: Vec::new(),
            }
        }
    }
}

/// `ctdb_send_dmaster_reply` (this node is the lmaster): record the new
/// dmaster, then REPLY_DMASTER with the stored header's rsn and flags.
fn send_dmaster_reply(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
    header: &mut LtdbHeader,
    data: &[u8],
    new_dmaster: u32,
) -> RecordStep {
    if env.lmaster(key) != env.pnn {
        tracing::error!("Caller is not lmaster!");
        return RecordStep::Drop;
    }
    header.dmaster = new_dmaster;
    if let Err(e) = ctx.rec.store(env, key, header, data) {
        tracing::error!("ctdb_send_dmaster_reply unable to update dmaster: {e}");
        return RecordStep::Drop;
    }
    RecordStep::ReplyDmaster {
        dest: new_dmaster,
        rsn: header.rsn,
        record_flags: header.flags.bits(),
        data: data.to_vec(),
    }
}

/// `ctdb_request_dmaster`: the dmaster hands the record to a new dmaster
/// through the lmaster (this node).
#[allow(clippy::too_many_arguments)]
fn req_dmaster(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
    data: &[u8],
    rsn: u64,
    record_flags: u32,
    new_dmaster: u32,
    origin: &Origin,
    call: Option<&ShardCall>,
) -> RecordStep {
    let (mut header, _) = match ctx.rec.fetch(env, key) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("ctdb_req_dmaster failed to fetch record: {e}");
            return RecordStep::Drop;
        }
    };
    let lmaster = env.lmaster(key);
    if lmaster != env.pnn {
        tracing::error!(
            "dmaster request to non-lmaster db={} lmaster={lmaster} gen={}",
            ctx.rec.name,
            origin.generation
        );
        return RecordStep::Drop;
    }
    let hash = ctdb_engine::hash::jenkins_hash(key);
    tracing::trace!(
        "pnn {} dmaster request on {hash:08x} for {new_dmaster} from {}",
        env.pnn,
        origin.srcnode
    );
    if header.dmaster != origin.srcnode {
        let keyval = key
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0);
        tracing::error!(
            "pnn {} dmaster request for new-dmaster {new_dmaster} from non-master {} \
             real-dmaster={} key {hash:08x} dbid 0x{:08x} gen={} c->rsn={rsn} \
             header.rsn={} reqid={} keyval=0x{keyval:08x}",
            env.pnn,
            origin.srcnode,
            header.dmaster,
            ctx.db_id,
            origin.generation,
            header.rsn,
            origin.reqid
        );
        if header.rsn != 0 || header.dmaster != env.pnn {
            tracing::error!("ctdb_req_dmaster from non-master. Force a recovery.");
            return RecordStep::Recover;
        }
    }
    if header.rsn > rsn {
        tracing::error!(
            "pnn {} dmaster request with older RSN new-dmaster {new_dmaster} from {} \
             real-dmaster={} key {hash:08x} dbid 0x{:08x} gen={} c->rsn={rsn} \
             header.rsn={} reqid={}",
            env.pnn,
            origin.srcnode,
            header.dmaster,
            ctx.db_id,
            origin.generation,
            header.rsn,
            origin.reqid
        );
    }
    header.rsn = rsn;
    header.flags = RecordFlags(record_flags);
    if new_dmaster == env.pnn {
        return become_dmaster(ctx, env, key, data, rsn, record_flags, call);
    }
    send_dmaster_reply(ctx, env, key, &mut header, data, new_dmaster)
}

/// `ctdb_become_dmaster`: store the record as its dmaster, then run the
/// call that waited for it.
fn become_dmaster(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
    data: &[u8],
    rsn: u64,
    record_flags: u32,
    call: Option<&ShardCall>,
) -> RecordStep {
    tracing::trace!(
        "pnn {} dmaster response {:08x}",
        env.pnn,
        ctdb_engine::hash::jenkins_hash(key)
    );
    let mut header = LtdbHeader::new(rsn, env.pnn, RecordFlags(record_flags));
    if call.is_some_and(|c| c.flags & CTDB_CALL_FLAG_VACUUM_MIGRATION != 0) {
        // Only for the store's keep-or-delete decision; never stored.
        header.flags.insert(RecordFlags::VACUUM_MIGRATED);
    }
    if let Err(e) = ctx.rec.store(env, key, &mut header, data) {
        tracing::error!("ctdb_reply_dmaster store failed: {e}");
        return RecordStep::Drop;
    }
    let Some(call) = call else {
        return RecordStep::Became { reply: None };
    };
    let count = ctx.migrated.increment(key, Instant::now());
    let name = ctx.rec.name.to_string();
    ctx.stats.hot_key(&name, key, count);
    // The call's failure is not the client's: status 0, no data.
    let reply = call_local(ctx, env, key, &mut header, data, call.callid).unwrap_or_default();
    RecordStep::Became {
        reply: Some((0, reply)),
    }
}

/// `ctdb_reply_call` for a read-only delegation: the copy replaces the
/// local record only when its rsn is higher.
fn store_readonly(ctx: &mut RecordCtx<'_>, env: &Env<'_>, key: &[u8], record: &[u8]) -> RecordStep {
    let Some((mut header, data)) = LtdbHeader::split(record) else {
        tracing::error!(
            "Got FETCH_WITH_HEADER reply with too little data: {} bytes",
            record.len()
        );
        return RecordStep::Done;
    };
    let old = match ctx.rec.fetch(env, key) {
        Ok((h, _)) => h,
        Err(e) => {
            tracing::error!("Failed to fetch old record in ctdb_reply_call: {e}");
            return RecordStep::Done;
        }
    };
    if header.rsn <= old.rsn {
        return RecordStep::Done;
    }
    if let Err(e) = ctx.rec.store(env, key, &mut header, data) {
        tracing::error!("Failed to store new record in ctdb_reply_call: {e}");
    }
    RecordStep::Done
}

/// The dmaster's end of a revoke (what upstream's revoke child does once
/// every holder answered): REVOKE_COMPLETE (rsn + 1) when all holders
/// dropped their copies, else REVOKING cleared so the next call retries.
fn finish_revoke(
    ctx: &mut RecordCtx<'_>,
    env: &Env<'_>,
    key: &[u8],
    rsn: Option<u64>,
    ok: bool,
) -> RecordStep {
    let failed = RecordStep::RevokeFinished { complete: false };
    let (mut header, data) = match ctx.rec.fetch(env, key) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("Failed for fetch tdb record in revokechild: {e}");
            return failed;
        }
    };
    let Some(rsn) = rsn else {
        // A REVOKING flag no revoke of ours belongs to (a revoke lost to
        // an error): clear it so the waiting calls can run.
        if header.flags.contains(RecordFlags::RO_REVOKING_READONLY) {
            tracing::warn!(
                "db {}: clearing a REVOKING flag with no revoke in progress",
                ctx.rec.name
            );
            header.flags.remove(RecordFlags::RO_REVOKING_READONLY);
            if let Err(e) = ctx.rec.store(env, key, &mut header, &data) {
                tracing::error!("Failed to write new record in revokechild: {e}");
            }
        }
        return failed;
    };
    if header.rsn > rsn {
        tracing::error!("RSN too high in tdb record in revokechild");
        return failed;
    }
    if !header.flags.contains(RecordFlags::RO_REVOKING_READONLY) {
        tracing::error!("Flags are wrong in tdb record in revokechild");
        return failed;
    }
    let complete = ok;
    if complete {
        if !header.flags.contains(RecordFlags::RO_HAVE_DELEGATIONS) {
            // Upstream insists on HAVE_DELEGATIONS here; without it the
            // record would be revoked again and again. Completing clears
            // every read-only flag on the next call.
            tracing::warn!(
                "db {}: revoked record had no HAVE_DELEGATIONS",
                ctx.rec.name
            );
        }
        header.rsn = header.rsn.wrapping_add(1);
        header.flags.insert(RecordFlags::RO_REVOKE_COMPLETE);
    } else {
        tracing::info!("Revoke all delegations failed, retrying.");
        header.flags.remove(RecordFlags::RO_REVOKING_READONLY);
    }
    if let Err(e) = ctx.rec.store(env, key, &mut header, &data) {
        tracing::error!("Failed to write new record in revokechild: {e}");
        return failed;
    }
    RecordStep::RevokeFinished { complete }
}

impl super::Databases {
    /// Runs a migration step on the control core's handle (one core, or a
    /// database the data cores do not serve).
    pub fn record_op(&mut self, op: &RecordOp) -> RecordStep {
        let Some((db, env)) = self.db_and_env(op.db_id()) else {
            return op.unknown_db();
        };
        if db.frozen {
            return RecordStep::Defer;
        }
        let mut ctx = RecordCtx {
            db_id: db.id,
            rec: Records {
                h: &mut db.h,
                name: &db.name,
                flags: db.flags,
                delete_queue: &mut db.delete_queue,
            },
            stats: &mut db.stats,
            ro_tdb: db.ro_tdb.as_ref(),
            migrated: &mut db.migrated,
        };
        run(&mut ctx, &env, op)
    }

    /// A second handle on a database's file, as a client process (smbd,
    /// the `ctdb` tool) would have: for tests and tools that read and
    /// write records under their own chain locks.
    pub fn client_handle(&self, db_id: u32) -> Option<ctdb_engine::CoreStore> {
        self.find(db_id)?.tdb.handle().ok()
    }
}
