//! Database identification and the small fixed structs that name a database
//! in recovery, transactions, traverses and vacuuming.

use crate::error::ProtocolError;
use crate::types::{counted_list, plain_struct, pull_bool, push_bool};
use crate::wire::{Put, Reader, Wire};

pub const DB_FLAGS_PERSISTENT: u8 = 0x01;
pub const DB_FLAGS_READONLY: u8 = 0x02;
pub const DB_FLAGS_STICKY: u8 = 0x04;
pub const DB_FLAGS_REPLICATED: u8 = 0x08;

/// `CTDB_LMASTER_ANY` for [`PullDb`] / [`PullDbExt`].
pub const LMASTER_ANY: u32 = 0xffff_ffff;

/// `ctdb_dbid` (8 bytes): db_id, flags byte, 3 bytes pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DbId {
    pub db_id: u32,
    pub flags: u8,
}

impl DbId {
    pub const SIZE: usize = 8;
}

impl<'a> Wire<'a> for DbId {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        out.put_u8(self.flags);
        out.put_zeros(3);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let db_id = r.u32("dbid db_id")?;
        let flags = r.u8("dbid flags")?;
        r.skip(3, "dbid padding")?;
        Ok(DbId { db_id, flags })
    }
}

counted_list! {
    /// `ctdb_dbid_map` (GET_DBMAP): `u32 num` + entries.
    pub struct DbIdMap { pub dbs: Vec<DbId> } min DbId::SIZE, what "dbid_map num"
}

plain_struct! {
    /// `ctdb_pulldb` (8 bytes; only obsolete controls used it).
    pub struct PullDb {
        pub db_id: u32,
        pub lmaster: u32,
    }
}

plain_struct! {
    /// `ctdb_pulldb_ext` (DB_PULL, DB_PUSH_START): 16 bytes.
    pub struct PullDbExt {
        pub db_id: u32,
        pub lmaster: u32,
        pub srvid: u64,
    }
}

plain_struct! {
    /// `ctdb_transdb` (WIPE_DATABASE, DB_TRANSACTION_*): 8 bytes.
    pub struct TransDb {
        pub db_id: u32,
        pub tid: u32,
    }
}

plain_struct! {
    /// `ctdb_traverse_start` (TRAVERSE_START, TRAVERSE_KILL): 16 bytes.
    pub struct TraverseStart {
        pub db_id: u32,
        pub reqid: u32,
        pub srvid: u64,
    }
}

plain_struct! {
    /// `ctdb_traverse_all` (TRAVERSE_ALL): 24 bytes.
    pub struct TraverseAll {
        pub db_id: u32,
        pub reqid: u32,
        pub pnn: u32,
        pub client_reqid: u32,
        pub srvid: u64,
    }
}

/// `ctdb_traverse_start_ext` (TRAVERSE_START_EXT): 24 bytes, bool + 7 pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TraverseStartExt {
    pub db_id: u32,
    pub reqid: u32,
    pub srvid: u64,
    pub withemptyrecords: bool,
}

impl<'a> Wire<'a> for TraverseStartExt {
    fn wire_len(&self) -> usize {
        24
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        out.put_u32(self.reqid);
        out.put_u64(self.srvid);
        push_bool(out, self.withemptyrecords);
        out.put_zeros(7);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let v = TraverseStartExt {
            db_id: r.u32("traverse_start_ext db_id")?,
            reqid: r.u32("traverse_start_ext reqid")?,
            srvid: r.u64("traverse_start_ext srvid")?,
            withemptyrecords: pull_bool(r, "traverse_start_ext withemptyrecords")?,
        };
        r.skip(7, "traverse_start_ext padding")?;
        Ok(v)
    }
}

/// `ctdb_traverse_all_ext` (TRAVERSE_ALL_EXT): 32 bytes, bool + 7 pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TraverseAllExt {
    pub db_id: u32,
    pub reqid: u32,
    pub pnn: u32,
    pub client_reqid: u32,
    pub srvid: u64,
    pub withemptyrecords: bool,
}

impl<'a> Wire<'a> for TraverseAllExt {
    fn wire_len(&self) -> usize {
        32
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        out.put_u32(self.reqid);
        out.put_u32(self.pnn);
        out.put_u32(self.client_reqid);
        out.put_u64(self.srvid);
        push_bool(out, self.withemptyrecords);
        out.put_zeros(7);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let v = TraverseAllExt {
            db_id: r.u32("traverse_all_ext db_id")?,
            reqid: r.u32("traverse_all_ext reqid")?,
            pnn: r.u32("traverse_all_ext pnn")?,
            client_reqid: r.u32("traverse_all_ext client_reqid")?,
            srvid: r.u64("traverse_all_ext srvid")?,
            withemptyrecords: pull_bool(r, "traverse_all_ext withemptyrecords")?,
        };
        r.skip(7, "traverse_all_ext padding")?;
        Ok(v)
    }
}

/// `ctdb_db_vacuum` (DB_VACUUM): 5 bytes, no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct DbVacuum {
    pub db_id: u32,
    pub full_vacuum_run: bool,
}

impl<'a> Wire<'a> for DbVacuum {
    fn wire_len(&self) -> usize {
        5
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.db_id);
        push_bool(out, self.full_vacuum_run);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        Ok(DbVacuum {
            db_id: r.u32("db_vacuum db_id")?,
            full_vacuum_run: pull_bool(r, "db_vacuum full_vacuum_run")?,
        })
    }
}
