//! Per-database statistics for GET_DB_STATISTICS (`ctdb dbstatistics`):
//! lock waits (count, failures, latency, log2 buckets as upstream's
//! `lock_bucket_id`), hop-count buckets and the hot keys (the ten keys with
//! the highest migration counts, smallest first, as upstream keeps them).

use ctdb_protocol::types::{
    DbStatistics, HotKey, LatencyCounter, LockStatistics, MAX_COUNT_BUCKETS, MAX_HOT_KEYS,
};
use ctdb_protocol::Wire;

use super::Databases;

#[derive(Debug, Clone, Default)]
pub struct HotKeyEntry {
    pub key: Vec<u8>,
    pub count: u32,
    last_logged: u32,
}

/// Counters of one database.
#[derive(Debug, Clone, Default)]
pub struct DbStats {
    pub locks: LockStatistics,
    pub vacuum_latency: LatencyCounter,
    pub ro_delegations: u32,
    pub ro_revokes: u32,
    pub hop_count_bucket: [u32; MAX_COUNT_BUCKETS],
    /// Sorted by count, smallest first; at most [`MAX_HOT_KEYS`].
    pub hot_keys: Vec<HotKeyEntry>,
}

/// Upstream's `lock_bucket_id`: bucket of a lock wait of `t` seconds
/// (< 1 ms, < 10 ms, < 100 ms, then powers of two seconds).
fn lock_bucket(t: f64) -> usize {
    let ms = (t * 1000.0) as u64;
    let id = if ms < 1 {
        0
    } else if ms < 10 {
        1
    } else if ms < 100 {
        2
    } else {
        let mut s = ms / 1000;
        let mut id = 3;
        while s > 0 {
            s >>= 1;
            id += 1;
        }
        id
    };
    id.min(MAX_COUNT_BUCKETS - 1)
}

pub(crate) fn update_latency(l: &mut LatencyCounter, t: f64) {
    if l.num == 0 || t < l.min {
        l.min = t;
    }
    if l.num == 0 || t > l.max {
        l.max = t;
    }
    l.num = l.num.saturating_add(1);
    l.total += t;
}

fn merge_latency(l: &mut LatencyCounter, o: &LatencyCounter) {
    if o.num == 0 {
        return;
    }
    if l.num == 0 || o.min < l.min {
        l.min = o.min;
    }
    if l.num == 0 || o.max > l.max {
        l.max = o.max;
    }
    l.num = l.num.saturating_add(o.num);
    l.total += o.total;
}

/// The hop-count bucket of a call that took `hopcount` hops: its bit
/// length (0 for none), capped at the last bucket, as upstream counts.
pub fn hop_bucket(hopcount: u32) -> usize {
    ((32 - hopcount.leading_zeros()) as usize).min(MAX_COUNT_BUCKETS - 1)
}

/// A lock that had to wait `t` seconds (`locked`: and was had), counted
/// in `l` as upstream's lock helper does (daemon-wide or per database).
pub fn count_lock_wait(l: &mut LockStatistics, t: f64, locked: bool) {
    l.num_calls = l.num_calls.wrapping_add(1);
    if locked {
        let b = &mut l.buckets[lock_bucket(t)];
        *b = b.wrapping_add(1);
        update_latency(&mut l.latency, t);
    } else {
        l.num_failed = l.num_failed.wrapping_add(1);
    }
}

/// Adds the counts of `o` (another collector's) to `l`; the gauges are
/// left alone.
pub fn merge_lock_counts(l: &mut LockStatistics, o: &LockStatistics) {
    l.num_calls = l.num_calls.wrapping_add(o.num_calls);
    l.num_failed = l.num_failed.wrapping_add(o.num_failed);
    for (a, b) in l.buckets.iter_mut().zip(o.buckets) {
        *a = a.wrapping_add(b);
    }
    merge_latency(&mut l.latency, &o.latency);
}

impl DbStats {
    /// A chain or database lock that had to wait `t` seconds.
    pub fn lock_wait(&mut self, t: f64, locked: bool) {
        count_lock_wait(&mut self.locks, t, locked);
    }

    /// Adds another collector's counts (a data core's) to these.
    pub fn merge(&mut self, o: &DbStats) {
        merge_lock_counts(&mut self.locks, &o.locks);
        merge_latency(&mut self.vacuum_latency, &o.vacuum_latency);
        self.ro_delegations = self.ro_delegations.wrapping_add(o.ro_delegations);
        self.ro_revokes = self.ro_revokes.wrapping_add(o.ro_revokes);
        for (a, b) in self.hop_count_bucket.iter_mut().zip(o.hop_count_bucket) {
            *a = a.wrapping_add(b);
        }
        for e in &o.hot_keys {
            self.hot_key("", &e.key, e.count);
        }
    }

    /// A lock attempt that found the lock busy (the request is retried).
    pub fn lock_busy(&mut self) {
        self.locks.num_calls = self.locks.num_calls.wrapping_add(1);
        self.locks.buckets[0] = self.locks.buckets[0].wrapping_add(1);
        update_latency(&mut self.locks.latency, 0.0);
    }

    /// A call that reached this node after `hopcount` hops.
    pub fn hop(&mut self, hopcount: u32) {
        let b = &mut self.hop_count_bucket[hop_bucket(hopcount)];
        *b = b.wrapping_add(1);
    }

    /// Upstream's `ctdb_update_db_stat_hot_keys`.
    pub fn hot_key(&mut self, db_name: &str, key: &[u8], count: u32) {
        if self.hot_keys.len() == MAX_HOT_KEYS && count <= self.hot_keys[0].count {
            return;
        }
        if let Some(e) = self.hot_keys.iter_mut().find(|e| e.key == key) {
            if count <= e.count {
                return;
            }
            if count >= 2 * e.last_logged {
                tracing::info!(
                    "Updated hot key database={db_name} key={} count={count}",
                    hex(key)
                );
                e.last_logged = count;
            }
            e.count = count;
        } else {
            let entry = HotKeyEntry {
                key: key.to_vec(),
                count,
                last_logged: count,
            };
            if self.hot_keys.len() < MAX_HOT_KEYS {
                self.hot_keys.push(entry);
            } else {
                self.hot_keys[0] = entry;
            }
            tracing::info!(
                "Added hot key database={db_name} key={} count={count}",
                hex(key)
            );
        }
        self.hot_keys.sort_by_key(|e| e.count);
    }

    /// GET_DB_STATISTICS output (`num_hot_keys` is always 10, as upstream
    /// sends it; unused slots are empty).
    pub fn encode(&self) -> Vec<u8> {
        let mut hot = [HotKey::default(); MAX_HOT_KEYS];
        for (slot, e) in hot.iter_mut().zip(&self.hot_keys) {
            *slot = HotKey {
                count: e.count,
                key: &e.key,
            };
        }
        let s = DbStatistics {
            locks: self.locks,
            vacuum_latency: self.vacuum_latency,
            db_ro_delegations: self.ro_delegations,
            db_ro_revokes: self.ro_revokes,
            hop_count_bucket: self.hop_count_bucket,
            num_hot_keys: MAX_HOT_KEYS as u32,
            hot_keys: hot,
        };
        s.to_bytes()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

impl Databases {
    /// Counts a call that arrived from another node after `hopcount` hops
    /// and whose record has now migrated `migrations` times (hop buckets
    /// and hot keys, as upstream's `ctdb_request_call` and migration
    /// tracking).
    pub fn count_remote_call(&mut self, db_id: u32, key: &[u8], hopcount: u32, migrations: u32) {
        if let Some(db) = self.find_mut(db_id) {
            db.stats.hop(hopcount);
            let name = db.name.clone();
            db.stats.hot_key(&name, key, migrations);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_keys_keep_the_top_ten() {
        let mut s = DbStats::default();
        for i in 0..20u32 {
            s.hot_key("t", &i.to_le_bytes(), i + 1);
        }
        assert_eq!(s.hot_keys.len(), MAX_HOT_KEYS);
        let counts: Vec<u32> = s.hot_keys.iter().map(|e| e.count).collect();
        assert_eq!(counts, (11..=20).collect::<Vec<_>>());
        // Raising an existing key re-sorts.
        s.hot_key("t", &10u32.to_le_bytes(), 100);
        assert_eq!(s.hot_keys.last().unwrap().count, 100);
    }

    #[test]
    fn buckets() {
        assert_eq!(lock_bucket(0.0001), 0);
        assert_eq!(lock_bucket(0.005), 1);
        assert_eq!(lock_bucket(0.05), 2);
        assert_eq!(lock_bucket(0.5), 3);
        assert_eq!(lock_bucket(1.5), 4);
        let mut s = DbStats::default();
        s.hop(0);
        s.hop(1);
        s.hop(3);
        assert_eq!(&s.hop_count_bucket[..3], &[1, 1, 1]);
        let enc = s.encode();
        let back = DbStatistics::from_bytes(&enc).unwrap();
        assert_eq!(back.hop_count_bucket[2], 1);
        assert_eq!(back.num_hot_keys, 10);
    }
}
