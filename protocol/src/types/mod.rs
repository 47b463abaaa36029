//! Every marshalled data type of the CTDB 4.17 protocol: the payloads that
//! controls carry in and out, and the bodies of srvid messages.
//!
//! Why one module per family: the layouts are many but each is small; grouping
//! them the way the spec's tables do (addresses, nodes, databases, IPs,
//! statistics, records, tunables, messages) keeps each file checkable against
//! one table. Every type implements [`Wire`](crate::wire::Wire) with the exact
//! upstream byte layout, including the explicit zero padding upstream emits
//! to keep `uint64`/`double` fields 8-aligned.
//!
//! Decoding never trusts a count: element counts go through
//! [`Reader::count`](crate::wire::Reader::count) so a hostile count cannot
//! cause a large allocation, variable data is borrowed from the receive
//! buffer (`'a`), and any malformed input yields a
//! [`ProtocolError`], never a panic.
//! Padding bytes are skipped on input (upstream ignores them too) and written
//! as zeros on output.

mod addr;
mod db;
mod ip;
mod message;
mod misc;
mod node;
mod records;
mod stats;
mod tunable;

pub use addr::SockAddr;
pub use db::{
    DbId, DbIdMap, DbVacuum, PullDb, PullDbExt, TransDb, TraverseAll, TraverseAllExt,
    TraverseStart, TraverseStartExt, DB_FLAGS_PERSISTENT, DB_FLAGS_READONLY, DB_FLAGS_REPLICATED,
    DB_FLAGS_STICKY, LMASTER_ANY,
};
pub use ip::{
    AddrInfo, Connection, ConnectionList, Iface, IfaceList, PublicIp, PublicIpInfo, PublicIpList,
    TickleList, IFACE_NAME_SIZE,
};
pub use message::{srvid, DisableMessage, ElectionMessage, MessageData, SrvidMessage};
pub use misc::{
    BanState, CtdbString, EchoData, GLock, GLockList, NotifyData, PidSrvid, Script, ScriptList,
    ServerId, StringN, Timeval, Uptime, SCRIPT_NAME_SIZE, SCRIPT_OUTPUT_SIZE,
};
pub use node::{NodeAndFlags, NodeFlagChange, NodeMap, VnnMap};
pub use records::{
    KeyData, LtdbHeader, RecBuffer, RecBufferBuilder, RecBufferIter, RecData, LTDB_HEADER_SIZE,
    REC_DATA_HEADER_SIZE,
};
pub use stats::{
    DbStatistics, HotKey, LatencyCounter, LockStatistics, Statistics, StatisticsClient,
    StatisticsList, StatisticsNode, StatisticsTimeouts, MAX_COUNT_BUCKETS, MAX_HOT_KEYS,
};
pub use tunable::{
    Tunable, TunableInfo, TunableList, VarList, TUNABLE_COUNT, TUNABLE_NAMES, TUNABLE_TABLE,
};

use crate::error::ProtocolError;
use crate::wire::{Put, Reader};

/// Reads a C `bool` marshalled as one byte; upstream accepts only 0 and 1.
pub(crate) fn pull_bool(r: &mut Reader<'_>, what: &'static str) -> Result<bool, ProtocolError> {
    match r.u8(what)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(ProtocolError::BadValue {
            what,
            value: u64::from(v),
        }),
    }
}

pub(crate) fn push_bool(out: &mut Vec<u8>, v: bool) {
    out.put_u8(u8::from(v));
}

/// Defines a struct whose wire form is its fields back to back, each field
/// type implementing `Wire` (integers, [`SockAddr`], [`Timeval`], ...).
macro_rules! plain_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident {
            $( $(#[$fm:meta])* pub $f:ident : $t:ty, )*
        }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
        pub struct $name {
            $( $(#[$fm])* pub $f: $t, )*
        }

        impl<'a> $crate::wire::Wire<'a> for $name {
            fn wire_len(&self) -> usize {
                0 $( + $crate::wire::Wire::wire_len(&self.$f) )*
            }
            fn push(&self, out: &mut Vec<u8>) {
                $( $crate::wire::Wire::push(&self.$f, out); )*
            }
            fn pull(r: &mut $crate::wire::Reader<'a>) -> Result<Self, $crate::error::ProtocolError> {
                Ok($name {
                    $( $f: <$t as $crate::wire::Wire>::pull(r)?, )*
                })
            }
        }
    };
}
pub(crate) use plain_struct;

/// Defines a list type: a `u32` count followed by that many fixed-size
/// elements (`$min` bytes each, used to bound the count before allocating).
macro_rules! counted_list {
    (
        $(#[$m:meta])*
        pub struct $name:ident { pub $f:ident : Vec<$elem:ty> } min $min:expr, what $what:expr
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct $name {
            pub $f: Vec<$elem>,
        }

        impl<'a> $crate::wire::Wire<'a> for $name {
            fn wire_len(&self) -> usize {
                4 + self.$f.iter().map($crate::wire::Wire::wire_len).sum::<usize>()
            }
            fn push(&self, out: &mut Vec<u8>) {
                $crate::wire::Put::put_u32(out, self.$f.len() as u32);
                for e in &self.$f {
                    $crate::wire::Wire::push(e, out);
                }
            }
            fn pull(r: &mut $crate::wire::Reader<'a>) -> Result<Self, $crate::error::ProtocolError> {
                let n = r.count($min, $what)?;
                let mut $f = Vec::with_capacity(n);
                for _ in 0..n {
                    $f.push(<$elem as $crate::wire::Wire>::pull(r)?);
                }
                Ok($name { $f })
            }
        }
    };
}
pub(crate) use counted_list;
