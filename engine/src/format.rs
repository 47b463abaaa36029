//! On-disk constants and the two fixed structures of a TDB 1.4 file: the
//! 168-byte header and the 24-byte record header. All words are 32-bit
//! little-endian (the engine only runs on little-endian hosts; byte-swapped
//! files are refused with a clear error).

use crate::hash::{jenkins_hash, tdb_old_hash};

pub const MAGIC_FOOD: &[u8] = b"TDB file\n\0";
pub const TDB_VERSION: u32 = 0x2601_1967 + 6;
pub const TDB_MAGIC: u32 = 0x2601_1999;
pub const TDB_FREE_MAGIC: u32 = !TDB_MAGIC;
pub const TDB_DEAD_MAGIC: u32 = 0xFEE1_DEAD;
pub const TDB_RECOVERY_MAGIC: u32 = 0xF53B_C0E7;
pub const TDB_RECOVERY_INVALID_MAGIC: u32 = 0;
pub const TDB_HASH_RWLOCK_MAGIC: u32 = 0x0BAD_1A51;
pub const TDB_FEATURE_FLAG_MAGIC: u32 = 0x0BAD_1A52;
pub const TDB_FEATURE_FLAG_MUTEX: u32 = 1;
pub const TDB_PAD_U32: u32 = 0x4242_4242;

pub const HEADER_SIZE: u32 = 168;
pub const FREELIST_TOP: u32 = HEADER_SIZE;
pub const REC_SIZE: u32 = 24;
pub const OFF_VERSION: u32 = 32;
pub const OFF_HASH_SIZE: u32 = 36;
pub const OFF_RWLOCKS: u32 = 40;
pub const OFF_RECOVERY: u32 = 44;
pub const OFF_SEQNUM: u32 = 48;
pub const OFF_MAGIC1: u32 = 52;
pub const OFF_MAGIC2: u32 = 56;
pub const OFF_FEATURES: u32 = 60;
pub const OFF_MUTEX_SIZE: u32 = 64;

/// Lock bytes (raw file offsets, never shifted by the mutex area).
pub const OPEN_LOCK: u64 = 0;
pub const ACTIVE_LOCK: u64 = 4;
pub const TRANSACTION_LOCK: u64 = 8;

/// Minimum spare room for splitting a free record (header + tailer + 8).
pub const MIN_REC_SIZE: u32 = REC_SIZE + 4 + 8;

/// tdb_open flags (tdb.h values) that the engine understands.
pub mod flags {
    pub const CLEAR_IF_FIRST: u32 = 0x0001;
    pub const INTERNAL: u32 = 0x0002;
    pub const NOLOCK: u32 = 0x0004;
    pub const NOMMAP: u32 = 0x0008;
    pub const CONVERT: u32 = 0x0010;
    pub const BIGENDIAN: u32 = 0x0020;
    pub const NOSYNC: u32 = 0x0040;
    pub const SEQNUM: u32 = 0x0080;
    pub const VOLATILE: u32 = 0x0100;
    pub const ALLOW_NESTING: u32 = 0x0200;
    pub const DISALLOW_NESTING: u32 = 0x0400;
    pub const INCOMPATIBLE_HASH: u32 = 0x0800;
    pub const MUTEX_LOCKING: u32 = 0x1000;
}

/// Which built-in hash function a file uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashKind {
    /// libtdb's historical default (`tdb_old_hash`).
    Old,
    /// Jenkins lookup3 (`TDB_INCOMPATIBLE_HASH`).
    Jenkins,
}

impl HashKind {
    #[inline]
    pub fn hash(self, key: &[u8]) -> u32 {
        match self {
            HashKind::Old => tdb_old_hash(key),
            HashKind::Jenkins => jenkins_hash(key),
        }
    }

    /// The (magic1_hash, magic2_hash) header values for this function.
    pub fn magic_hashes(self) -> (u32, u32) {
        (self.hash(MAGIC_FOOD), self.hash(&TDB_MAGIC.to_le_bytes()))
    }
}

#[inline]
pub fn align4(v: u64) -> u64 {
    (v + 3) & !3
}

/// `lock_offset(list)`: chain `b` locks byte 168+4b; the free list is list -1.
#[inline]
pub fn chain_lock_offset(bucket: u32) -> u64 {
    FREELIST_TOP as u64 + 4 * bucket as u64
}

pub const FREELIST_LOCK: u64 = FREELIST_TOP as u64 - 4;

/// Logical offset of the head of hash chain `b`.
#[inline]
pub fn hash_top(bucket: u32) -> u32 {
    FREELIST_TOP + 4 + 4 * bucket
}

/// Which of `ncores` partitions owns chain `bucket`. Partitions are
/// contiguous ranges of chains: neighbouring chain heads (4 bytes each) and
/// chain mutexes (40 bytes each) share cache lines, so interleaving the
/// chains across cores would make every lock bounce a line between them.
#[inline]
pub fn chain_owner(bucket: u32, hash_size: u32, ncores: usize) -> usize {
    if ncores <= 1 || hash_size == 0 {
        return 0;
    }
    (bucket as u64 * ncores as u64 / hash_size as u64) as usize
}

/// The chains `[start, end)` owned by partition `core` of `ncores`
/// (exactly those `b` with `chain_owner(b, ..) == core`).
pub fn partition_chains(core: usize, ncores: usize, hash_size: u32) -> (u32, u32) {
    if ncores <= 1 {
        return (0, hash_size);
    }
    let bound = |c: usize| (c as u64 * hash_size as u64).div_ceil(ncores as u64) as u32;
    (bound(core), bound(core + 1))
}

#[inline]
pub fn data_start(hash_size: u32) -> u64 {
    HEADER_SIZE as u64 + 4 * (hash_size as u64 + 1)
}

/// The 24-byte header in front of every record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rec {
    pub next: u32,
    pub rec_len: u32,
    pub key_len: u32,
    pub data_len: u32,
    pub full_hash: u32,
    pub magic: u32,
}

impl Rec {
    pub fn from_bytes(b: &[u8; 24]) -> Rec {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Rec {
            next: w(0),
            rec_len: w(4),
            key_len: w(8),
            data_len: w(12),
            full_hash: w(16),
            magic: w(20),
        }
    }

    pub fn to_bytes(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        for (i, v) in [
            self.next,
            self.rec_len,
            self.key_len,
            self.data_len,
            self.full_hash,
            self.magic,
        ]
        .iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    pub fn is_dead(&self) -> bool {
        self.magic == TDB_DEAD_MAGIC
    }
}

/// The decoded 168-byte header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    pub hash_size: u32,
    pub rwlocks: u32,
    pub recovery_start: u32,
    pub sequence_number: u32,
    pub magic1_hash: u32,
    pub magic2_hash: u32,
    pub feature_flags: u32,
    pub mutex_size: u32,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_SIZE as usize {
            return None;
        }
        let w = |i: u32| {
            let i = i as usize;
            u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
        };
        Some(Header {
            version: w(OFF_VERSION),
            hash_size: w(OFF_HASH_SIZE),
            rwlocks: w(OFF_RWLOCKS),
            recovery_start: w(OFF_RECOVERY),
            sequence_number: w(OFF_SEQNUM),
            magic1_hash: w(OFF_MAGIC1),
            magic2_hash: w(OFF_MAGIC2),
            feature_flags: w(OFF_FEATURES),
            mutex_size: w(OFF_MUTEX_SIZE),
        })
    }

    /// A fresh header plus empty free list and hash table, as
    /// `tdb_new_database` writes it.
    pub fn new_db_image(hash_size: u32, hash: HashKind, mutex_size: u32) -> Vec<u8> {
        let size = data_start(hash_size) as usize;
        let mut img = vec![0u8; size];
        img[..MAGIC_FOOD.len()].copy_from_slice(MAGIC_FOOD);
        let mut put = |off: u32, v: u32| {
            img[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes())
        };
        put(OFF_VERSION, TDB_VERSION);
        put(OFF_HASH_SIZE, hash_size);
        let (m1, m2) = hash.magic_hashes();
        put(OFF_MAGIC1, m1);
        put(OFF_MAGIC2, m2);
        let mut rw = if hash == HashKind::Jenkins {
            TDB_HASH_RWLOCK_MAGIC
        } else {
            0
        };
        if mutex_size != 0 {
            put(OFF_FEATURES, TDB_FEATURE_FLAG_MUTEX);
            put(OFF_MUTEX_SIZE, mutex_size);
            rw = TDB_FEATURE_FLAG_MAGIC;
        }
        put(OFF_RWLOCKS, rw);
        img
    }
}

/// `tdb_expand_adjust`: how much to grow a file of `map_size` bytes that
/// needs `size` more bytes.
pub fn expand_adjust(map_size: u32, size: u32, page_size: u32) -> u32 {
    let max_size = u32::MAX - map_size;
    if size > max_size {
        return size;
    }
    let increment: u64 = if size > 100 * 1024 {
        size as u64 * 2
    } else {
        size as u64 * 100
    };
    let top = map_size as u64 + increment;
    let grown = if map_size > 100 * 1024 * 1024 {
        (map_size as f64 * 1.10) as u64
    } else {
        (map_size as f64 * 1.25) as u64
    };
    let new_size = top.max(grown);
    let ps = page_size as u64;
    let aligned = new_size.div_ceil(ps) * ps;
    if aligned > u32::MAX as u64 {
        return max_size;
    }
    (aligned - map_size as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chain has exactly one owner, and `partition_chains` lists
    /// exactly the chains `chain_owner` gives to each core.
    #[test]
    fn partitions_cover_every_chain_once() {
        for hash_size in [1u32, 2, 3, 7, 10, 131, 10_007] {
            for ncores in 1usize..=9 {
                let mut next = 0u32;
                for core in 0..ncores {
                    let (start, end) = partition_chains(core, ncores, hash_size);
                    assert_eq!(start, next, "hs {hash_size} n {ncores} core {core}");
                    assert!(end >= start);
                    for b in start..end {
                        assert_eq!(chain_owner(b, hash_size, ncores), core);
                    }
                    next = end;
                }
                assert_eq!(next, hash_size, "hs {hash_size} n {ncores}");
            }
        }
    }
}
