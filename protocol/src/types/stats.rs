//! Daemon and per-database statistics (STATISTICS, GET_STAT_HISTORY,
//! GET_DB_STATISTICS).
//!
//! The layouts are the 64-bit C structs with their alignment holes made
//! explicit, so the nesting below follows upstream's `struct ctdb_statistics`
//! and `struct ctdb_db_statistics` field for field.

use crate::error::ProtocolError;
use crate::types::{plain_struct, Timeval};
use crate::wire::{Put, Reader, Wire};

pub const MAX_COUNT_BUCKETS: usize = 16;
pub const MAX_HOT_KEYS: usize = 10;

fn pull_buckets(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<[u32; MAX_COUNT_BUCKETS], ProtocolError> {
    let mut b = [0u32; MAX_COUNT_BUCKETS];
    for v in b.iter_mut() {
        *v = r.u32(what)?;
    }
    Ok(b)
}

fn push_buckets(out: &mut Vec<u8>, b: &[u32; MAX_COUNT_BUCKETS]) {
    for &v in b {
        out.put_u32(v);
    }
}

/// `ctdb_latency_counter` (32 bytes): count (int), 4 pad, min, max, total
/// (seconds as doubles).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencyCounter {
    pub num: i32,
    pub min: f64,
    pub max: f64,
    pub total: f64,
}

impl LatencyCounter {
    pub const SIZE: usize = 32;

    /// Counts one observation of `secs` seconds, as upstream's
    /// CTDB_UPDATE_LATENCY: the first sets the minimum, later ones lower it.
    pub fn add(&mut self, secs: f64) {
        if self.num == 0 || secs < self.min {
            self.min = secs;
        }
        if secs > self.max {
            self.max = secs;
        }
        self.total += secs;
        self.num = self.num.wrapping_add(1);
    }
}

impl<'a> Wire<'a> for LatencyCounter {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_i32(self.num);
        out.put_zeros(4);
        out.put_f64(self.min);
        out.put_f64(self.max);
        out.put_f64(self.total);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let num = r.i32("latency_counter num")?;
        r.skip(4, "latency_counter padding")?;
        Ok(LatencyCounter {
            num,
            min: r.f64("latency_counter min")?,
            max: r.f64("latency_counter max")?,
            total: r.f64("latency_counter total")?,
        })
    }
}

plain_struct! {
    /// `ctdb_statistics.node`: packets received from other nodes, by type.
    pub struct StatisticsNode {
        pub req_call: u32,
        pub reply_call: u32,
        pub req_dmaster: u32,
        pub reply_dmaster: u32,
        pub reply_error: u32,
        pub req_message: u32,
        pub req_control: u32,
        pub reply_control: u32,
        pub req_tunnel: u32,
    }
}

plain_struct! {
    /// `ctdb_statistics.client`: packets received from clients, by type.
    pub struct StatisticsClient {
        pub req_call: u32,
        pub req_message: u32,
        pub req_control: u32,
        pub req_tunnel: u32,
    }
}

plain_struct! {
    /// `ctdb_statistics.timeouts`.
    pub struct StatisticsTimeouts {
        pub call: u32,
        pub control: u32,
        pub traverse: u32,
    }
}

/// The `locks` block shared by `ctdb_statistics` and `ctdb_db_statistics`
/// (112 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LockStatistics {
    pub num_calls: u32,
    pub num_current: u32,
    pub num_pending: u32,
    pub num_failed: u32,
    pub latency: LatencyCounter,
    pub buckets: [u32; MAX_COUNT_BUCKETS],
}

impl<'a> Wire<'a> for LockStatistics {
    fn wire_len(&self) -> usize {
        16 + LatencyCounter::SIZE + 4 * MAX_COUNT_BUCKETS
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_u32(self.num_calls);
        out.put_u32(self.num_current);
        out.put_u32(self.num_pending);
        out.put_u32(self.num_failed);
        self.latency.push(out);
        push_buckets(out, &self.buckets);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        Ok(LockStatistics {
            num_calls: r.u32("locks num_calls")?,
            num_current: r.u32("locks num_current")?,
            num_pending: r.u32("locks num_pending")?,
            num_failed: r.u32("locks num_failed")?,
            latency: LatencyCounter::pull(r)?,
            buckets: pull_buckets(r, "locks buckets")?,
        })
    }
}

/// `ctdb_statistics` (488 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Statistics {
    pub num_clients: u32,
    pub frozen: u32,
    pub recovering: u32,
    pub client_packets_sent: u32,
    pub client_packets_recv: u32,
    pub node_packets_sent: u32,
    pub node_packets_recv: u32,
    pub keepalive_packets_sent: u32,
    pub keepalive_packets_recv: u32,
    pub node: StatisticsNode,
    pub client: StatisticsClient,
    pub timeouts: StatisticsTimeouts,
    /// `reclock.ctdbd`
    pub reclock_ctdbd: LatencyCounter,
    /// `reclock.recd`
    pub reclock_recd: LatencyCounter,
    pub locks: LockStatistics,
    pub total_calls: u32,
    pub pending_calls: u32,
    pub childwrite_calls: u32,
    pub pending_childwrite_calls: u32,
    pub memory_used: u32,
    /// upstream's `__last_counter`
    pub last_counter: u32,
    pub max_hop_count: u32,
    pub hop_count_bucket: [u32; MAX_COUNT_BUCKETS],
    pub call_latency: LatencyCounter,
    pub childwrite_latency: LatencyCounter,
    pub num_recoveries: u32,
    pub statistics_start_time: Timeval,
    pub statistics_current_time: Timeval,
    pub total_ro_delegations: u32,
    pub total_ro_revokes: u32,
}

impl Statistics {
    pub const SIZE: usize = 488;
}

impl<'a> Wire<'a> for Statistics {
    fn wire_len(&self) -> usize {
        Self::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        for v in [
            self.num_clients,
            self.frozen,
            self.recovering,
            self.client_packets_sent,
            self.client_packets_recv,
            self.node_packets_sent,
            self.node_packets_recv,
            self.keepalive_packets_sent,
            self.keepalive_packets_recv,
        ] {
            out.put_u32(v);
        }
        self.node.push(out);
        self.client.push(out);
        self.timeouts.push(out);
        out.put_zeros(4);
        self.reclock_ctdbd.push(out);
        self.reclock_recd.push(out);
        self.locks.push(out);
        for v in [
            self.total_calls,
            self.pending_calls,
            self.childwrite_calls,
            self.pending_childwrite_calls,
            self.memory_used,
            self.last_counter,
            self.max_hop_count,
        ] {
            out.put_u32(v);
        }
        push_buckets(out, &self.hop_count_bucket);
        out.put_zeros(4);
        self.call_latency.push(out);
        self.childwrite_latency.push(out);
        out.put_u32(self.num_recoveries);
        out.put_zeros(4);
        self.statistics_start_time.push(out);
        self.statistics_current_time.push(out);
        out.put_u32(self.total_ro_delegations);
        out.put_u32(self.total_ro_revokes);
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        const W: &str = "statistics";
        let mut s = Statistics {
            num_clients: r.u32(W)?,
            frozen: r.u32(W)?,
            recovering: r.u32(W)?,
            client_packets_sent: r.u32(W)?,
            client_packets_recv: r.u32(W)?,
            node_packets_sent: r.u32(W)?,
            node_packets_recv: r.u32(W)?,
            keepalive_packets_sent: r.u32(W)?,
            keepalive_packets_recv: r.u32(W)?,
            node: StatisticsNode::pull(r)?,
            client: StatisticsClient::pull(r)?,
            timeouts: StatisticsTimeouts::pull(r)?,
            ..Statistics::default()
        };
        r.skip(4, "statistics padding")?;
        s.reclock_ctdbd = LatencyCounter::pull(r)?;
        s.reclock_recd = LatencyCounter::pull(r)?;
        s.locks = LockStatistics::pull(r)?;
        s.total_calls = r.u32(W)?;
        s.pending_calls = r.u32(W)?;
        s.childwrite_calls = r.u32(W)?;
        s.pending_childwrite_calls = r.u32(W)?;
        s.memory_used = r.u32(W)?;
        s.last_counter = r.u32(W)?;
        s.max_hop_count = r.u32(W)?;
        s.hop_count_bucket = pull_buckets(r, "statistics hop_count_bucket")?;
        r.skip(4, "statistics padding")?;
        s.call_latency = LatencyCounter::pull(r)?;
        s.childwrite_latency = LatencyCounter::pull(r)?;
        s.num_recoveries = r.u32(W)?;
        r.skip(4, "statistics padding")?;
        s.statistics_start_time = Timeval::pull(r)?;
        s.statistics_current_time = Timeval::pull(r)?;
        s.total_ro_delegations = r.u32(W)?;
        s.total_ro_revokes = r.u32(W)?;
        Ok(s)
    }
}

/// `ctdb_statistics_list` (GET_STAT_HISTORY): `int32 num`, 4 pad, entries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StatisticsList {
    pub stats: Vec<Statistics>,
}

impl<'a> Wire<'a> for StatisticsList {
    fn wire_len(&self) -> usize {
        8 + self.stats.len() * Statistics::SIZE
    }
    fn push(&self, out: &mut Vec<u8>) {
        out.put_i32(self.stats.len() as i32);
        out.put_zeros(4);
        for s in &self.stats {
            s.push(out);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let num = r.i32("statistics_list num")?;
        r.skip(4, "statistics_list padding")?;
        let n = usize::try_from(num).map_err(|_| ProtocolError::BadValue {
            what: "statistics_list num",
            value: num as u32 as u64,
        })?;
        let have = r.remaining().len();
        if n > have / Statistics::SIZE {
            return Err(ProtocolError::Short {
                what: "statistics_list entries",
                need: n.saturating_mul(Statistics::SIZE),
                have,
            });
        }
        let mut stats = Vec::with_capacity(n);
        for _ in 0..n {
            stats.push(Statistics::pull(r)?);
        }
        Ok(StatisticsList { stats })
    }
}

/// One hot key of a database: hit count and the key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HotKey<'a> {
    pub count: u32,
    pub key: &'a [u8],
}

/// `ctdb_db_statistics` (GET_DB_STATISTICS). Fixed part 224 bytes, then
/// always [`MAX_HOT_KEYS`] slots of 24 bytes {count, pad, 8-byte pointer
/// (meaningless, sent as 0), 8-byte key length}, then the key bytes of the
/// ten slots concatenated. `num_hot_keys` is sent as is: both ctdbd and
/// upstream's client library always send [`MAX_HOT_KEYS`] (10), and
/// `ctdb dbstatistics` prints that many slots, so a daemon should set 10.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DbStatistics<'a> {
    pub locks: LockStatistics,
    /// `vacuum.latency`
    pub vacuum_latency: LatencyCounter,
    pub db_ro_delegations: u32,
    pub db_ro_revokes: u32,
    pub hop_count_bucket: [u32; MAX_COUNT_BUCKETS],
    pub num_hot_keys: u32,
    pub hot_keys: [HotKey<'a>; MAX_HOT_KEYS],
}

impl DbStatistics<'_> {
    /// Bytes before the key data.
    pub const FIXED_SIZE: usize = 224 + MAX_HOT_KEYS * 24;
}

impl<'a> Wire<'a> for DbStatistics<'a> {
    fn wire_len(&self) -> usize {
        Self::FIXED_SIZE + self.hot_keys.iter().map(|k| k.key.len()).sum::<usize>()
    }
    fn push(&self, out: &mut Vec<u8>) {
        self.locks.push(out);
        self.vacuum_latency.push(out);
        out.put_u32(self.db_ro_delegations);
        out.put_u32(self.db_ro_revokes);
        push_buckets(out, &self.hop_count_bucket);
        out.put_u32(self.num_hot_keys);
        out.put_zeros(4);
        for k in &self.hot_keys {
            out.put_u32(k.count);
            out.put_zeros(4);
            out.put_u64(0);
            out.put_u64(k.key.len() as u64);
        }
        for k in &self.hot_keys {
            out.put_bytes(k.key);
        }
    }
    fn pull(r: &mut Reader<'a>) -> Result<Self, ProtocolError> {
        let locks = LockStatistics::pull(r)?;
        let vacuum_latency = LatencyCounter::pull(r)?;
        let db_ro_delegations = r.u32("db_statistics db_ro_delegations")?;
        let db_ro_revokes = r.u32("db_statistics db_ro_revokes")?;
        let hop_count_bucket = pull_buckets(r, "db_statistics hop_count_bucket")?;
        let num_hot_keys = r.u32("db_statistics num_hot_keys")?;
        r.skip(4, "db_statistics padding")?;
        let mut counts = [0u32; MAX_HOT_KEYS];
        let mut lens = [0u64; MAX_HOT_KEYS];
        for i in 0..MAX_HOT_KEYS {
            counts[i] = r.u32("db_statistics hot_key count")?;
            r.skip(4, "db_statistics hot_key padding")?;
            r.skip(8, "db_statistics hot_key pointer")?;
            lens[i] = r.u64("db_statistics hot_key length")?;
        }
        let mut hot_keys = [HotKey::default(); MAX_HOT_KEYS];
        for i in 0..MAX_HOT_KEYS {
            let n = usize::try_from(lens[i]).map_err(|_| ProtocolError::BadValue {
                what: "db_statistics hot_key length",
                value: lens[i],
            })?;
            hot_keys[i] = HotKey {
                count: counts[i],
                key: r.bytes(n, "db_statistics hot_key")?,
            };
        }
        Ok(DbStatistics {
            locks,
            vacuum_latency,
            db_ro_delegations,
            db_ro_revokes,
            hop_count_bucket,
            num_hot_keys,
            hot_keys,
        })
    }
}
